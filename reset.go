package otpd

import (
	"context"
	"net/netip"
	"time"
)

// DefaultResetTokenTTL is how long a password reset token lives: Medusa's
// 15 minutes.
const DefaultResetTokenTTL = 15 * time.Minute

// resetCodeLength is the length of the code a reset token carries. It is
// never typed, so it is as long as a code may be.
const resetCodeLength = 10

// ResetGrant is what a password reset token carries: whose password it
// resets and the code that makes it single-use. The dialect signs it into
// its own token format (Medusa's reset JWT) and reads it back.
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

// RequestPasswordReset issues a single-use reset token for the provider
// identity of r's identifier and delivers it as an auth.password_reset
// event {entity_id, actor_type, token, metadata}. It answers the same
// whether or not the identity exists (a decoy is recorded for an unknown
// one, and an identifier that cannot be normalized is silently dropped),
// and is held to the send limits of any code: the per-address throttle,
// and the destination's cooldown and budget.
func (s *Service) RequestPasswordReset(ctx context.Context, r ResetRequest) error {
	if _, ok := passwordProviders[r.Provider]; !ok {
		return Errorf(EINVALID, "%q is not a password provider.", r.Provider)
	}
	ttl := s.ResetTokenTTL
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
	err := s.request(ctx, cr, PurposeResetPassword, pol, d, func(ctx context.Context, tx Tx, key ChallengeKey, c Contact) (Subject, error) {
		pi, err := tx.FindProviderIdentity(ctx, key.Tenant, r.Provider, c.Value)
		if ErrorCode(err) == ENOTFOUND {
			return Subject{Decoy: true}, nil
		} else if err != nil {
			return Subject{}, err
		}
		return Subject{ID: pi.AuthIdentityID}, nil
	})
	if e := AsError(err); e != nil && e.Code == EINVALID && e.Field == "identifier" {
		return nil // nothing can be registered under it: nothing to send
	}
	return err
}

// ErrInvalidResetToken is every failure of a reset token: unknown, expired,
// used, superseded by a newer one, or for an identity that changed since.
var ErrInvalidResetToken = &Error{Code: EUNAUTHORIZED, Message: "Invalid token"}

// ResetPassword sets the password of g's provider identity, spending g's
// code: a token works once, and only while it is the newest of its
// identifier. The new password must pass the rules (EINVALID naming
// "password"), checked before the token is spent. Every token of the
// identity issued before the change is revoked with it.
func (s *Service) ResetPassword(ctx context.Context, g ResetGrant, password string, client netip.Addr) error {
	if _, ok := passwordProviders[g.Provider]; !ok {
		return ErrInvalidResetToken
	}
	if s.Passwords == nil {
		return Errorf(EINTERNAL, "No password hasher is configured.")
	}
	if err := s.Passwords.Check(password); err != nil {
		return err
	}
	// The password limits come before the hash, so that replaying a token
	// (even a spent one) cannot make the server hash without bound.
	tenant := g.Tenant
	if tenant == "" {
		tenant = DefaultTenant
	}
	if err := s.throttle(ctx, s.passwordLimits(client, tenant, g.Provider, g.EntityID)...); err != nil {
		return err
	}
	hash, err := s.Passwords.Hash(ctx, password)
	if err != nil {
		return err
	}
	now := s.now()
	cr := CodeRequest{Tenant: g.Tenant, ActorType: g.ActorType, Identifier: g.EntityID, Provider: g.Provider, Client: client}
	_, err = s.redeem(ctx, cr, PurposeResetPassword, g.Code, func(tx Tx, ch *Challenge, _ Contact) (*Principal, error) {
		pi, err := tx.FindProviderIdentity(ctx, ch.Tenant, g.Provider, ch.Destination)
		if ErrorCode(err) == ENOTFOUND || (err == nil && pi.AuthIdentityID != ch.SubjectID) {
			// Deleted, or re-registered by someone else since: the token
			// was for the old identity.
			return nil, ErrInvalidResetToken
		} else if err != nil {
			return nil, err
		}
		md := make(map[string]any, len(pi.ProviderMetadata)+1)
		for k, v := range pi.ProviderMetadata {
			md[k] = v
		}
		md["password"] = hash
		if err := tx.SetProviderMetadata(ctx, ch.Tenant, pi.ID, md, now); err != nil {
			return nil, err
		}
		return nil, revokeAll(ctx, tx, ch.Tenant, pi.AuthIdentityID, revocationTime(now), now)
	})
	if err == ErrInvalidCode {
		return ErrInvalidResetToken
	}
	return err
}
