package otpd

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"log/slog"
	"time"
)

// Sessions is the session flow. It keeps two kinds of session:
//
//   - stateless session tokens, revoked per auth identity:
//     AuthIdentity.TokensValidAfter ends every token issued before it.
//     Tokens carry their issue time in whole seconds, so a revocation at t
//     takes effect at the next whole second, and tokens minted for the
//     identity after it are dated no earlier than that (see
//     Principal.NotBefore): a token issued before the revocation, even in
//     the same second, is refused, and one issued after it is not;
//   - rotating sessions: a family of refresh tokens started when a code
//     signs in, each refresh spending the newest token and minting its
//     child (RefreshSession).
type Sessions struct {
	Store  Store
	Keys   *Keyring // derives refresh tokens' children
	Now    Clock
	Logger *slog.Logger // warns of reused refresh tokens; may be nil
	Audit  *Audit       // records refreshes, thefts and revocations; may be nil

	// RevokeOnLogout makes Logout revoke every token of the identity, not
	// only end the session it is called with.
	RevokeOnLogout bool

	// RefreshTTL is the absolute lifetime of a rotating session (default
	// DefaultRefreshTTL); RefreshGrace how long a spent refresh token still
	// yields its child, for concurrent refreshes (default
	// DefaultRefreshGrace).
	RefreshTTL   time.Duration
	RefreshGrace time.Duration

	// Metrics counts refreshes by outcome; may be nil.
	Metrics SessionMetrics
}

// RefreshOutcome is what came of one refresh, for metrics.
type RefreshOutcome string

// Refresh outcomes: a new access token; a session that is not live (or a
// token that names none); a reuse of a spent refresh token, which revoked
// the session.
const (
	RefreshOK      RefreshOutcome = "refreshed"
	RefreshExpired RefreshOutcome = "expired"
	RefreshTheft   RefreshOutcome = "theft"
)

// SessionMetrics observes session refreshes. Implementations must be safe
// for concurrent use.
type SessionMetrics interface {
	SessionRefreshed(outcome RefreshOutcome)
}

// observeRefresh counts the outcome of a refresh that ended with err (an
// outage is counted as nothing: it says nothing of the session).
func (s *Sessions) observeRefresh(err error) {
	if s.Metrics == nil {
		return
	}
	switch {
	case err == nil:
		s.Metrics.SessionRefreshed(RefreshOK)
	case errors.Is(err, ErrRefreshReused):
		s.Metrics.SessionRefreshed(RefreshTheft)
	case ErrorCode(err) == EUNAUTHORIZED:
		s.Metrics.SessionRefreshed(RefreshExpired)
	}
}

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
func (s *Sessions) Authenticate(ctx context.Context, p *Principal) error {
	return s.Store.View(ctx, func(tx Tx) error {
		_, err := current(ctx, tx, p)
		return err
	})
}

// Logout ends the session p's token belongs to. With RevokeOnLogout it
// revokes every token of p's auth identity issued until now, on every
// device, and ends its rotating sessions; otherwise it only checks the
// token, and the dialect forgets its session. A token already revoked is ErrUnauthorized.
func (s *Sessions) Logout(ctx context.Context, p *Principal) error {
	if !s.RevokeOnLogout {
		err := s.Authenticate(ctx, p)
		if err == nil {
			// Nothing changes here (the dialect forgets its session):
			// audited alone.
			s.Audit.write(ctx, principalNote(AuditSessionRevoked, p, "token"))
		}
		return err
	}
	var rec *AuditRecord
	err := s.Store.Update(ctx, func(tx Tx) error {
		if _, err := current(ctx, tx, p); err != nil {
			return err
		}
		t := revocationTime(s.Now.Time())
		if !p.IssuedAt.Before(t) {
			// p was minted after a revocation in this same second, so it is
			// dated at that revocation's second: end that second too.
			t = p.IssuedAt.Add(time.Second)
		}
		if err := revokeAll(ctx, tx, p.Tenant, p.AuthIdentityID, t, s.Now.Time()); err != nil {
			return err
		}
		var err error
		rec, err = s.Audit.in(ctx, tx, principalNote(AuditSessionRevoked, p, "all"))
		return err
	})
	if err == nil {
		s.Audit.done(ctx, rec)
	}
	return err
}

