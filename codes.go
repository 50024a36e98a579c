package otpd

import (
	"context"
	"errors"
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
func (f *Codes) redeem(ctx context.Context, r CodeRequest, purpose Purpose, code string,
	then func(tx Tx, ch *Challenge, c Contact) (*Principal, error)) (*Principal, error) {
	key, c, err := f.Actors.resolve(r, purpose)
	if errors.Is(err, ErrBadIdentifier) {
		return nil, ErrInvalidCode
	} else if err != nil {
		return nil, err
	}
	if err := f.Throttler.Verify(ctx, r.Client); err != nil {
		return nil, err
	}
	var out *Principal
	_, err = f.Engine.Verify(ctx, key, code, func(tx Tx, ch *Challenge) error {
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
func (f *Codes) RequestSignIn(ctx context.Context, r CodeRequest) error {
	return f.request(ctx, r, PurposeSignIn, Policy{}, Delivery{Event: EventOTPGenerated}, func(ctx context.Context, tx Tx, key ChallengeKey, c Contact) (Subject, error) {
		id, err := tx.FindAuthIdentityIDByContact(ctx, key.Tenant, key.ActorType, c)
		if ErrorCode(err) == ENOTFOUND {
			return Subject{Decoy: true}, nil
		}
		return Subject{ID: id}, err
	})
}

// SignIn redeems a sign-in code and returns the principal it proves. Every
// failure is ErrInvalidCode.
func (f *Codes) SignIn(ctx context.Context, r CodeRequest, code string) (*Principal, error) {
	return f.redeem(ctx, r, PurposeSignIn, code, func(tx Tx, ch *Challenge, _ Contact) (*Principal, error) {
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
	return f.redeem(ctx, r, PurposeSignUp, code, func(tx Tx, ch *Challenge, c Contact) (*Principal, error) {
		id, _, err := ensureIdentity(ctx, tx, ch.Tenant, c, now)
		if err != nil {
			return nil, err
		}
		if err := f.mintFollowUp(ctx, tx, ch, id.ID, code, now); err != nil {
			return nil, err
		}
		return PrincipalFor(id, r.ActorType, nil), nil
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
	return f.redeem(ctx, r, PurposeSignUpFollowUp, code, func(tx Tx, ch *Challenge, _ Contact) (*Principal, error) {
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
