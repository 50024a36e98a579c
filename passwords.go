package otpd

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"sync"
	"time"
)

// Password providers. Their provider identity's entity_id is the normalized
// identifier (an email for emailpass, an E.164 phone number for phonepass),
// and its provider_metadata.password the password hash (package password's
// format).
const (
	ProviderEmailpass = "emailpass" // email and password
	ProviderPhonepass = "phonepass" // phone number and password
)

// PasswordHasher checks, hashes and verifies passwords, with a bound on how
// many hashes run at once (package password's Hasher).
type PasswordHasher interface {
	Check(password string) error
	Hash(ctx context.Context, password string) (string, error)
	Verify(ctx context.Context, password, encoded string) (bool, error)
}

// PasswordChannel reports whether provider is a password provider, and the
// channel of its identifiers (ChannelEmail for emailpass, ChannelSMS for
// phonepass).
func PasswordChannel(provider string) (Channel, bool) {
	switch provider {
	case ProviderEmailpass:
		return ChannelEmail, true
	case ProviderPhonepass:
		return ChannelSMS, true
	}
	return "", false
}

// passwordProviderOf is the password provider whose identifiers are of
// channel ch: emailpass for emails, phonepass for phone numbers.
func passwordProviderOf(ch Channel) string {
	if ch == ChannelSMS {
		return ProviderPhonepass
	}
	return ProviderEmailpass
}

// passwordDisabledKey is the provider_metadata member that records when a
// password was disabled (RFC 3339), its "password" member removed: a
// password set before its address was proved (Codes.SignIn). A reset sets
// a password again and removes it.
const passwordDisabledKey = "password_disabled_at"

// endUnproven ends, inside the transaction that proves an address of
// identity id, what was set up before the proof: with disable, every
// password of the identity (disablePasswords); always, every session
// (revokeAll). id's TokensValidAfter moves with the revocation, so a
// principal built from it is not born revoked.
func endUnproven(ctx context.Context, tx Tx, id *AuthIdentity, disable bool, now time.Time) error {
	if disable {
		if err := disablePasswords(ctx, tx, id, now); err != nil {
			return err
		}
	}
	t := revocationTime(now)
	if err := revokeAll(ctx, tx, id.Tenant, id.ID, t, now); err != nil {
		return err
	}
	if id.TokensValidAfter.Before(t) {
		id.TokensValidAfter = t
	}
	return nil
}

// disablePasswords removes the password hash of every password provider
// identity of id, recording when (passwordDisabledKey). Signing in with a
// disabled password fails as a wrong one does.
func disablePasswords(ctx context.Context, tx Tx, id *AuthIdentity, now time.Time) error {
	pis, err := tx.FindProviderIdentities(ctx, id.Tenant, id.ID)
	if err != nil {
		return err
	}
	for _, pi := range pis {
		if _, ok := PasswordChannel(pi.Provider); !ok {
			continue
		}
		if _, ok := pi.ProviderMetadata["password"]; !ok {
			continue
		}
		md := maps.Clone(pi.ProviderMetadata)
		delete(md, "password")
		md[passwordDisabledKey] = now.UTC().Format(time.RFC3339)
		if err := tx.SetProviderMetadata(ctx, id.Tenant, pi.ID, md, now); err != nil {
			return err
		}
	}
	return nil
}

// Passwords is the password flow: registration and sign-in with a password
// provider, and password reset by a single-use token that carries a code of
// the code flow.
type Passwords struct {
	Codes  *Codes         // the engine, actors and throttles the reset codes use
	Hasher PasswordHasher // nil: every password route is an internal error

	// ResetTokenTTL is how long a password reset token lives (default
	// DefaultResetTokenTTL).
	ResetTokenTTL time.Duration

	dummyOnce sync.Once
	dummyHash string
	dummyErr  error
}

// PasswordRequest names who registers or signs in with a password.
type PasswordRequest struct {
	Tenant     string
	ActorType  string
	Provider   string // ProviderEmailpass or ProviderPhonepass
	Identifier string // the email or phone number as typed
	Password   string
	Client     netip.Addr
}