// principalNote is the audit note of event about the token of p; scope
// names what a revocation ended.
func principalNote(event AuditEvent, p *Principal, scope string) auditNote {
	return auditNote{Event: event, Tenant: p.Tenant, IdentityID: p.AuthIdentityID,
		Detail: map[string]string{DetailScope: scope, DetailProvider: p.Provider, DetailActorType: p.ActorType}}
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

// Refresh re-reads p's auth identity and returns a fresh principal for the
// same actor type and auth provider, so a token minted before the actor existed comes back
// with the actor id. Returns ErrUnauthorized if the identity is gone or has
// revoked p's token.
func (s *Sessions) Refresh(ctx context.Context, p *Principal) (*Principal, error) {
	var out *Principal
	err := s.Store.View(ctx, func(tx Tx) error {
		id, err := current(ctx, tx, p)
		if err != nil {
			return err
		}
		out = withProvider(PrincipalFor(id, p.ActorType, p.UserMetadata), p.Provider)
		return nil
	})
	s.observeRefresh(err)
	// A stateless refresh changes nothing: audited alone.
	switch {
	case err == nil:
		s.Audit.write(ctx, principalNote(AuditSessionRefreshed, p, "token"))
	case errors.Is(err, ErrUnauthorized):
		n := principalNote(AuditSessionRefreshFailed, p, "token")
		n.Detail[DetailReason] = "revoked"
		s.Audit.write(ctx, n)
	}
	return out, err
}

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

// Session is a signed-in session with a rotating refresh token: the family
// of refresh tokens started when a code signed in. Dialects mint their
// access tokens from it; the refresh token is what the client keeps.
type Session struct {
	Handle         string // the family id
	Tenant         string
	AuthIdentityID string
	RefreshToken   string    // secret; returned to the client, never stored
	ExpiresAt      time.Time // the refresh token's (and session's) absolute end
}

// Defaults of the rotating sessions' settings.
const (
	DefaultRefreshTTL   = 30 * 24 * time.Hour
	DefaultRefreshGrace = 10 * time.Second
)

// Refresh-token failures. Both are EUNAUTHORIZED; dialects may tell them
// apart (a reuse is a theft to report).
var (
	ErrSessionExpired = &Error{Code: EUNAUTHORIZED, Message: "The session has ended."}
	ErrRefreshReused  = &Error{Code: EUNAUTHORIZED, Message: "The refresh token was used twice: the session is revoked."}
)

func (s *Sessions) refreshTTL() time.Duration {
	if s.RefreshTTL > 0 {
		return s.RefreshTTL
	}
	return DefaultRefreshTTL
}

func (s *Sessions) refreshGrace() time.Duration {
	if s.RefreshGrace > 0 {
		return s.RefreshGrace
	}
	return DefaultRefreshGrace
}

// hashRefreshToken is the stored form of a refresh token.
func hashRefreshToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// start starts a rotating session for identity inside tx: the transaction
// that redeems the code, so a code that signs in has exactly one session.
func (s *Sessions) start(ctx context.Context, tx Tx, identity *AuthIdentity, now time.Time) (*Session, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	token := base64.RawURLEncoding.EncodeToString(b[:])
	rt := &RefreshToken{
		ID: NewID("rt"), Tenant: identity.Tenant, FamilyID: NewID("sess"), AuthIdentityID: identity.ID,
		Hash: hashRefreshToken(token), CreatedAt: now, ExpiresAt: now.Add(s.refreshTTL()),
	}
	if err := tx.CreateRefreshToken(ctx, rt); err != nil {
		return nil, err
	}
	return &Session{Handle: rt.FamilyID, Tenant: rt.Tenant, AuthIdentityID: rt.AuthIdentityID, RefreshToken: token, ExpiresAt: rt.ExpiresAt}, nil
}

// RefreshSession spends refresh token token and returns the session with
// its successor. Rotation is one conditional statement, so of any number of
// concurrent refreshes with one token exactly one mints the child; the
// others, arriving within RefreshGrace of that rotation, get the same child
// (it is derived from the parent, see Keyring.RefreshChild), so two tabs
// refreshing at once stay signed in. A spent token presented after the
// grace interval is a stolen or replayed token: the whole family is revoked
// and ErrRefreshReused returned. An unknown, expired or revoked token is
// ErrSessionExpired, as is a token whose identity is gone.
func (s *Sessions) RefreshSession(ctx context.Context, token string) (out *Session, err error) {
	defer func() { s.observeRefresh(err) }()
	if token == "" {
		return nil, ErrSessionExpired
	}
	hash := hashRefreshToken(token)
	child := s.Keys.RefreshChild(token)
	now := s.Now.Time()
	var (
		reused  *RefreshToken
		refused *RefreshToken // a known token refused: its session ended
		reason  string
		rec     *AuditRecord
	)
	err = s.Store.Update(ctx, func(tx Tx) error {
		out, reused, refused, reason, rec = nil, nil, nil, "", nil
		rt, err := tx.RotateRefreshToken(ctx, hash, now)
		if ErrorCode(err) == ENOTFOUND {
			old, err := tx.FindRefreshToken(ctx, hash)
			if ErrorCode(err) == ENOTFOUND {
				return ErrSessionExpired
			} else if err != nil {
				return err
			}
			switch {
			case old.RevokedAt != nil || !now.Before(old.ExpiresAt):
				refused, reason = old, "ended"
				if old.RevokedAt != nil {
					reason = "revoked"
				}
				return ErrSessionExpired
			case old.RotatedAt != nil && now.Before(old.RotatedAt.Add(s.refreshGrace())):
				// A concurrent refresh won: the child it minted is the
				// child of this token too.
				out = &Session{Handle: old.FamilyID, Tenant: old.Tenant, AuthIdentityID: old.AuthIdentityID, RefreshToken: child, ExpiresAt: old.ExpiresAt}
				rec, err = s.Audit.in(ctx, tx, refreshNote(AuditSessionRefreshed, old))
				return err
			}
			// Spent long ago: revoke the family, and commit that.
			if _, err := tx.RevokeRefreshFamily(ctx, old.Tenant, old.FamilyID, now); err != nil {
				return err
			}
			reused = old
			rec, err = s.Audit.in(ctx, tx, refreshNote(AuditSessionTheft, old))
			return err
		} else if err != nil {
			return err
		}
		if _, err := tx.FindAuthIdentityByID(ctx, rt.Tenant, rt.AuthIdentityID); ErrorCode(err) == ENOTFOUND {
			refused, reason = rt, "identity_deleted"
			return ErrSessionExpired
		} else if err != nil {
			return err
		}
		next := &RefreshToken{
			ID: NewID("rt"), Tenant: rt.Tenant, FamilyID: rt.FamilyID, AuthIdentityID: rt.AuthIdentityID,
			ParentID: rt.ID, Hash: hashRefreshToken(child), CreatedAt: now, ExpiresAt: rt.ExpiresAt,
		}
		if err := tx.CreateRefreshToken(ctx, next); err != nil {
			return err
		}
		out = &Session{Handle: rt.FamilyID, Tenant: rt.Tenant, AuthIdentityID: rt.AuthIdentityID, RefreshToken: child, ExpiresAt: rt.ExpiresAt}
		rec, err = s.Audit.in(ctx, tx, refreshNote(AuditSessionRefreshed, rt))
		return err
	})
	if refused != nil && errors.Is(err, ErrSessionExpired) {
		// The refusal changed nothing: audited alone. Unknown tokens
		// (never issued, or deleted once their session ended) are not
		// recorded: they name no session.
		n := refreshNote(AuditSessionRefreshFailed, refused)
		n.Detail[DetailReason] = reason
		s.Audit.write(ctx, n)
	}
	if err != nil {
		return nil, err
	}
	s.Audit.done(ctx, rec)
	if reused != nil {
		if l := s.Logger; l != nil {
			l.Warn("refresh token reused after rotation: session revoked",
				"tenant", reused.Tenant, "session", reused.FamilyID, "auth_identity_id", reused.AuthIdentityID)
		}
		return nil, ErrRefreshReused
	}
	return out, nil
}

// CheckSession returns ErrSessionExpired unless session handle of tenant
// is live: not revoked (signed out, reused, identity revoked) and not past
// its absolute end.
func (s *Sessions) CheckSession(ctx context.Context, tenant, handle string) error {
	now := s.Now.Time()
	return s.Store.View(ctx, func(tx Tx) error {
		live, err := tx.RefreshFamilyLive(ctx, tenant, handle, now)
		if err != nil {
			return err
		}
		if !live {
			return ErrSessionExpired
		}
		return nil
	})
}

// EndSession revokes session handle of tenant: its refresh tokens stop
// working at once. Ending an ended session is not an error.
func (s *Sessions) EndSession(ctx context.Context, tenant, handle string) error {
	now := s.Now.Time()
	var rec *AuditRecord
	err := s.Store.Update(ctx, func(tx Tx) error {
		_, err := tx.RevokeRefreshFamily(ctx, tenant, handle, now)
		if err != nil {
			return err
		}
		rec, err = s.Audit.in(ctx, tx, auditNote{Event: AuditSessionRevoked, Tenant: tenant,
			Detail: map[string]string{DetailScope: "session", DetailSession: handle}})
		return err
	})
	if err == nil {
		s.Audit.done(ctx, rec)
	}
	return err
}

// refreshNote is the audit note of event about refresh token rt.
func refreshNote(event AuditEvent, rt *RefreshToken) auditNote {
	return auditNote{Event: event, Tenant: rt.Tenant, IdentityID: rt.AuthIdentityID,
		Detail: map[string]string{DetailSession: rt.FamilyID}}
}
