package otpd

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Service holds otpd's flows: sign-in and sign-up by code, actor creation,
// session refresh. Every dialect calls these; none re-implements them.
type Service struct {
	Store      Store
	Engine     *Engine
	Normalizer Normalizer
	ActorTypes []ActorType

	// Limiter, when set, enforces Throttles before every code request and
	// every verification. An unreachable Limiter refuses them (EUNAVAILABLE).
	Limiter   Limiter
	Throttles Throttles

	// Passwords checks, hashes and verifies passwords, for the emailpass
	// provider. Nil: password routes answer an internal error.
	Passwords PasswordHasher
	passwordState

	// AuthMethods, when it has an entry for an actor type, lists the auth
	// providers that actor type may use (Medusa's
	// http.authMethodsPerActor); actor types without an entry may use
	// every provider.
	AuthMethods map[string][]string

	// RevokeOnLogout makes Logout revoke every token of the identity, not
	// only end the session it is called with.
	RevokeOnLogout bool

	// ResetTokenTTL is how long a password reset token lives (default
	// DefaultResetTokenTTL).
	ResetTokenTTL time.Duration

	// RefreshTTL is the absolute lifetime of a session with rotating
	// refresh tokens (default DefaultRefreshTTL); RefreshGrace how long a
	// spent refresh token still yields its child, for concurrent refreshes
	// (default DefaultRefreshGrace).
	RefreshTTL   time.Duration
	RefreshGrace time.Duration

	// FollowUpTTL is how long a redeemed sign-up code may be presented once
	// more to sign in as the actor created meanwhile (default 60 s).
	FollowUpTTL time.Duration

	Now func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// ActorType returns the configured actor type called name, or EINVALID.
func (s *Service) ActorType(name string) (ActorType, error) {
	for _, t := range s.ActorTypes {
		if t.Name == name {
			return t, nil
		}
	}
	return ActorType{}, &Error{Code: EINVALID, Field: "actor_type", Message: "The actor type '" + name + "' is not configured."}
}

// CheckProvider returns EFORBIDDEN, with Medusa's message, when AuthMethods
// does not let actorType use provider.
func (s *Service) CheckProvider(actorType, provider string) error {
	allowed, ok := s.AuthMethods[actorType]
	if !ok || slices.Contains(allowed, provider) {
		return nil
	}
	return Errorf(EFORBIDDEN, "The actor type %s is not allowed to use the auth provider %s", actorType, provider)
}

// CodeRequest names who asks for a code: the tenant, the actor type and the
// identifier as typed.
type CodeRequest struct {
	Tenant     string
	ActorType  string
	Identifier string

	// Provider is the auth provider the code serves: ProviderOTP (the
	// default) for codes that sign in or up, a password provider for
	// password resets.
	Provider string

	// Client is the address the request came from, for the per-address
	// throttles. An invalid address is limited like any other (as
	// "unknown"), never exempt.
	Client netip.Addr
}

// key resolves r into the challenge key of purpose and the contact it
// names. A bad identifier is EINVALID naming the field "identifier".
func (s *Service) key(r CodeRequest, purpose Purpose) (ChallengeKey, Contact, error) {
	if _, err := s.ActorType(r.ActorType); err != nil {
		return ChallengeKey{}, Contact{}, err
	}
	provider := r.Provider
	if provider == "" {
		provider = ProviderOTP
	}
	if err := s.CheckProvider(r.ActorType, provider); err != nil {
		return ChallengeKey{}, Contact{}, err
	}
	tenant := r.Tenant
	if tenant == "" {
		tenant = DefaultTenant
	}
	c, err := s.Normalizer.Parse("identifier", r.Identifier)
	if err != nil {
		return ChallengeKey{}, Contact{}, err
	}
	return ChallengeKey{Tenant: tenant, ActorType: r.ActorType, Purpose: purpose, Destination: c.Value}, c, nil
}

// request issues a code of purpose for r, delivered as d. lookup, run in
// the issuing transaction, decides the subject.
func (s *Service) request(ctx context.Context, r CodeRequest, purpose Purpose, pol Policy, d Delivery,
	lookup func(ctx context.Context, tx Tx, key ChallengeKey, c Contact) (Subject, error)) error {
	key, c, err := s.key(r, purpose)
	if err != nil {
		return err
	}
	if err := s.throttle(ctx, s.sendLimits(r.Client, key, c.Channel)...); err != nil {
		return err
	}
	d.Identifier = r.Identifier
	_, err = s.Engine.Issue(ctx, IssueRequest{
		Key: key, Channel: c.Channel, Policy: pol, Delivery: d,
		Subject: func(ctx context.Context, tx Tx) (Subject, error) { return lookup(ctx, tx, key, c) },
	})
	return err
}

// redeem verifies code against r's challenge of purpose and, in the same
// transaction, runs then to build the principal: if then fails, the code is
// not spent. An identifier that cannot be normalized is ErrInvalidCode, like
// any code that does not match.
func (s *Service) redeem(ctx context.Context, r CodeRequest, purpose Purpose, code string,
	then func(tx Tx, ch *Challenge, c Contact) (*Principal, error)) (*Principal, error) {
	key, c, err := s.key(r, purpose)
	if e := AsError(err); e != nil && e.Field == "identifier" {
		return nil, ErrInvalidCode
	} else if err != nil {
		return nil, err
	}
	if err := s.throttle(ctx, s.limit(LimitIPVerify, s.Throttles.IPVerify, clientKey(r.Client))); err != nil {
		return nil, err
	}
	var out *Principal
	_, err = s.Engine.Verify(ctx, key, code, func(tx Tx, ch *Challenge) error {
		p, err := then(tx, ch, c)
		out = p
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// subject returns the auth identity a redeemed challenge proves. A challenge
// without one (a decoy never matches; belt and braces) or whose identity was
// deleted since is ErrInvalidCode.
func subject(ctx context.Context, tx Tx, ch *Challenge) (*AuthIdentity, error) {
	if ch.SubjectID == "" {
		return nil, ErrInvalidCode
	}
	id, err := tx.FindAuthIdentityByID(ctx, ch.Tenant, ch.SubjectID)
	if ErrorCode(err) == ENOTFOUND {
		return nil, ErrInvalidCode
	}
	return id, err
}

// RequestSignIn sends a sign-in code to the account of r's type whose
// verified email or phone is r.Identifier. When there is no such account, or
// it has no auth identity, nothing is sent but a decoy send is recorded, so
// the answer and the limits are the same as for an existing account.
func (s *Service) RequestSignIn(ctx context.Context, r CodeRequest) error {
	return s.request(ctx, r, PurposeSignIn, Policy{}, Delivery{Event: EventOTPGenerated}, func(ctx context.Context, tx Tx, key ChallengeKey, c Contact) (Subject, error) {
		id, err := tx.FindAuthIdentityIDByContact(ctx, key.Tenant, key.ActorType, c)
		if ErrorCode(err) == ENOTFOUND {
			return Subject{Decoy: true}, nil
		}
		return Subject{ID: id}, err
	})
}

// SignIn redeems a sign-in code and returns the principal it proves. Every
// failure is ErrInvalidCode.
func (s *Service) SignIn(ctx context.Context, r CodeRequest, code string) (*Principal, error) {
	return s.redeem(ctx, r, PurposeSignIn, code, func(tx Tx, ch *Challenge, _ Contact) (*Principal, error) {
		id, err := subject(ctx, tx, ch)
		if err != nil {
			return nil, err
		}
		return PrincipalFor(id, r.ActorType, nil), nil
	})
}

// RequestSignUp sends a sign-up code to r.Identifier, unless an account of
// r's type has already proved that email or phone: then a decoy is recorded
// instead, so the answer does not reveal that the account exists.
func (s *Service) RequestSignUp(ctx context.Context, r CodeRequest) error {
	return s.request(ctx, r, PurposeSignUp, Policy{}, Delivery{Event: EventPreRegisterOTPGenerated}, func(ctx context.Context, tx Tx, key ChallengeKey, c Contact) (Subject, error) {
		_, err := tx.FindActorByContact(ctx, key.Tenant, key.ActorType, c)
		if ErrorCode(err) == ENOTFOUND {
			return Subject{}, nil
		}
		return Subject{Decoy: true}, err
	})
}

// SignUp redeems a sign-up code. In the same transaction it retrieves or
// creates the auth identity whose "otp" provider identity is the identifier,
// and mints a follow-up challenge that lets the same code sign in once, within
// FollowUpTTL, as the actor the client creates next. The principal returned
// has an empty ActorID unless the identity was already linked.
func (s *Service) SignUp(ctx context.Context, r CodeRequest, code string) (*Principal, error) {
	now := s.now()
	return s.redeem(ctx, r, PurposeSignUp, code, func(tx Tx, ch *Challenge, c Contact) (*Principal, error) {
		id, _, err := s.ensureIdentity(ctx, tx, ch.Tenant, c, now)
		if err != nil {
			return nil, err
		}
		if err := s.mintFollowUp(ctx, tx, ch, id.ID, code, now); err != nil {
			return nil, err
		}
		return PrincipalFor(id, r.ActorType, nil), nil
	})
}

// ensureIdentity returns the auth identity owning the otp provider identity
// for c, creating both if needed (created reports which).
func (s *Service) ensureIdentity(ctx context.Context, tx Tx, tenant string, c Contact, now time.Time) (id *AuthIdentity, created bool, err error) {
	pi, err := tx.FindProviderIdentity(ctx, tenant, ProviderOTP, c.Value)
	if err == nil {
		id, err = tx.FindAuthIdentityByID(ctx, tenant, pi.AuthIdentityID)
		return id, false, err
	} else if ErrorCode(err) != ENOTFOUND {
		return nil, false, err
	}
	id, pi = newIdentity(tenant, ProviderOTP, c.Value, map[string]any{}, now)
	if err := tx.CreateAuthIdentity(ctx, id, pi); err != nil {
		return nil, false, err
	}
	return id, true, nil
}

// newIdentity returns a new auth identity of tenant, not linked to any
// actor, and its provider identity for entityID with providerMetadata.
func newIdentity(tenant, provider, entityID string, providerMetadata map[string]any, now time.Time) (*AuthIdentity, *ProviderIdentity) {
	id := &AuthIdentity{ID: NewID("authid"), Tenant: tenant, ActorIDs: map[string]string{}, AppMetadata: map[string]any{}, CreatedAt: now, UpdatedAt: now}
	pi := &ProviderIdentity{
		ID: NewID("provid"), Tenant: tenant, AuthIdentityID: id.ID, Provider: provider, EntityID: entityID,
		UserMetadata: map[string]any{}, ProviderMetadata: providerMetadata, CreatedAt: now, UpdatedAt: now,
	}
	return id, pi
}

// mintFollowUp records the one-time follow-up of a redeemed sign-up code: a
// never-delivered challenge with the same code, the guesses left, and a short
// life.
func (s *Service) mintFollowUp(ctx context.Context, tx Tx, signUp *Challenge, subject, code string, now time.Time) error {
	ttl := s.FollowUpTTL
	if ttl <= 0 {
		ttl = time.Minute
	}
	left := signUp.MaxAttempts - signUp.Attempts
	if left < 1 {
		left = 1
	}
	key := signUp.ChallengeKey
	key.Purpose = PurposeSignUpFollowUp
	f := &Challenge{
		ID: NewID("chal"), ChallengeKey: key, SubjectID: subject,
		MaxAttempts: left, CreatedAt: now, ExpiresAt: now.Add(ttl),
	}
	f.CodeHash = s.Engine.Keys.HashCode(f.ID, code)
	_, err := tx.IssueChallenge(ctx, f, now)
	return err
}

// SignInAfterSignUp redeems the follow-up of a sign-up code: the code that
// just created the identity, presented once more to sign in as the actor
// created since. Before that actor exists the follow-up is refused but not
// spent. Every failure is ErrInvalidCode.
func (s *Service) SignInAfterSignUp(ctx context.Context, r CodeRequest, code string) (*Principal, error) {
	return s.redeem(ctx, r, PurposeSignUpFollowUp, code, func(tx Tx, ch *Challenge, _ Contact) (*Principal, error) {
		id, err := subject(ctx, tx, ch)
		if err != nil {
			return nil, err
		}
		if id.ActorIDs[r.ActorType] == "" {
			// No actor yet: failing here rolls the redemption back, so the
			// follow-up stays usable once the client has created the actor.
			return nil, ErrInvalidCode
		}
		return PrincipalFor(id, r.ActorType, nil), nil
	})
}

// ActorFields are the profile fields of a new actor. Nil means not given.
type ActorFields struct {
	Email       *string
	Phone       *string
	FirstName   *string
	LastName    *string
	CompanyName *string
	Metadata    map[string]any
}

// Errors of CreateActor, with the messages Medusa clients know.
var (
	ErrAlreadyActor     = &Error{Code: EINVALID, Message: "Request already authenticated as a customer."}
	ErrEmailRequired    = &Error{Code: EINVALID, Message: "Email is required to create a customer"}
	ErrActorExists      = &Error{Code: ECONFLICT, Message: "Customer with this email already has an account"}
	ErrActorPhoneExists = &Error{Code: ECONFLICT, Message: "Customer with this phone already has an account"}
)

// CreateActor creates the actor of p's actor type for p's auth identity and
// links them, in one transaction. p must not be linked to an actor of that
// type yet (ErrAlreadyActor). When the identity signed up by code, the
// identifier it proved is the actor's email or phone, marked verified: a
// client cannot claim another address in its place (EINVALID naming the
// field). Any other email or phone given is stored unverified: it reserves
// nothing and no code sent to it signs in to this actor, so nobody can
// capture another person's address by typing it. Returns ErrActorExists
// (ErrActorPhoneExists) when an account has already proved the email
// (phone).
func (s *Service) CreateActor(ctx context.Context, p *Principal, f ActorFields) (*Actor, error) {
	t, err := s.ActorType(p.ActorType)
	if err != nil {
		return nil, err
	}
	if p.ActorID != "" {
		return nil, ErrAlreadyActor
	}
	now := s.now()
	a := &Actor{
		ID: NewID(t.IDPrefix), Tenant: p.Tenant, Type: t.Name, Metadata: f.Metadata,
		HasAccount: true, CreatedAt: now, UpdatedAt: now,
	}
	if f.Email != nil && *f.Email != "" {
		if a.Email, err = NormalizeEmail(*f.Email); err != nil {
			return nil, FieldErrorf("email", "Field 'email' must be a valid email address")
		}
	}
	if f.Phone != nil && *f.Phone != "" {
		if a.Phone, err = s.Normalizer.NormalizePhone(*f.Phone); err != nil {
			return nil, FieldErrorf("phone", "Field 'phone' must be a phone number in international format (+...)")
		}
	}
	for dst, src := range map[*string]*string{&a.FirstName: f.FirstName, &a.LastName: f.LastName, &a.CompanyName: f.CompanyName} {
		if src != nil {
			*dst = strings.TrimSpace(*src)
		}
	}
	err = s.Store.Update(ctx, func(tx Tx) error {
		id, err := current(ctx, tx, p)
		if err != nil {
			return err
		}
		if id.ActorIDs[t.Name] != "" {
			return ErrAlreadyActor
		}
		pis, err := tx.FindProviderIdentities(ctx, p.Tenant, id.ID)
		if err != nil {
			return err
		}
		for _, pi := range pis {
			if pi.Provider != ProviderOTP {
				continue
			}
			if err := bindProven(a, pi.EntityID); err != nil {
				return err
			}
		}
		if a.Email == "" && a.Phone == "" {
			return ErrEmailRequired
		}
		for _, c := range []struct {
			contact Contact
			taken   *Error
		}{{Contact{ChannelEmail, a.Email}, ErrActorExists}, {Contact{ChannelSMS, a.Phone}, ErrActorPhoneExists}} {
			if c.contact.Value == "" {
				continue
			}
			if _, err := tx.FindActorByContact(ctx, p.Tenant, t.Name, c.contact); err == nil {
				return c.taken
			} else if ErrorCode(err) != ENOTFOUND {
				return err
			}
		}
		// The unique index on verified contacts settles a concurrent claim.
		if err := tx.CreateActor(ctx, a); ErrorCode(err) == ECONFLICT {
			return ErrActorExists
		} else if err != nil {
			return err
		}
		return tx.LinkActor(ctx, p.Tenant, id.ID, t.Name, a.ID, now)
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// bindProven fills in, or checks, the actor's email or phone against an
// identifier the identity proved by code, and marks it verified.
func bindProven(a *Actor, proven string) error {
	if strings.Contains(proven, "@") {
		if a.Email != "" && a.Email != proven {
			return FieldErrorf("email", "Field 'email' must be the address verified at sign-up")
		}
		a.Email, a.EmailVerified = proven, true
		return nil
	}
	if a.Phone != "" && a.Phone != proven {
		return FieldErrorf("phone", "Field 'phone' must be the number verified at sign-up")
	}
	a.Phone, a.PhoneVerified = proven, true
	return nil
}

// Refresh re-reads p's auth identity and returns a fresh principal for the
// same actor type, so a token minted before the actor existed comes back
// with the actor id. Returns ErrUnauthorized if the identity is gone or has
// revoked p's token.
func (s *Service) Refresh(ctx context.Context, p *Principal) (*Principal, error) {
	var out *Principal
	err := s.Store.View(ctx, func(tx Tx) error {
		id, err := current(ctx, tx, p)
		if err != nil {
			return err
		}
		out = PrincipalFor(id, p.ActorType, p.UserMetadata)
		return nil
	})
	return out, err
}

// FindActor returns the actor p acts as. Returns ErrUnauthorized if p has
// no actor, it no longer exists, or p's token was revoked.
func (s *Service) FindActor(ctx context.Context, p *Principal) (*Actor, error) {
	if p.ActorID == "" {
		return nil, ErrUnauthorized
	}
	var a *Actor
	err := s.Store.View(ctx, func(tx Tx) error {
		if _, err := current(ctx, tx, p); err != nil {
			return err
		}
		var err error
		a, err = tx.FindActorByID(ctx, p.Tenant, p.ActorType, p.ActorID)
		if ErrorCode(err) == ENOTFOUND {
			return ErrUnauthorized
		}
		return err
	})
	return a, err
}