// Errors of the password flow. Dialects word them their own way (per
// provider: PasswordChannel tells an email's from a phone's).
var (
	// ErrIdentityExists: the identifier is registered with the provider.
	ErrIdentityExists = &Error{Code: ECONFLICT, Message: "An identity with this identifier already exists."}
	// ErrInvalidCredentials: every failed password sign-in.
	ErrInvalidCredentials = &Error{Code: EUNAUTHORIZED, Message: "Invalid identifier or password."}
	// ErrNotPasswordProvider: the provider has no passwords.
	ErrNotPasswordProvider = &Error{Code: EINVALID, Message: "The auth provider has no passwords."}
)

// resolve checks r's provider and returns its tenant and normalized
// identifier (Normalizer.ParseAs of the provider's channel).
func (f *Passwords) resolve(r PasswordRequest) (tenant, entity string, err error) {
	ch, ok := PasswordChannel(r.Provider)
	if !ok {
		return "", "", ErrNotPasswordProvider
	}
	if err := f.Codes.Actors.CheckProvider(r.ActorType, r.Provider); err != nil {
		return "", "", err
	}
	if f.Hasher == nil {
		return "", "", Errorf(EINTERNAL, "No password hasher is configured.")
	}
	c, err := f.Codes.Actors.Normalizer.ParseAs(ch, r.Identifier)
	return tenantOr(r.Tenant), c.Value, err
}

// Register creates an auth identity whose provider identity of r.Provider
// is r's identifier with r's password, and returns its principal (no actor
// yet). The password must pass the hasher's rules (EINVALID naming
// "password"). An identifier already registered with the provider is
// ErrIdentityExists: a second registration never overwrites the password.
func (f *Passwords) Register(ctx context.Context, r PasswordRequest) (*Principal, error) {
	tenant, entity, err := f.resolve(r)
	if err != nil {
		return nil, err
	}
	if err := f.Hasher.Check(r.Password); err != nil {
		return nil, err
	}
	if err := f.Codes.Throttler.Password(ctx, r.Client, tenant, r.Provider, entity); err != nil {
		return nil, err
	}
	hash, err := f.Hasher.Hash(ctx, r.Password)
	if err != nil {
		return nil, err
	}
	id, pi := newIdentity(tenant, r.Provider, entity, map[string]any{"password": hash}, f.Codes.Engine.now())
	audit := f.Codes.Engine.Audit
	var rec *AuditRecord
	err = f.Codes.Engine.Store.Update(ctx, func(tx Tx) error {
		// The unique (tenant, provider, entity) index settles a concurrent
		// registration of the same identifier.
		err := tx.CreateAuthIdentity(ctx, id, pi)
		if ErrorCode(err) == ECONFLICT {
			return ErrIdentityExists
		} else if err != nil {
			return err
		}
		rec, err = audit.in(ctx, tx, passwordNote(AuditPasswordRegistered, r, tenant, entity, id.ID))
		return err
	})
	if err != nil {
		return nil, err
	}
	audit.done(ctx, rec)
	return withProvider(PrincipalFor(id, r.ActorType, nil), r.Provider), nil
}

// SignIn checks r's password against the provider identity of r's
// identifier and returns its principal for r's actor type (an identity may
// sign in as any actor type; the token carries the actor of that type, if
// any). Every failure to authenticate is ErrInvalidCredentials, and an
// unknown identifier costs a password verification too, so that neither
// the answer nor its time tells whether it is registered. A disabled
// password (see Codes.SignIn) fails the same way, after the same
// verification. The hash is re-read after it is verified, so that a
// password disabled or changed meanwhile does not sign in.
func (f *Passwords) SignIn(ctx context.Context, r PasswordRequest) (*Principal, error) {
	p, identity, err := f.signIn(ctx, r)
	// Audited alone: a sign-in changes nothing. Errors of the server and
	// of the request (not a password provider) are not sign-in outcomes.
	if err == nil || errors.Is(err, ErrInvalidCredentials) {
		tenant, entity, _ := f.resolve(r)
		if entity == "" {
			entity = cleanText(r.Identifier, maxAuditValue) // unreadable: as typed
		}
		n := passwordNote(AuditPasswordSignIn, r, tenantOr(r.Tenant), entity, identity)
		if tenant != "" {
			n.Tenant = tenant
		}
		if err != nil {
			n.Event = AuditPasswordSignInRefused
		}
		f.Codes.Engine.Audit.write(ctx, n)
	}
	return p, err
}

