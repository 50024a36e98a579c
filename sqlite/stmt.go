package sqlite

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/sqlstore"
)

// query names one of the statements the store prepares.
type query int

const (
	qSendStats query = iota
	qRetireChallenges
	qCreateChallenge
	qRetireOtherChallenges
	qAttemptChallenge
	qLatestChallenge
	qConsumeChallenge
	qDeleteChallengesBefore
	qFindChallenge
	qAttemptChallengeID
	qCancelChallenge
	qRetireActorChallenges
	qSaveResponse
	qFindResponse
	qDeleteResponsesBefore
	qCreateAuthIdentity
	qDeleteAuthIdentity
	qCreateProviderIdentity
	qInsertActorLink
	qLinkActor
	qTouchAuthIdentity
	qSetProviderMetadata
	qRevokeTokens
	qFindAuthIdentityByID
	qFindProviderIdentity
	qFindProviderIdentities
	qFindAuthIdentityIDByActor
	qFindSignInSubjectByEmail
	qFindSignInSubjectByPhone
	qProveEmail
	qProvePhone
	qCreateActor
	qFindActorByID
	qFindActorByEmail
	qFindActorByPhone
	qEnqueueMessage
	qClaimMessages
	qRenewLeases
	qDeleteMessage
	qRescheduleMessage
	qCountMessages
	qCreateRefreshToken
	qRotateRefreshToken
	qFindRefreshToken
	qRevokeRefreshFamily
	qRevokeRefreshTokens
	qRefreshFamilyLive
	qDeleteRefreshTokensBefore
	qCreateAPIKey
	qFindAPIKeyByHash
	qListAPIKeys
	qRevokeAPIKey
	qTouchAPIKey
	qInsertAudit
	qDeleteAuditBefore
	qInsertSigningKey
	qListSigningKeys
	numQueries
)

// Column lists, in the order the scan functions read them.
const challengeColumns = sqlstore.ChallengeColumns

const actorColumns = sqlstore.ActorColumns

const providerIdentityColumns = sqlstore.ProviderIdentityColumns

const outboxColumns = sqlstore.MessageColumns

// refreshColumns, in the order sqlstore.ScanRefreshToken reads them.
const refreshColumns = sqlstore.RefreshTokenColumns

// apiKeyColumns, in the order sqlstore.ScanAPIKey reads them.
const apiKeyColumns = sqlstore.APIKeyColumns

