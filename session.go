package otpd

import (
	"context"
	"time"
)

// Session tokens are stateless (Medusa's JWTs), so otpd revokes them per
// auth identity: AuthIdentity.TokensValidAfter ends every token issued
// before it. Tokens carry their issue time in whole seconds, so a
// revocation at t takes effect at the next whole second, and tokens minted
// for the identity after it are dated no earlier than that (see
// Principal.NotBefore): a token issued before the revocation, even in the
// same second, is refused, and one issued after it is not.

// revocationTime is the TokensValidAfter of a revocation at now.
func revocationTime(now time.Time) time.Time {
	return now.Truncate(time.Second).Add(time.Second)
}

// ErrUnauthorized is a token whose identity is gone or has revoked it.
var ErrUnauthorized = &Error{Code: EUNAUTHORIZED, Message: "Unauthorized"}

// current returns p's auth identity, or ErrUnauthorized when it no longer
// exists or has revoked p's token (p.IssuedAt before its TokensValidAfter).
func current(ctx context.Context, tx Tx, p *Principal) (*AuthIdentity, error) {
	id, err := tx.FindAuthIdentityByID(ctx, p.Tenant, p.AuthIdentityID)
	if ErrorCode(err) == ENOTFOUND {
		return nil, ErrUnauthorized
	} else if err != nil {
		return nil, err
	}
	if p.IssuedAt.Before(id.TokensValidAfter) {
		return nil, ErrUnauthorized
	}
	return id, nil
}

// Authenticate checks that the token p was read from is still good: its
// auth identity exists and has not revoked it since. It returns
// ErrUnauthorized otherwise.
func (s *Service) Authenticate(ctx context.Context, p *Principal) error {
	return s.Store.View(ctx, func(tx Tx) error {
		_, err := current(ctx, tx, p)
		return err
	})
}

// Logout ends the session p's token belongs to. With RevokeOnLogout it
// revokes every token of p's auth identity issued until now, on every
// device; otherwise it only checks the token, and the dialect forgets its
// session. A token already revoked is ErrUnauthorized.
func (s *Service) Logout(ctx context.Context, p *Principal) error {
	if !s.RevokeOnLogout {
		return s.Authenticate(ctx, p)
	}
	return s.Store.Update(ctx, func(tx Tx) error {
		if _, err := current(ctx, tx, p); err != nil {
			return err
		}
		t := revocationTime(s.now())
		if !p.IssuedAt.Before(t) {
			// p was minted after a revocation in this same second, so it is
			// dated at that revocation's second: end that second too.
			t = p.IssuedAt.Add(time.Second)
		}
		return revokeAll(ctx, tx, p.Tenant, p.AuthIdentityID, t, s.now())
	})
}

// revokeAll ends every session of an auth identity: its stateless tokens
// issued before validAfter, and at now every rotating session's refresh
// tokens.
func revokeAll(ctx context.Context, tx Tx, tenant, authIdentityID string, validAfter, now time.Time) error {
	if err := tx.RevokeTokens(ctx, tenant, authIdentityID, validAfter); err != nil {
		return err
	}
	_, err := tx.RevokeRefreshTokens(ctx, tenant, authIdentityID, now)
	return err
}