// passwordNote is the audit note of a password event of r.
func passwordNote(event AuditEvent, r PasswordRequest, tenant, entity, identity string) auditNote {
	return auditNote{
		Event: event, Tenant: tenant, Address: entity, IdentityID: identity, Client: r.Client,
		Detail: map[string]string{DetailProvider: r.Provider, DetailActorType: r.ActorType},
	}
}

// signIn is SignIn, and the auth identity it found, if any.
func (f *Passwords) signIn(ctx context.Context, r PasswordRequest) (*Principal, string, error) {
	tenant, entity, err := f.resolve(r)
	if errors.Is(err, ErrBadIdentifier) {
		return nil, "", ErrInvalidCredentials // an identifier that cannot be registered
	} else if err != nil {
		return nil, "", err
	}
	if err := f.Codes.Throttler.Password(ctx, r.Client, tenant, r.Provider, entity); err != nil {
		return nil, "", err
	}
	// The identity is read with its password hash, in one read
	// transaction: the hash is verified outside it.
	var (
		pi *ProviderIdentity
		id *AuthIdentity
	)
	err = f.Codes.Engine.Store.View(ctx, func(tx Tx) error {
		var err error
		if pi, err = tx.FindProviderIdentity(ctx, tenant, r.Provider, entity); err != nil {
			return err
		}
		id, err = tx.FindAuthIdentityByID(ctx, tenant, pi.AuthIdentityID)
		return err
	})
	if ErrorCode(err) == ENOTFOUND {
		f.verifyDummy(ctx, r.Password)
		return nil, "", ErrInvalidCredentials
	} else if err != nil {
		return nil, "", err
	}
	stored, _ := pi.ProviderMetadata["password"].(string)
	if stored == "" {
		// Disabled: the same work and answer as for a wrong password.
		f.verifyDummy(ctx, r.Password)
		return nil, pi.AuthIdentityID, ErrInvalidCredentials
	}
	ok, err := f.Hasher.Verify(ctx, r.Password, stored)
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", err
		}
		return nil, "", fmt.Errorf("%s identity %s: stored password hash: %w", r.Provider, pi.ID, err)
	}
	if !ok {
		return nil, pi.AuthIdentityID, ErrInvalidCredentials
	}
	// The verification took a while (scrypt): a proof of the address or a
	// reset may have disabled or changed the password since, and revoked
	// the identity's sessions. Re-read both, so that neither lets this
	// sign-in through and the principal carries the latest revocation.
	err = f.Codes.Engine.Store.View(ctx, func(tx Tx) error {
		cur, err := tx.FindProviderIdentity(ctx, tenant, r.Provider, entity)
		if ErrorCode(err) == ENOTFOUND {
			return ErrInvalidCredentials
		} else if err != nil {
			return err
		}
		if h, _ := cur.ProviderMetadata["password"].(string); h != stored || cur.AuthIdentityID != pi.AuthIdentityID {
			return ErrInvalidCredentials
		}
		id, err = tx.FindAuthIdentityByID(ctx, tenant, pi.AuthIdentityID)
		if ErrorCode(err) == ENOTFOUND {
			return ErrInvalidCredentials
		}
		return err
	})
	if err != nil {
		return nil, pi.AuthIdentityID, err
	}
	return withProvider(PrincipalFor(id, r.ActorType, pi.UserMetadata), r.Provider), id.ID, nil
}