// queries holds each statement's text and whether it writes (read-only
// statements are also prepared on the reader pool). In the challenge
// statements, the liveness predicate at ?5 ("now") is: not consumed, not
// retired, not expired, guesses left; it matches otpd.Challenge.Live.
var queries = [numQueries]struct {
	sql   string
	write bool
}{
	// SendStats: Count and Oldest over the sends (channel <> '') to the
	// destination after ?3, whatever the purpose or actor type
	// (challenges_destination_idx); Last, the newest send of the key itself,
	// of any age, unless its code was redeemed (challenges_key_idx, read
	// backwards).
	qSendStats: {sql: `
SELECT count(*), min(created_at),
	(SELECT CASE WHEN consumed_at IS NULL THEN created_at END FROM challenges
	 WHERE tenant = ?1 AND actor_type = ?4 AND purpose = ?5 AND destination = ?2 AND channel <> ''
	 ORDER BY created_at DESC LIMIT 1)
FROM challenges
WHERE tenant = ?1 AND destination = ?2 AND channel <> '' AND created_at > ?3`},

	qRetireChallenges: {write: true, sql: `
UPDATE challenges SET retired_at = ?5
WHERE tenant = ?1 AND actor_type = ?2 AND purpose = ?3 AND destination = ?4
	AND consumed_at IS NULL AND retired_at IS NULL AND expires_at > ?5 AND attempts < max_attempts`},

	qCreateChallenge: {write: true, sql: `
INSERT INTO challenges (` + challengeColumns + `)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},

	// RetireOtherChallenges is RetireChallenges sparing ?6, the challenge
	// IssueChallenge has just inserted.
	qRetireOtherChallenges: {write: true, sql: `
UPDATE challenges SET retired_at = ?5
WHERE tenant = ?1 AND actor_type = ?2 AND purpose = ?3 AND destination = ?4
	AND consumed_at IS NULL AND retired_at IS NULL AND expires_at > ?5 AND attempts < max_attempts
	AND id <> ?6`},

	// AttemptChallenge: one statement picks the newest live challenge of the
	// key and counts the guess; the outer WHERE repeats the liveness
	// predicate so the increment can never apply to a row that is not live.
	qAttemptChallenge: {write: true, sql: `
UPDATE challenges SET attempts = attempts + 1
WHERE id = (
		SELECT id FROM challenges
		WHERE tenant = ?1 AND actor_type = ?2 AND purpose = ?3 AND destination = ?4
			AND consumed_at IS NULL AND retired_at IS NULL AND expires_at > ?5 AND attempts < max_attempts
		ORDER BY created_at DESC, id DESC
		LIMIT 1)
	AND consumed_at IS NULL AND retired_at IS NULL AND expires_at > ?5 AND attempts < max_attempts
RETURNING ` + challengeColumns},

	qLatestChallenge: {sql: `
SELECT ` + challengeColumns + ` FROM challenges
WHERE tenant = ?1 AND actor_type = ?2 AND purpose = ?3 AND destination = ?4
ORDER BY created_at DESC, id DESC
LIMIT 1`},

	// ConsumeChallenge: compare-and-set. It deliberately does not test
	// attempts < max_attempts: the guess that is being redeemed has already
	// been counted, and the last allowed guess may be the right one.
	qConsumeChallenge: {write: true, sql: `
UPDATE challenges SET consumed_at = ?2
WHERE id = ?1 AND consumed_at IS NULL AND retired_at IS NULL AND expires_at > ?2`},

	qDeleteChallengesBefore: {write: true, sql: `DELETE FROM challenges WHERE expires_at < ?`},

	qFindChallenge: {sql: `SELECT ` + challengeColumns + ` FROM challenges WHERE tenant = ?1 AND id = ?2`},

	// AttemptChallengeID: the liveness predicate at ?4.
	qAttemptChallengeID: {write: true, sql: `
UPDATE challenges SET attempts = attempts + 1
WHERE tenant = ?1 AND actor_type = ?2 AND id = ?3
	AND consumed_at IS NULL AND retired_at IS NULL AND expires_at > ?4 AND attempts < max_attempts
RETURNING ` + challengeColumns},

	qCancelChallenge: {write: true, sql: `
UPDATE challenges SET retired_at = ?3
WHERE tenant = ?1 AND id = ?2
	AND consumed_at IS NULL AND retired_at IS NULL AND expires_at > ?3 AND attempts < max_attempts`},

	// RetireActorChallenges: a prefix of challenges_key_idx.
	qRetireActorChallenges: {write: true, sql: `
UPDATE challenges SET retired_at = ?3
WHERE tenant = ?1 AND actor_type = ?2
	AND consumed_at IS NULL AND retired_at IS NULL AND expires_at > ?3 AND attempts < max_attempts`},

	// SaveResponse replaces only an expired record (?8): a live one makes
	// the upsert change no row, which is ECONFLICT.
	qSaveResponse: {write: true, sql: `
INSERT INTO idempotency_keys (tenant, scope, key, request_hash, status, body, created_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT (tenant, scope, key) DO UPDATE
SET request_hash = excluded.request_hash, status = excluded.status, body = excluded.body, created_at = excluded.created_at
WHERE idempotency_keys.created_at <= ?8`},

	qFindResponse: {sql: `
SELECT request_hash, status, body, created_at FROM idempotency_keys
WHERE tenant = ?1 AND scope = ?2 AND key = ?3 AND created_at > ?4`},

	qDeleteResponsesBefore: {write: true, sql: `DELETE FROM idempotency_keys WHERE created_at < ?`},

	qCreateAuthIdentity: {write: true, sql: `
INSERT INTO auth_identities (id, tenant, app_metadata, created_at, updated_at)
VALUES (?, ?, ?, ?, ?)`},

	qDeleteAuthIdentity: {write: true, sql: `DELETE FROM auth_identities WHERE id = ?`},

	qCreateProviderIdentity: {write: true, sql: `
INSERT INTO provider_identities (` + providerIdentityColumns + `)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`},

	qInsertActorLink: {write: true, sql: `
INSERT INTO auth_identity_actors (auth_identity_id, actor_type, actor_id, tenant, created_at)
VALUES (?, ?, ?, ?, ?)`},

	// LinkActor inserts the link only if the identity exists in the tenant:
	// zero rows means ENOTFOUND, a primary-key violation ECONFLICT.
	qLinkActor: {write: true, sql: `
INSERT INTO auth_identity_actors (auth_identity_id, actor_type, actor_id, tenant, created_at)
SELECT id, ?3, ?4, tenant, ?5 FROM auth_identities WHERE id = ?2 AND tenant = ?1`},

	qTouchAuthIdentity: {write: true, sql: `UPDATE auth_identities SET updated_at = ?2 WHERE id = ?1`},

	// SetProviderMetadata: zero rows changed means ENOTFOUND.
	qSetProviderMetadata: {write: true, sql: `
UPDATE provider_identities SET provider_metadata = ?3, updated_at = ?4
WHERE tenant = ?1 AND id = ?2`},

	// RevokeTokens only moves tokens_valid_after forward (the scalar,
	// two-argument MAX); zero rows changed means ENOTFOUND. A row whose
	// value stays is still counted as changed.
	qRevokeTokens: {write: true, sql: `
UPDATE auth_identities SET tokens_valid_after = MAX(tokens_valid_after, ?3)
WHERE tenant = ?1 AND id = ?2`},

	// One row per actor link (or one with NULL link columns).
	qFindAuthIdentityByID: {sql: `
SELECT a.id, a.tenant, a.app_metadata, a.created_at, a.updated_at, a.tokens_valid_after, l.actor_type, l.actor_id
FROM auth_identities a
LEFT JOIN auth_identity_actors l ON l.auth_identity_id = a.id
WHERE a.id = ?2 AND a.tenant = ?1`},

	qFindProviderIdentity: {sql: `
SELECT ` + providerIdentityColumns + ` FROM provider_identities
WHERE tenant = ? AND provider = ? AND entity_id = ?`},

	qFindProviderIdentities: {sql: `
SELECT ` + providerIdentityColumns + ` FROM provider_identities
WHERE auth_identity_id = ?2 AND tenant = ?1
ORDER BY created_at, id`},

	// The auth identity lookups: the oldest identity linked to an actor,
	// given by id or, for sign-in, as the one account whose verified
	// contact is ?3 (its unique partial index), in a scalar subquery.
	qFindAuthIdentityIDByActor: {sql: authIdentityOfActor("?3")},

	// FindSignInSubject: the verified account's identity, and the password
	// provider identity (?4) of an account that holds ?3 unverified, in one
	// statement.
	qFindSignInSubjectByEmail: {sql: signInSubject("email")},
	qFindSignInSubjectByPhone: {sql: signInSubject("phone")},

	// ProveContact: zero rows changed means not proved (see
	// otpd.IdentityTx.ProveContact).
	qProveEmail: {write: true, sql: proveContact("email")},
	qProvePhone: {write: true, sql: proveContact("phone")},

	qCreateActor: {write: true, sql: `
INSERT INTO actors (` + actorColumns + `)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},

	qFindActorByID: {sql: `SELECT ` + actorColumns + ` FROM actors WHERE id = ? AND tenant = ? AND type = ?`},

	qFindActorByEmail: {sql: `
SELECT ` + actorColumns + ` FROM actors
WHERE tenant = ? AND type = ? AND email = ? AND has_account AND email_verified AND email <> ''
LIMIT 1`},

	qFindActorByPhone: {sql: `
SELECT ` + actorColumns + ` FROM actors
WHERE tenant = ? AND type = ? AND phone = ? AND has_account AND phone_verified AND phone <> ''
LIMIT 1`},

	qEnqueueMessage: {write: true, sql: `
INSERT INTO outbox (` + outboxColumns + `)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`},

	// ClaimMessages: one statement selects the due messages and leases them
	// to ?4, so two dispatchers never claim the same message.
	qClaimMessages: {write: true, sql: `
UPDATE outbox SET next_attempt_at = ?1, lease_owner = ?4
WHERE id IN (
	SELECT id FROM outbox WHERE next_attempt_at <= ?2
	ORDER BY next_attempt_at, id
	LIMIT ?3)
RETURNING ` + outboxColumns},

	// RenewLeases: the ids come as one JSON array (?2), so the statement is
	// prepared once whatever their number; only the owner's leases move.
	qRenewLeases: {write: true, sql: `
UPDATE outbox SET next_attempt_at = ?3
WHERE id IN (SELECT value FROM json_each(?2)) AND lease_owner = ?1
RETURNING id`},

	qDeleteMessage: {write: true, sql: `DELETE FROM outbox WHERE id = ?`},

	// RescheduleMessage: only the owner's lease (?5) ends.
	qRescheduleMessage: {write: true, sql: `
UPDATE outbox SET attempts = ?2, next_attempt_at = ?3, last_error = ?4, lease_owner = ''
WHERE id = ?1 AND lease_owner = ?5`},

	qCountMessages: {sql: `SELECT count(*) FROM outbox`},

	qCreateRefreshToken: {write: true, sql: `
INSERT INTO refresh_tokens (` + refreshColumns + `)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},

	// RotateRefreshToken: compare-and-set on the token's liveness at ?2
	// ("now"), matching otpd.RefreshToken.Live; it returns the row as
	// updated, or none.
	qRotateRefreshToken: {write: true, sql: `
UPDATE refresh_tokens SET rotated_at = ?2
WHERE token_hash = ?1 AND rotated_at IS NULL AND revoked_at IS NULL AND expires_at > ?2
RETURNING ` + refreshColumns},

	qFindRefreshToken: {sql: `SELECT ` + refreshColumns + ` FROM refresh_tokens WHERE token_hash = ?`},

	qRevokeRefreshFamily: {write: true, sql: `
UPDATE refresh_tokens SET revoked_at = ?3
WHERE tenant = ?1 AND family_id = ?2 AND revoked_at IS NULL`},

	qRevokeRefreshTokens: {write: true, sql: `
UPDATE refresh_tokens SET revoked_at = ?3
WHERE tenant = ?1 AND auth_identity_id = ?2 AND revoked_at IS NULL`},

	qRefreshFamilyLive: {sql: `
SELECT EXISTS (
	SELECT 1 FROM refresh_tokens
	WHERE tenant = ?1 AND family_id = ?2 AND revoked_at IS NULL AND expires_at > ?3)`},

	qDeleteRefreshTokensBefore: {write: true, sql: `DELETE FROM refresh_tokens WHERE expires_at < ?`},

	qCreateAPIKey: {write: true, sql: `
INSERT INTO api_keys (` + apiKeyColumns + `)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)`},

	qInsertAudit: {write: true, sql: `INSERT INTO audit_log (` + sqlstore.AuditColumns + `)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},

	qDeleteAuditBefore: {write: true, sql: `DELETE FROM audit_log WHERE created_at < ?`},

	qFindAPIKeyByHash: {sql: `SELECT ` + apiKeyColumns + ` FROM api_keys WHERE key_hash = ?`},

	qListAPIKeys: {sql: `SELECT ` + apiKeyColumns + ` FROM api_keys ORDER BY created_at, id`},

	// RevokeAPIKey keeps the first revocation's time; zero rows changed
	// means ENOTFOUND (a row whose value stays is still counted).
	qRevokeAPIKey: {write: true, sql: `UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1`},

	// TouchAPIKey only moves last_used_at forward (the scalar MAX; NULL
	// counts as never).
	qTouchAPIKey: {write: true, sql: `
UPDATE api_keys SET last_used_at = MAX(coalesce(last_used_at, ?2), ?2) WHERE id = ?1`},

	// InsertSigningKey: a taken seq changes no row (the key is not made);
	// a taken id is a primary-key violation (ECONFLICT).
	qInsertSigningKey: {write: true, sql: `
INSERT INTO signing_keys (` + sqlstore.SigningKeyColumns + `)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (seq) DO NOTHING`},

	qListSigningKeys: {sql: `SELECT ` + sqlstore.SigningKeyColumns + ` FROM signing_keys ORDER BY seq`},
}

