package sqlstore

import (
	"context"
	"strconv"
	"strings"

	"github.com/otpd/otpd"
)

// The admin flow's statements (otpd.AdminTx), written once for both
// schemas. ph spells the n-th (1-based) placeholder of the dialect: "?n"
// for SQLite, "$n" for PostgreSQL. Every statement reads or deletes; the
// deletions are single DELETEs, each conditional on the identity.

// FindAuthIdentityIDsSQL selects the ids of the identities of tenant (1)
// that own a provider identity of entity_id (2) or are linked to an actor
// whose email or phone is (2), oldest first, at most (3).
func FindAuthIdentityIDsSQL(ph func(int) string) string {
	return `
SELECT a.id FROM auth_identities a
WHERE a.tenant = ` + ph(1) + ` AND a.id IN (
	SELECT p.auth_identity_id FROM provider_identities p
	WHERE p.tenant = ` + ph(1) + ` AND p.entity_id = ` + ph(2) + `
	UNION
	SELECT l.auth_identity_id FROM actors c
	JOIN auth_identity_actors l ON l.tenant = c.tenant AND l.actor_type = c.type AND l.actor_id = c.id
	WHERE c.tenant = ` + ph(1) + ` AND (c.email = ` + ph(2) + ` OR c.phone = ` + ph(2) + `))
ORDER BY a.created_at, a.id
LIMIT ` + ph(3)
}

// sessionSelect summarizes refresh token families; now is the placeholder
// number of the time Live is judged at.
func sessionSelect(ph func(int) string, now int) string {
	return `
SELECT family_id, auth_identity_id, min(created_at), max(created_at), max(expires_at), count(*),
	sum(CASE WHEN revoked_at IS NULL THEN 1 ELSE 0 END), max(revoked_at),
	sum(CASE WHEN revoked_at IS NULL AND expires_at > ` + ph(now) + ` THEN 1 ELSE 0 END)
FROM refresh_tokens`
}

// ListSessionsSQL selects the sessions of tenant (1) and identity (2) as of
// now (3) whose handle sorts before (4) (” for none), newest first, at
// most (5). It reads the refresh_tokens_auth_identity_idx index.
func ListSessionsSQL(ph func(int) string) string {
	return sessionSelect(ph, 3) + `
WHERE tenant = ` + ph(1) + ` AND auth_identity_id = ` + ph(2) + `
	AND (` + ph(4) + ` = '' OR family_id < ` + ph(4) + `)
GROUP BY family_id, auth_identity_id
ORDER BY family_id DESC
LIMIT ` + ph(5)
}

// FindSessionSQL selects session (2) of tenant (1) as of now (3).
func FindSessionSQL(ph func(int) string) string {
	return sessionSelect(ph, 3) + `
WHERE tenant = ` + ph(1) + ` AND family_id = ` + ph(2) + `
GROUP BY family_id, auth_identity_id`
}

// ScanSession reads a row of the session statements.
func ScanSession(s Scanner) (*otpd.SessionInfo, error) {
	var (
		v                         otpd.SessionInfo
		created, last, expires, n int64
		unrevoked, live           int64
		revoked                   *int64
	)
	if err := s.Scan(&v.Handle, &v.AuthIdentityID, &created, &last, &expires, &n, &unrevoked, &revoked, &live); err != nil {
		return nil, err
	}
	v.CreatedAt, v.LastRefreshAt, v.ExpiresAt = FromMS(created), FromMS(last), FromMS(expires)
	v.Refreshes = int(n) - 1
	if unrevoked == 0 {
		v.RevokedAt = FromNullMS(revoked)
	}
	v.Live = live > 0
	return &v, nil
}