// verifyDummy verifies password against the dummy hash: the work of a
// sign-in that fails, whatever the reason.
func (f *Passwords) verifyDummy(ctx context.Context, password string) {
	if dummy, err := f.dummyPasswordHash(ctx); err == nil {
		f.Hasher.Verify(ctx, password, dummy)
	}
}

// dummyPasswordHash is a hash of a random password, made once, that sign-ins
// for unknown identifiers verify against to spend the same time as real
// ones.
func (f *Passwords) dummyPasswordHash(ctx context.Context) (string, error) {
	f.dummyOnce.Do(func() {
		secret, err := RandomCode(AlphabetAlphanumeric, 24)
		if err == nil {
			f.dummyHash, err = f.Hasher.Hash(context.WithoutCancel(ctx), secret)
		}
		f.dummyErr = err
	})
	return f.dummyHash, f.dummyErr
}

// DefaultResetTokenTTL is how long a password reset token lives: 15
// minutes.
const DefaultResetTokenTTL = 15 * time.Minute

// resetCodeLength is the length of the code a reset token carries. It is
// never typed, so it is as long as a code may be.
const resetCodeLength = 10

// ResetGrant is what a password reset token carries: whose password it
// resets and the code that makes it single-use. The dialect signs it into
// its own token format and reads it back.
type ResetGrant struct {
	Tenant    string
	ActorType string
	Provider  string // a password provider
	EntityID  string // the provider identity's normalized identifier
	Code      string // the challenge's code (secret)
	ExpiresAt time.Time
}

// ResetRequest asks for a password reset.
type ResetRequest struct {
	Tenant     string
	ActorType  string
	Provider   string // a password provider
	Identifier string // as typed
	Metadata   map[string]any
	Client     netip.Addr

	// Mint signs a grant into the token the event carries.
	Mint func(ResetGrant) (string, error)
}

// RequestReset issues a single-use reset token for the provider identity of
// r's identifier and delivers it as an auth.password_reset event {entity_id,
// actor_type, token, metadata}. It answers the same whether or not the
// identity exists (a decoy is recorded for an unknown one, and an
// identifier that cannot be read is silently dropped), and is held to the
// send limits of any code: the per-address throttle, and the destination's
// cooldown and budget.
func (f *Passwords) RequestReset(ctx context.Context, r ResetRequest) error {
	if _, ok := PasswordChannel(r.Provider); !ok {
		return ErrNotPasswordProvider
	}
	ttl := f.ResetTokenTTL
	if ttl <= 0 {
		ttl = DefaultResetTokenTTL
	}
	pol := Policy{Length: resetCodeLength, Alphabet: AlphabetAlphanumeric, TTL: ttl, MaxAttempts: 1}
	cr := CodeRequest{Tenant: r.Tenant, ActorType: r.ActorType, Identifier: r.Identifier, Provider: r.Provider, Client: r.Client}
	d := Delivery{
		Event:    EventPasswordReset,
		Metadata: r.Metadata,
		Carry: func(ch *Challenge, code string) (Carrier, error) {
			tok, err := r.Mint(ResetGrant{
				Tenant: ch.Tenant, ActorType: ch.ActorType, Provider: r.Provider,
				EntityID: ch.Destination, Code: code, ExpiresAt: ch.ExpiresAt,
			})
			return Carrier{Token: tok, WithoutCode: true}, err
		},
	}
	err := f.Codes.request(ctx, cr, PurposeResetPassword, pol, d, func(ctx context.Context, tx Tx, key ChallengeKey, c Contact) (Subject, error) {
		pi, err := tx.FindProviderIdentity(ctx, key.Tenant, r.Provider, c.Value)
		if ErrorCode(err) == ENOTFOUND {
			return Subject{Decoy: true}, nil
		} else if err != nil {
			return Subject{}, err
		}
		return Subject{ID: pi.AuthIdentityID}, nil
	})
	if errors.Is(err, ErrBadIdentifier) {
		return nil // nothing can be registered under it: nothing to send
	}
	return err
}

