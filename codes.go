package otpd

import (
	"context"
	"errors"
	"strings"
	"time"
)

// Codes is the code sign-in and sign-up flow: a code to an address an
// account proved signs in to that account; a code to a new address signs up
// an identity, and the same code, presented once more within FollowUpTTL,
// signs in as the actor created meanwhile.
type Codes struct {
	Engine    *Engine
	Actors    *Actors    // resolves actor types, providers and identifiers
	Throttler *Throttler // coarse limits; nil for none

	// FollowUpTTL is how long a redeemed sign-up code may be presented once
	// more to sign in as the actor created meanwhile (default 60 s).
	FollowUpTTL time.Duration

	// KeepUnprovenPasswords keeps the passwords of an identity when a
	// sign-in code first proves its account's address (see SignIn). By
	// default they are disabled: whoever set a password before the address
	// was proved may not be its owner.
	KeepUnprovenPasswords bool
}

// request issues a code of purpose for r, delivered as d. lookup, run in
// the issuing transaction, decides the subject.
func (f *Codes) request(ctx context.Context, r CodeRequest, purpose Purpose, pol Policy, d Delivery,
	lookup func(ctx context.Context, tx Tx, key ChallengeKey, c Contact) (Subject, error)) error {
	key, c, err := f.Actors.resolve(r, purpose)
	if err != nil {
		return err
	}
	if err := f.Throttler.Send(ctx, r.Client, key, c.Channel); err != nil {
		return err
	}
	d.Identifier = r.Identifier
	_, err = f.Engine.Issue(ctx, IssueRequest{
		Key: key, Channel: c.Channel, Policy: pol, Delivery: d,
		Subject: func(ctx context.Context, tx Tx) (Subject, error) { return lookup(ctx, tx, key, c) },
	})
	return err
}