// stmtSet is the statements prepared on one pool. They are prepared on first
// use rather than at Open, because with Options.NoMigrate the tables may not
// exist yet; prepare runs outside any transaction, so it cannot deadlock on
// the writer's single connection. database/sql then re-prepares a statement
// once per connection and keeps it, and the driver keeps SQLite's compiled
// statement, so transactions never re-parse SQL.
type stmtSet struct {
	db    *sql.DB
	write bool // prepare writing statements too

	mu    sync.Mutex
	ready atomic.Bool
	stmts [numQueries]*sql.Stmt // nil for writing statements on the reader
}

func (s *stmtSet) prepare(ctx context.Context) error {
	if s.ready.Load() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready.Load() {
		return nil
	}
	for q := range numQueries {
		if queries[q].write && !s.write {
			continue
		}
		st, err := s.db.PrepareContext(ctx, queries[q].sql)
		if err != nil {
			s.closeLocked()
			return mapError("prepare statements (is the schema migrated?)", err)
		}
		s.stmts[q] = st
	}
	s.ready.Store(true)
	return nil
}

func (s *stmtSet) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ready.Store(false)
	s.closeLocked()
}

func (s *stmtSet) closeLocked() {
	for i, st := range s.stmts {
		if st != nil {
			st.Close()
			s.stmts[i] = nil
		}
	}
}