// ErrInvalidResetToken is every failure of a reset token: unknown, expired,
// used, superseded by a newer one, or for an identity that changed since.
var ErrInvalidResetToken = &Error{Code: EUNAUTHORIZED, Message: "Invalid token"}

// Reset sets the password of g's provider identity, spending g's code: a
// token works once, and only while it is the newest of its identifier. The
// new password must pass the rules (EINVALID naming "password"), checked
// before the token is spent. Every session of the identity from before the
// change is revoked with it. The token was delivered to the address, so
// spending it proves the address: the identity's accounts that hold it
// unproved are marked verified (proveReset), and a password disabled when
// a code first proved it works again, replaced by the new one.
func (f *Passwords) Reset(ctx context.Context, g ResetGrant, password string, client netip.Addr) error {
	if _, ok := PasswordChannel(g.Provider); !ok {
		return ErrInvalidResetToken
	}
	if f.Hasher == nil {
		return Errorf(EINTERNAL, "No password hasher is configured.")
	}
	if err := f.Hasher.Check(password); err != nil {
		return err
	}
	// The password limits come before the hash, so that replaying a token
	// (even a spent one) cannot make the server hash without bound.
	if err := f.Codes.Throttler.Password(ctx, client, tenantOr(g.Tenant), g.Provider, g.EntityID); err != nil {
		return err
	}
	hash, err := f.Hasher.Hash(ctx, password)
	if err != nil {
		return err
	}
	now := f.Codes.Engine.now()
	cr := CodeRequest{Tenant: g.Tenant, ActorType: g.ActorType, Identifier: g.EntityID, Provider: g.Provider, Client: client}
	_, err = f.Codes.redeem(ctx, cr, PurposeResetPassword, g.Code, AuditPasswordReset, func(tx Tx, ch *Challenge, _ Contact) (*Principal, error) {
		pi, err := tx.FindProviderIdentity(ctx, ch.Tenant, g.Provider, ch.Destination)
		if ErrorCode(err) == ENOTFOUND || (err == nil && pi.AuthIdentityID != ch.SubjectID) {
			// Deleted, or re-registered by someone else since: the token
			// was for the old identity.
			return nil, ErrInvalidResetToken
		} else if err != nil {
			return nil, err
		}
		md := maps.Clone(pi.ProviderMetadata)
		if md == nil {
			md = map[string]any{}
		}
		md["password"] = hash
		delete(md, passwordDisabledKey)
		if err := tx.SetProviderMetadata(ctx, ch.Tenant, pi.ID, md, now); err != nil {
			return nil, err
		}
		if err := proveReset(ctx, tx, pi, now); err != nil {
			return nil, err
		}
		// The principal only names the identity, for the audit record.
		return &Principal{Tenant: ch.Tenant, AuthIdentityID: pi.AuthIdentityID},
			revokeAll(ctx, tx, ch.Tenant, pi.AuthIdentityID, revocationTime(now), now)
	})
	if errors.Is(err, ErrInvalidCode) {
		return ErrInvalidResetToken
	}
	return err
}

// proveReset marks pi's address verified on every account pi's identity
// is linked to that holds it unproved, unless another account has proved
// it: a spent reset token proves the address as a sign-in code does.
func proveReset(ctx context.Context, tx Tx, pi *ProviderIdentity, now time.Time) error {
	ch, _ := PasswordChannel(pi.Provider)
	id, err := tx.FindAuthIdentityByID(ctx, pi.Tenant, pi.AuthIdentityID)
	if err != nil {
		return err
	}
	for actorType, actorID := range id.ActorIDs {
		if _, err := tx.ProveContact(ctx, pi.Tenant, actorType, actorID, Contact{Channel: ch, Value: pi.EntityID}, now); err != nil {
			return err
		}
	}
	return nil
}