// redeem verifies code against r's challenge of purpose and, in the same
// transaction, runs then to build the principal: if then fails, the code is
// not spent. An identifier that cannot be read is ErrInvalidCode, like any
// code that does not match.
//
// The guess is audited as AuditCodeVerified, or, when event is set, as
// event on a success.
func (f *Codes) redeem(ctx context.Context, r CodeRequest, purpose Purpose, code string, event AuditEvent,
	then func(tx Tx, ch *Challenge, c Contact) (*Principal, error)) (*Principal, error) {
	key, c, err := f.Actors.resolve(r, purpose)
	if errors.Is(err, ErrBadIdentifier) {
		return nil, ErrInvalidCode
	} else if err != nil {
		return nil, err
	}
	if err := f.Throttler.Verify(ctx, r.Client, key); err != nil {
		return nil, err
	}
	var out *Principal
	note := &auditNote{Event: event, Detail: map[string]string{}}
	res, err := f.Engine.Check(ctx, Guess{Key: key, Code: code, audit: note, Then: func(tx Tx, ch *Challenge) error {
		p, err := then(tx, ch, c)
		out = p
		if p != nil {
			note.IdentityID = p.AuthIdentityID
		}
		return err
	}})
	if err != nil {
		return nil, err
	}
	if res.Outcome != OutcomeSuccess {
		return nil, ErrInvalidCode
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
// verified email or phone is r.Identifier. When no account has proved the
// address, the code goes to the one account created with it by a password
// registration (emailpass for an email, phonepass for a phone number) and
// not proved since: the code is then for that password provider identity,
// and redeeming it proves the address (see SignIn). Which account that is
// never depends on addresses merely typed into a profile (they prove and
// reserve nothing) and is never a guess: the provider identity of an
// address is unique, and an account that proved the address always wins.
// When there is no such account, or it has no auth identity, nothing is
// sent but a decoy send is recorded, so the answer and the limits are the
// same as for an existing account.
func (f *Codes) RequestSignIn(ctx context.Context, r CodeRequest) error {
	return f.request(ctx, r, PurposeSignIn, Policy{}, Delivery{Event: EventOTPGenerated}, func(ctx context.Context, tx Tx, key ChallengeKey, c Contact) (Subject, error) {
		id, unproven, err := tx.FindSignInSubject(ctx, key.Tenant, key.ActorType, c, passwordProviderOf(c.Channel))
		switch {
		case err != nil:
			return Subject{}, err
		case id != "":
			return Subject{ID: id}, nil
		case unproven != "":
			return Subject{ID: unproven}, nil
		}
		return Subject{Decoy: true}, nil
	})
}

// SignIn redeems a sign-in code and returns the principal it proves. Every
// failure is ErrInvalidCode.
//
// A code sent to an address registered with a password but not proved yet
// (see RequestSignIn) proves it, in the transaction that spends the code:
// the account's email or phone is marked verified, every session of the
// identity from before is revoked (its tokens and refresh tokens), and,
// unless KeepUnprovenPasswords, every password of the identity is
// disabled, since whoever set it had not shown they own the address (a
// pre-account-hijacking defence). A password reset, whose token is
// delivered to the address, sets a working one again. If another account
// proved the address since the code was sent, the code is refused.
func (f *Codes) SignIn(ctx context.Context, r CodeRequest, code string) (*Principal, error) {
	now := f.Engine.now()
	return f.redeem(ctx, r, PurposeSignIn, code, "", func(tx Tx, ch *Challenge, c Contact) (*Principal, error) {
		if strings.HasPrefix(ch.SubjectID, providerIdentityPrefix+"_") {
			return f.prove(ctx, tx, ch, c, r.ActorType, now)
		}
		id, err := subject(ctx, tx, ch)
		if err != nil {
			return nil, err
		}
		return withProvider(PrincipalFor(id, r.ActorType, nil), ProviderOTP), nil
	})
}

// prove redeems a sign-in code whose subject is the password provider
// identity that registered c: it marks c proved on the identity's actor of
// actorType and ends what was set before the proof (endUnproven).
func (f *Codes) prove(ctx context.Context, tx Tx, ch *Challenge, c Contact, actorType string, now time.Time) (*Principal, error) {
	pi, err := tx.FindProviderIdentity(ctx, ch.Tenant, passwordProviderOf(c.Channel), ch.Destination)
	if ErrorCode(err) == ENOTFOUND || (err == nil && pi.ID != ch.SubjectID) {
		return nil, ErrInvalidCode
	} else if err != nil {
		return nil, err
	}
	id, err := tx.FindAuthIdentityByID(ctx, ch.Tenant, pi.AuthIdentityID)
	if ErrorCode(err) == ENOTFOUND {
		return nil, ErrInvalidCode
	} else if err != nil {
		return nil, err
	}
	actorID := id.ActorIDs[actorType]
	if actorID == "" {
		return nil, ErrInvalidCode
	}
	proved, err := tx.ProveContact(ctx, ch.Tenant, actorType, actorID, c, now)
	if ErrorCode(err) == ECONFLICT || (err == nil && !proved) {
		// Another account proved the address since the code was sent (or
		// the account no longer holds it): nothing to sign in to.
		return nil, ErrInvalidCode
	} else if err != nil {
		return nil, err
	}
	if err := endUnproven(ctx, tx, id, !f.KeepUnprovenPasswords, now); err != nil {
		return nil, err
	}
	return withProvider(PrincipalFor(id, actorType, nil), ProviderOTP), nil
}

// RequestSignUp sends a sign-up code to r.Identifier, unless an account of
// r's type has already proved that email or phone: then a decoy is recorded
// instead, so the answer does not reveal that the account exists.
func (f *Codes) RequestSignUp(ctx context.Context, r CodeRequest) error {
	return f.request(ctx, r, PurposeSignUp, Policy{}, Delivery{Event: EventPreRegisterOTPGenerated}, func(ctx context.Context, tx Tx, key ChallengeKey, c Contact) (Subject, error) {
		_, err := tx.FindActorByContact(ctx, key.Tenant, key.ActorType, c)
		if ErrorCode(err) == ENOTFOUND {
			return Subject{}, nil
		}
		return Subject{Decoy: true}, err
	})
}

// SignUp redeems a sign-up code. In the same transaction it retrieves or
// creates the auth identity whose otp provider identity is the identifier,
// and mints a follow-up challenge that lets the same code sign in once,
// within FollowUpTTL, as the actor the client creates next. The principal
// returned has an empty ActorID unless the identity was already linked.
func (f *Codes) SignUp(ctx context.Context, r CodeRequest, code string) (*Principal, error) {
	now := f.Engine.now()
	return f.redeem(ctx, r, PurposeSignUp, code, "", func(tx Tx, ch *Challenge, c Contact) (*Principal, error) {
		id, _, err := ensureIdentity(ctx, tx, ch.Tenant, c, now)
		if err != nil {
			return nil, err
		}
		if err := f.mintFollowUp(ctx, tx, ch, id.ID, code, now); err != nil {
			return nil, err
		}
		return withProvider(PrincipalFor(id, r.ActorType, nil), ProviderOTP), nil
	})
}

// mintFollowUp records the one-time follow-up of a redeemed sign-up code: a
// never-delivered challenge with the same code, the guesses left, and a short
// life.
func (f *Codes) mintFollowUp(ctx context.Context, tx Tx, signUp *Challenge, subject, code string, now time.Time) error {
	ttl := f.FollowUpTTL
	if ttl <= 0 {
		ttl = time.Minute
	}
	left := max(signUp.MaxAttempts-signUp.Attempts, 1)
	key := signUp.ChallengeKey
	key.Purpose = PurposeSignUpFollowUp
	fu := &Challenge{
		ID: NewID("chal"), ChallengeKey: key, SubjectID: subject,
		MaxAttempts: left, CreatedAt: now, ExpiresAt: now.Add(ttl),
	}
	fu.CodeHash = f.Engine.Keys.HashCode(fu.ID, code)
	_, err := tx.IssueChallenge(ctx, fu, now)
	return err
}

// SignInAfterSignUp redeems the follow-up of a sign-up code: the code that
// just created the identity, presented once more to sign in as the actor
// created since. Before that actor exists the follow-up is refused but not
// spent. Every failure is ErrInvalidCode.
func (f *Codes) SignInAfterSignUp(ctx context.Context, r CodeRequest, code string) (*Principal, error) {
	return f.redeem(ctx, r, PurposeSignUpFollowUp, code, "", func(tx Tx, ch *Challenge, _ Contact) (*Principal, error) {
		id, err := subject(ctx, tx, ch)
		if err != nil {
			return nil, err
		}
		if id.ActorIDs[r.ActorType] == "" {
			// No actor yet: failing here rolls the redemption back, so the
			// follow-up stays usable once the client has created the actor.
			return nil, ErrInvalidCode
		}
		return withProvider(PrincipalFor(id, r.ActorType, nil), ProviderOTP), nil
	})
}
