package otpd

import (
	"context"
	"time"
)

// RefreshToken is one link of a session's chain of refresh tokens. A session
// (a family) starts with one token when a code signs in; every refresh spends
// the newest token of the family and mints its child. The token itself is
// never stored: only Hash, its SHA-256 (a token carries 256 random bits, so
// a plain hash cannot be reversed).
type RefreshToken struct {
	ID             string // "rt_..."
	Tenant         string
	FamilyID       string // the session ("sess_..."): every rotation stays in it
	AuthIdentityID string
	ParentID       string // "" for the first token of a family
	Hash           []byte // SHA-256 of the token
	CreatedAt      time.Time
	ExpiresAt      time.Time  // the family's absolute end, inherited by every child
	RotatedAt      *time.Time // set once, by the refresh that spent it
	RevokedAt      *time.Time // set when the family was revoked
}

// Live reports whether t can still be spent at now.
func (t *RefreshToken) Live(now time.Time) bool {
	return t.RotatedAt == nil && t.RevokedAt == nil && now.Before(t.ExpiresAt)
}

// RefreshTx stores refresh tokens. Like challenges, their security state
// (rotation, revocation) changes only through single conditional
// statements.
type RefreshTx interface {
	// CreateRefreshToken inserts t. Returns ECONFLICT if its ID or its Hash
	// exists.
	CreateRefreshToken(ctx context.Context, t *RefreshToken) error

	// RotateRefreshToken spends the token whose hash is hash: in one
	// conditional statement it sets RotatedAt = now only if the token is
	// live (not rotated, not revoked, now before ExpiresAt), and returns the
	// token as updated. Returns ENOTFOUND, changing nothing, if no live token
	// has that hash. However many transactions rotate one hash at once,
	// exactly one succeeds.
	RotateRefreshToken(ctx context.Context, hash []byte, now time.Time) (*RefreshToken, error)

	// FindRefreshToken returns the token whose hash is hash, whatever its
	// state. Returns ENOTFOUND if there is none.
	FindRefreshToken(ctx context.Context, hash []byte) (*RefreshToken, error)

	// RevokeRefreshFamily sets RevokedAt = now on every unrevoked token of
	// the family, in one statement, and returns how many it revoked.
	RevokeRefreshFamily(ctx context.Context, tenant, familyID string, now time.Time) (int, error)

	// RevokeRefreshTokens revokes, as RevokeRefreshFamily does, every family
	// of the auth identity, and returns how many tokens it revoked.
	RevokeRefreshTokens(ctx context.Context, tenant, authIdentityID string, now time.Time) (int, error)

	// RefreshFamilyLive reports whether the family has a token that is
	// unrevoked and not expired at now: whether the session still exists.
	RefreshFamilyLive(ctx context.Context, tenant, familyID string, now time.Time) (bool, error)

	// DeleteRefreshTokensBefore removes the tokens whose ExpiresAt is before
	// t and returns how many it removed.
	DeleteRefreshTokensBefore(ctx context.Context, t time.Time) (int, error)
}