// tx implements otpd.Tx on one database/sql transaction.
type tx struct {
	tx    *sql.Tx
	stmts *stmtSet

	// detached: statements ignore their context's cancellation. Set on
	// group-committed transactions, where one caller going away must not
	// interrupt a statement, since SQLite rolls back the whole transaction
	// (everyone's writes) when an interrupted write is inside it. Each
	// Update's context is checked before its function starts instead.
	detached bool
}

func (t *tx) ctx(ctx context.Context) context.Context {
	if t.detached {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

var _ otpd.Tx = (*tx)(nil)

// stmt returns q bound to the transaction, or nil when q is not prepared on
// this pool (a write inside View), in which case callers run the text and
// get SQLite's read-only error.
func (t *tx) stmt(ctx context.Context, q query) *sql.Stmt {
	ctx = t.ctx(ctx)
	if st := t.stmts.stmts[q]; st != nil {
		return t.tx.StmtContext(ctx, st)
	}
	return nil
}

func (t *tx) exec(ctx context.Context, q query, args ...any) (sql.Result, error) {
	ctx = t.ctx(ctx)
	if st := t.stmt(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, queries[q].sql, args...)
}

func (t *tx) query(ctx context.Context, q query, args ...any) (*sql.Rows, error) {
	ctx = t.ctx(ctx)
	if st := t.stmt(ctx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, queries[q].sql, args...)
}

func (t *tx) queryRow(ctx context.Context, q query, args ...any) *sql.Row {
	ctx = t.ctx(ctx)
	if st := t.stmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, queries[q].sql, args...)
}

// authIdentityOfActor selects the oldest auth identity of tenant ?1 linked
// to the actor of type ?2 whose id is the SQL expression actorID.
func authIdentityOfActor(actorID string) string {
	return `
SELECT a.id FROM auth_identity_actors l
JOIN auth_identities a ON a.id = l.auth_identity_id
WHERE l.tenant = ?1 AND l.actor_type = ?2 AND l.actor_id = ` + actorID + `
ORDER BY a.created_at, a.id
LIMIT 1`
}

// verifiedAccount is a scalar subquery: the id of the account of tenant ?1
// and type ?2 whose verified contact (column email or phone) is ?3.
func verifiedAccount(contact string) string {
	return `(
	SELECT c.id FROM actors c
	WHERE c.tenant = ?1 AND c.type = ?2 AND c.` + contact + ` = ?3 AND c.has_account AND c.` + contact + `_verified AND c.` + contact + ` <> '')`
}

// signInSubject selects, for tenant ?1, actor type ?2 and contact ?3 in
// column contact (email or phone): the auth identity of the account that
// proved it, and the provider identity of provider ?4 and entity ?3 whose
// identity is linked to the one account holding it unverified, when no
// account proved it (NULL unless exactly one qualifies).
func signInSubject(contact string) string {
	return `
SELECT (` + authIdentityOfActor(verifiedAccount(contact)) + `), (
	SELECT CASE WHEN COUNT(*) = 1 THEN MIN(p.id) END
	FROM provider_identities p
	JOIN auth_identity_actors l ON l.auth_identity_id = p.auth_identity_id AND l.actor_type = ?2
	JOIN actors c ON c.id = l.actor_id
	WHERE p.tenant = ?1 AND p.provider = ?4 AND p.entity_id = ?3
	AND c.tenant = ?1 AND c.type = ?2 AND c.` + contact + ` = ?3 AND c.has_account AND NOT c.` + contact + `_verified
	AND NOT EXISTS (` + provedBy(contact) + `))`
}

// provedBy selects the accounts of tenant ?1 and type ?2 that proved
// contact (column email or phone) ?3. Its predicate implies the partial unique
// index's on verified contacts, which therefore serves it.
func provedBy(contact string) string {
	return `SELECT 1 FROM actors o WHERE o.tenant = ?1 AND o.type = ?2 AND o.` + contact + ` = ?3 AND o.` + contact + ` <> '' AND o.has_account AND o.` + contact + `_verified`
}

// proveContact marks contact (column email or phone) ?3 of actor ?4 of
// tenant ?1 and type ?2 verified at ?5, if it is unverified and no other
// account proved it.
func proveContact(contact string) string {
	return `
UPDATE actors SET ` + contact + `_verified = TRUE, updated_at = ?5
WHERE tenant = ?1 AND type = ?2 AND id = ?4 AND ` + contact + ` = ?3 AND ` + contact + ` <> ''
AND has_account AND NOT ` + contact + `_verified AND NOT EXISTS (` + provedBy(contact) + `)`
}

// execCount runs q and returns how many rows it changed.
func (t *tx) execCount(ctx context.Context, op string, q query, args ...any) (int, error) {
	res, err := t.exec(ctx, q, args...)
	if err != nil {
		return 0, mapError(op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, mapError(op, err)
	}
	return int(n), nil
}