// ListLiveChallengesSQL returns the statement and arguments that select
// the live challenges q names, newest first. Only the filters q sets are
// in the statement, so each shape uses its index: the key index for a
// subject, the destination index for an address, the primary key else.
func ListLiveChallengesSQL(ph func(int) string, q otpd.ChallengeQuery) (string, []any) {
	args := []any{q.Tenant, MS(q.Now)}
	var b strings.Builder
	b.WriteString(`SELECT ` + ChallengeColumns + ` FROM challenges
WHERE tenant = ` + ph(1) + ` AND consumed_at IS NULL AND retired_at IS NULL AND expires_at > ` + ph(2) + `
	AND attempts < max_attempts`)
	add := func(cond string, v any) {
		args = append(args, v)
		b.WriteString("\n\tAND " + strings.ReplaceAll(cond, "?", ph(len(args))))
	}
	if q.ActorType != "" {
		add("actor_type = ?", q.ActorType)
	} else {
		// A prefix of letters and ':' only (the caller's constant), compared
		// by substr: LIKE would treat '_' as a wildcard and fold case in
		// SQLite.
		add("substr(actor_type, 1, "+strconv.Itoa(len(q.ActorTypePrefix))+") = ?", q.ActorTypePrefix)
	}
	if q.Purpose != "" {
		add("purpose = ?", string(q.Purpose))
	}
	if q.Destination != "" {
		add("destination = ?", q.Destination)
	}
	if q.Before != "" {
		add("id < ?", q.Before)
	}
	args = append(args, q.Limit)
	b.WriteString("\nORDER BY id DESC\nLIMIT " + ph(len(args)))
	return b.String(), args
}

// DeleteIdentityStatements are the statements of a deletion of identity
// (2) of tenant (1), in the order they run.
type DeleteIdentityStatements struct {
	// Lock takes the identity's row first, as RevokeTokens does, so that a
	// deletion and a revocation of one identity lock in one order and
	// never deadlock; it touches no value. No row: nothing to delete.
	Lock string
	// Challenges bound to the identity or to one of its provider
	// identities (a sign-in code to an unproved password address), which
	// must go before the provider identities.
	Challenges    string
	RefreshTokens string
	Providers     string
	Links         string
	// Identity deletes the identity's row; no row: a concurrent deletion
	// won (the caller rolls back).
	Identity string
}

// DeleteIdentitySQL returns the statements of a deletion.
func DeleteIdentitySQL(ph func(int) string) DeleteIdentityStatements {
	t, id := ph(1), ph(2)
	return DeleteIdentityStatements{
		Lock: `UPDATE auth_identities SET updated_at = updated_at WHERE tenant = ` + t + ` AND id = ` + id,
		Challenges: `DELETE FROM challenges WHERE tenant = ` + t + ` AND subject_id <> '' AND (subject_id = ` + id + `
	OR subject_id IN (SELECT p.id FROM provider_identities p WHERE p.tenant = ` + t + ` AND p.auth_identity_id = ` + id + `))`,
		RefreshTokens: `DELETE FROM refresh_tokens WHERE tenant = ` + t + ` AND auth_identity_id = ` + id,
		Providers:     `DELETE FROM provider_identities WHERE tenant = ` + t + ` AND auth_identity_id = ` + id,
		Links:         `DELETE FROM auth_identity_actors WHERE tenant = ` + t + ` AND auth_identity_id = ` + id,
		Identity:      `DELETE FROM auth_identities WHERE tenant = ` + t + ` AND id = ` + id,
	}
}

// Exec runs one statement of a store's transaction and returns how many
// rows it changed; op names it in errors.
type Exec func(ctx context.Context, op, q string, args ...any) (int, error)

// DeleteIdentity runs st through exec for identity id of tenant: the
// lock, then each kind of row, then the identity. ENOTFOUND when the
// identity is not there (or a concurrent deletion won).
func (st DeleteIdentityStatements) DeleteIdentity(ctx context.Context, exec Exec, tenant, id string) (otpd.DeletedIdentity, error) {
	notFound := otpd.Errorf(otpd.ENOTFOUND, "Auth identity not found.")
	if n, err := exec(ctx, "delete auth identity: lock", st.Lock, tenant, id); err != nil {
		return otpd.DeletedIdentity{}, err
	} else if n == 0 {
		return otpd.DeletedIdentity{}, notFound
	}
	var d otpd.DeletedIdentity
	for _, s := range []struct {
		op, q string
		n     *int
	}{
		{"challenges", st.Challenges, &d.Challenges},
		{"refresh tokens", st.RefreshTokens, &d.RefreshTokens},
		{"provider identities", st.Providers, &d.ProviderIdentities},
		{"actor links", st.Links, &d.ActorLinks},
	} {
		var err error
		if *s.n, err = exec(ctx, "delete auth identity: "+s.op, s.q, tenant, id); err != nil {
			return otpd.DeletedIdentity{}, err
		}
	}
	if n, err := exec(ctx, "delete auth identity", st.Identity, tenant, id); err != nil {
		return otpd.DeletedIdentity{}, err
	} else if n == 0 {
		return otpd.DeletedIdentity{}, notFound
	}
	return d, nil
}
