package postgres

import (
	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/sqlstore"
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

// The statements. In the challenge statements, the liveness predicate at $5
// ("now") is: not consumed, not retired, not expired, guesses left; it
// matches otpd.Challenge.Live.
const (
	// sqlLockDestination locks (tenant, destination) until the end of the
	// transaction. The key is length-prefixed so that no two pairs share a
	// hashed string (PostgreSQL text cannot hold chr(0) as a separator).
	sqlLockDestination = `SELECT pg_advisory_xact_lock(hashtextextended(length($1::text) || ':' || $1::text || $2::text, 0))`

	// sqlSendStats: Count and Oldest over the sends (channel <> '') to the
	// destination after $3, whatever the purpose or actor type
	// (challenges_destination_idx); Last, the newest send of the key itself,
	// of any age, unless its code was redeemed (challenges_key_idx, read
	// backwards).
	sqlSendStats = `
SELECT count(*), min(created_at),
	(SELECT CASE WHEN consumed_at IS NULL THEN created_at END FROM challenges
	 WHERE tenant = $1 AND actor_type = $4 AND purpose = $5 AND destination = $2 AND channel <> ''
	 ORDER BY created_at DESC LIMIT 1)
FROM challenges
WHERE tenant = $1 AND destination = $2 AND channel <> '' AND created_at > $3`

	sqlRetireChallenges = `
UPDATE challenges SET retired_at = $5
WHERE tenant = $1 AND actor_type = $2 AND purpose = $3 AND destination = $4
	AND consumed_at IS NULL AND retired_at IS NULL AND expires_at > $5 AND attempts < max_attempts`

	// sqlCreateChallenge: zero rows inserted means the id exists.
	sqlCreateChallenge = `
INSERT INTO challenges (` + challengeColumns + `)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT DO NOTHING`

	// sqlLockKey locks one challenge key (tenant, actor type, purpose,
	// destination) until the end of the transaction, so that issues on the
	// key are serialized. Its hashed string starts with 'k', so it never
	// equals one of sqlLockDestination's, which start with a digit.
	sqlLockKey = `SELECT pg_advisory_xact_lock(hashtextextended('k' ||
	length($1::text) || ':' || $1::text || length($2::text) || ':' || $2::text ||
	length($3::text) || ':' || $3::text || $4::text, 0))`

	// sqlIssueChallenge inserts a challenge and retires the other live ones
	// of its key ($15 is "now"), in one statement: the retirement runs only
	// if the insert did (EXISTS (SELECT 1 FROM ins)), so a duplicate id
	// (inserted = 0) changes nothing. All parts of a statement share one
	// snapshot, so the UPDATE cannot see the row being inserted; id <> $1
	// says so once more. Rows committed after the snapshot are not seen
	// either: callers take sqlLockKey in an earlier statement.
	sqlIssueChallenge = `
WITH ins AS (
	INSERT INTO challenges (` + challengeColumns + `)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
	ON CONFLICT DO NOTHING
	RETURNING id
), retired AS (
	UPDATE challenges SET retired_at = $15
	WHERE tenant = $2 AND actor_type = $3 AND purpose = $4 AND destination = $5
		AND consumed_at IS NULL AND retired_at IS NULL AND expires_at > $15 AND attempts < max_attempts
		AND id <> $1 AND EXISTS (SELECT 1 FROM ins)
	RETURNING 1
)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM retired)`

	// sqlAttemptChallenge: one statement picks the newest live challenge of
	// the key and counts the guess. The outer WHERE repeats the liveness
	// predicate: a concurrent guess that changed the row first makes
	// PostgreSQL re-check it against the new version (D3), so the increment
	// never applies to a row that is no longer live.
	sqlAttemptChallenge = `
UPDATE challenges SET attempts = attempts + 1
WHERE id = (
		SELECT id FROM challenges
		WHERE tenant = $1 AND actor_type = $2 AND purpose = $3 AND destination = $4
			AND consumed_at IS NULL AND retired_at IS NULL AND expires_at > $5 AND attempts < max_attempts
		ORDER BY created_at DESC, id DESC
		LIMIT 1)
	AND consumed_at IS NULL AND retired_at IS NULL AND expires_at > $5 AND attempts < max_attempts
RETURNING ` + challengeColumns

	sqlLatestChallenge = `
SELECT ` + challengeColumns + ` FROM challenges
WHERE tenant = $1 AND actor_type = $2 AND purpose = $3 AND destination = $4
ORDER BY created_at DESC, id DESC
LIMIT 1`

	// sqlConsumeChallenge: compare-and-set. It deliberately does not test
	// attempts < max_attempts: the guess that is being redeemed has already
	// been counted, and the last allowed guess may be the right one.
	sqlConsumeChallenge = `
UPDATE challenges SET consumed_at = $2
WHERE id = $1 AND consumed_at IS NULL AND retired_at IS NULL AND expires_at > $2`

	sqlDeleteChallengesBefore = `DELETE FROM challenges WHERE expires_at < $1`

	sqlCreateAuthIdentity = `
INSERT INTO auth_identities (id, tenant, app_metadata, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT DO NOTHING`

	sqlDeleteAuthIdentity = `DELETE FROM auth_identities WHERE id = $1`

	sqlCreateProviderIdentity = `
INSERT INTO provider_identities (` + providerIdentityColumns + `)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT DO NOTHING`

	sqlInsertActorLink = `
INSERT INTO auth_identity_actors (auth_identity_id, actor_type, actor_id, tenant, created_at)
VALUES ($1, $2, $3, $4, $5)`

	// sqlLinkActor links the identity only if it exists in the tenant and
	// has no actor of that type yet, and then touches its updated_at: found
	// = 0 means ENOTFOUND, linked = 0 ECONFLICT. One round trip.
	sqlLinkActor = `
WITH a AS (
	SELECT id, tenant FROM auth_identities WHERE id = $2 AND tenant = $1
), ins AS (
	INSERT INTO auth_identity_actors (auth_identity_id, actor_type, actor_id, tenant, created_at)
	SELECT id, $3, $4, tenant, $5 FROM a
	ON CONFLICT DO NOTHING
	RETURNING auth_identity_id
), touch AS (
	UPDATE auth_identities SET updated_at = $5 FROM ins WHERE auth_identities.id = ins.auth_identity_id
)
SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM ins)`

	// sqlSetProviderMetadata: zero rows updated means ENOTFOUND.
	sqlSetProviderMetadata = `
UPDATE provider_identities SET provider_metadata = $3, updated_at = $4
WHERE tenant = $1 AND id = $2`

	// sqlRevokeTokens only moves tokens_valid_after forward (GREATEST); zero
	// rows updated means ENOTFOUND. A row whose value stays is still
	// counted. Concurrent revocations of one identity queue on its row lock
	// and the later one re-reads the row, so neither undoes the other.
	sqlRevokeTokens = `
UPDATE auth_identities SET tokens_valid_after = GREATEST(tokens_valid_after, $3)
WHERE tenant = $1 AND id = $2`

	// One row per actor link (or one with NULL link columns).
	sqlFindAuthIdentityByID = `
SELECT a.id, a.tenant, a.app_metadata, a.created_at, a.updated_at, a.tokens_valid_after, l.actor_type, l.actor_id
FROM auth_identities a
LEFT JOIN auth_identity_actors l ON l.auth_identity_id = a.id
WHERE a.id = $2 AND a.tenant = $1`

	sqlFindProviderIdentity = `
SELECT ` + providerIdentityColumns + ` FROM provider_identities
WHERE tenant = $1 AND provider = $2 AND entity_id = $3`

	sqlFindProviderIdentities = `
SELECT ` + providerIdentityColumns + ` FROM provider_identities
WHERE auth_identity_id = $2 AND tenant = $1
ORDER BY created_at, id`

	// sqlCreateActor: zero rows inserted means the id, or a verified contact
	// of an account (the partial unique indexes), exists.
	sqlCreateActor = `
INSERT INTO actors (` + actorColumns + `)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT DO NOTHING`

	sqlFindActorByID = `SELECT ` + actorColumns + ` FROM actors WHERE id = $1 AND tenant = $2 AND type = $3`

	sqlFindActorByEmail = `
SELECT ` + actorColumns + ` FROM actors
WHERE tenant = $1 AND type = $2 AND email = $3 AND has_account AND email_verified AND email <> ''
LIMIT 1`

	sqlFindActorByPhone = `
SELECT ` + actorColumns + ` FROM actors
WHERE tenant = $1 AND type = $2 AND phone = $3 AND has_account AND phone_verified AND phone <> ''
LIMIT 1`

	sqlEnqueueMessage = `
INSERT INTO outbox (` + outboxColumns + `)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT DO NOTHING`

	// sqlClaimMessages: one statement selects the due messages and leases
	// them to $4. SKIP LOCKED lets concurrent dispatchers take
	// different messages rather than queue on the same rows; the outer
	// next_attempt_at test is re-checked on a row changed concurrently, so
	// no message is ever claimed twice.
	sqlClaimMessages = `
UPDATE outbox SET next_attempt_at = $1, lease_owner = $4
WHERE id IN (
	SELECT id FROM outbox WHERE next_attempt_at <= $2
	ORDER BY next_attempt_at, id
	LIMIT $3
	FOR UPDATE SKIP LOCKED)
	AND next_attempt_at <= $2
RETURNING ` + outboxColumns

	// sqlRenewLeases: only the owner's leases move. A concurrent claim of
	// a lapsed lease by another owner makes the owner test fail when it is
	// re-checked on the row it committed, so a lease is never renewed over
	// another dispatcher's claim.
	sqlRenewLeases = `
UPDATE outbox SET next_attempt_at = $3
WHERE id = ANY($2::text[]) AND lease_owner = $1
RETURNING id`

	sqlDeleteMessage = `DELETE FROM outbox WHERE id = $1`

	// sqlRescheduleMessage: only the owner's lease ($5) ends.
	sqlRescheduleMessage = `
UPDATE outbox SET attempts = $2, next_attempt_at = $3, last_error = $4, lease_owner = ''
WHERE id = $1 AND lease_owner = $5`

	sqlCountMessages = `SELECT count(*) FROM outbox`

	// sqlCreateRefreshToken: zero rows inserted means the id or the hash
	// exists.
	sqlCreateRefreshToken = `
INSERT INTO refresh_tokens (` + refreshColumns + `)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT DO NOTHING`

	// sqlRotateRefreshToken: compare-and-set on the token's liveness at $2
	// ("now"), matching otpd.RefreshToken.Live. Concurrent rotations of one
	// token queue on its row lock; when the first commits, PostgreSQL
	// re-checks the WHERE against the new version (rotated_at set) and the
	// others update nothing, so exactly one wins under READ COMMITTED.
	sqlRotateRefreshToken = `
UPDATE refresh_tokens SET rotated_at = $2
WHERE token_hash = $1 AND rotated_at IS NULL AND revoked_at IS NULL AND expires_at > $2
RETURNING ` + refreshColumns

	sqlFindRefreshToken = `SELECT ` + refreshColumns + ` FROM refresh_tokens WHERE token_hash = $1`

	sqlRevokeRefreshFamily = `
UPDATE refresh_tokens SET revoked_at = $3
WHERE tenant = $1 AND family_id = $2 AND revoked_at IS NULL`

	sqlRevokeRefreshTokens = `
UPDATE refresh_tokens SET revoked_at = $3
WHERE tenant = $1 AND auth_identity_id = $2 AND revoked_at IS NULL`

	sqlRefreshFamilyLive = `
SELECT EXISTS (
	SELECT 1 FROM refresh_tokens
	WHERE tenant = $1 AND family_id = $2 AND revoked_at IS NULL AND expires_at > $3)`

	sqlDeleteRefreshTokensBefore = `DELETE FROM refresh_tokens WHERE expires_at < $1`

	// sqlCreateAPIKey: zero rows inserted means the id or the hash exists.
	sqlCreateAPIKey = `
INSERT INTO api_keys (` + apiKeyColumns + `)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT DO NOTHING`

	sqlFindAPIKeyByHash = `SELECT ` + apiKeyColumns + ` FROM api_keys WHERE key_hash = $1`

	sqlListAPIKeys = `SELECT ` + apiKeyColumns + ` FROM api_keys ORDER BY created_at, id`

	// sqlRevokeAPIKey keeps the first revocation's time; zero rows updated
	// means ENOTFOUND (a row whose value stays is still counted).
	sqlRevokeAPIKey = `UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1`

	// sqlTouchAPIKey only moves last_used_at forward (GREATEST ignores a
	// NULL, never used). Concurrent touches queue on the row lock and the
	// later one re-reads the row, so neither moves it back.
	sqlTouchAPIKey = `UPDATE api_keys SET last_used_at = GREATEST(last_used_at, $2) WHERE id = $1`

	// sqlInsertSigningKey: a taken seq inserts no row (the unique index
	// decides between concurrent inserts); a taken id is a unique
	// violation (ECONFLICT).
	sqlInsertSigningKey = `
INSERT INTO signing_keys (` + sqlstore.SigningKeyColumns + `)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (seq) DO NOTHING`

	sqlListSigningKeys = `SELECT ` + sqlstore.SigningKeyColumns + ` FROM signing_keys ORDER BY seq`
)

// tx implements otpd.Tx on one transaction, begun with its first statement
// (conn).
type tx struct {
	tx    *conn
	write bool // an Update (SendStats locks the destination)
}

var _ otpd.Tx = (*tx)(nil)

// The auth identity lookups. sqlFindAuthIdentityIDByActor finds the oldest
// identity linked to an actor; the sign-in lookups find the one account with
// a verified contact (its unique partial index) in a scalar subquery,
// evaluated once, and then its links by the full (tenant, actor_type,
// actor_id) index. As a plain three-way join, a generic plan made on stale
// statistics (a fresh table, autovacuum off) scanned every link of the actor
// type: 9 ms instead of 0.1 ms at 18k accounts.
var (
	sqlFindAuthIdentityIDByActor = authIdentityOfActor("$3")
)

// The sign-in subject lookups (the verified account's identity, and the
// password provider identity $4 of an account holding $3 unverified) and
// the proof of a contact.
var (
	sqlFindSignInSubjectByEmail = signInSubject("email")
	sqlFindSignInSubjectByPhone = signInSubject("phone")
	sqlProveEmail               = proveContact("email")
	sqlProvePhone               = proveContact("phone")
)

// signInSubject selects, for tenant $1, actor type $2 and contact $3 in
// column contact (email or phone): the auth identity of the account that
// proved it, and the provider identity of provider $4 and entity $3 whose
// identity is linked to the one account holding it unverified, when no
// account proved it (NULL unless exactly one qualifies).
func signInSubject(contact string) string {
	return `
SELECT (` + authIdentityOfActor(verifiedAccount(contact)) + `), (
	SELECT CASE WHEN COUNT(*) = 1 THEN MIN(p.id) END
	FROM provider_identities p
	JOIN auth_identity_actors l ON l.auth_identity_id = p.auth_identity_id AND l.actor_type = $2
	JOIN actors c ON c.id = l.actor_id
	WHERE p.tenant = $1 AND p.provider = $4 AND p.entity_id = $3
	AND c.tenant = $1 AND c.type = $2 AND c.` + contact + ` = $3 AND c.has_account AND NOT c.` + contact + `_verified
	AND NOT EXISTS (` + provedBy(contact) + `))`
}

// provedBy selects the accounts of tenant $1 and type $2 that proved
// contact (column email or phone) $3. Its predicate implies the partial unique
// index's on verified contacts, which therefore serves it.
func provedBy(contact string) string {
	return `SELECT 1 FROM actors o WHERE o.tenant = $1 AND o.type = $2 AND o.` + contact + ` = $3 AND o.` + contact + ` <> '' AND o.has_account AND o.` + contact + `_verified`
}

// proveContact marks contact (column email or phone) $3 of actor $4 of
// tenant $1 and type $2 verified at $5, if it is unverified and no other
// account proved it.
func proveContact(contact string) string {
	return `
UPDATE actors SET ` + contact + `_verified = TRUE, updated_at = $5
WHERE tenant = $1 AND type = $2 AND id = $4 AND ` + contact + ` = $3 AND ` + contact + ` <> ''
AND has_account AND NOT ` + contact + `_verified AND NOT EXISTS (` + provedBy(contact) + `)`
}

// authIdentityOfActor selects the oldest auth identity of tenant $1 linked
// to the actor of type $2 whose id is the SQL expression actorID.
func authIdentityOfActor(actorID string) string {
	return `
SELECT a.id FROM auth_identity_actors l
JOIN auth_identities a ON a.id = l.auth_identity_id
WHERE l.tenant = $1 AND l.actor_type = $2 AND l.actor_id = ` + actorID + `
ORDER BY a.created_at, a.id
LIMIT 1`
}

// verifiedAccount is a scalar subquery: the id of the account of tenant $1
// and type $2 whose verified contact (column email or phone) is $3.
func verifiedAccount(contact string) string {
	return `(
	SELECT c.id FROM actors c
	WHERE c.tenant = $1 AND c.type = $2 AND c.` + contact + ` = $3 AND c.has_account AND c.` + contact + `_verified AND c.` + contact + ` <> '')`
}
