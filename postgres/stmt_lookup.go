package postgres

// Statements of challenge lookups by id and of idempotency records.
const (
	sqlFindChallenge = `SELECT ` + challengeColumns + ` FROM challenges WHERE tenant = $1 AND id = $2`

	// sqlAttemptChallengeID: the liveness predicate at $4.
	sqlAttemptChallengeID = `
UPDATE challenges SET attempts = attempts + 1
WHERE tenant = $1 AND actor_type = $2 AND id = $3
	AND consumed_at IS NULL AND retired_at IS NULL AND expires_at > $4 AND attempts < max_attempts
RETURNING ` + challengeColumns

	sqlCancelChallenge = `
UPDATE challenges SET retired_at = $3
WHERE tenant = $1 AND id = $2
	AND consumed_at IS NULL AND retired_at IS NULL AND expires_at > $3 AND attempts < max_attempts`

	// sqlSaveResponse replaces only an expired record ($8): a live one
	// makes the upsert change no row, which is ECONFLICT. A concurrent
	// insert of the same key waits for the first to commit, then takes the
	// conflict path and sees it.
	sqlSaveResponse = `
INSERT INTO idempotency_keys (tenant, scope, key, request_hash, status, body, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (tenant, scope, key) DO UPDATE
SET request_hash = excluded.request_hash, status = excluded.status, body = excluded.body, created_at = excluded.created_at
WHERE idempotency_keys.created_at <= $8`

	sqlFindResponse = `
SELECT request_hash, status, body, created_at FROM idempotency_keys
WHERE tenant = $1 AND scope = $2 AND key = $3 AND created_at > $4`

	sqlDeleteResponsesBefore = `DELETE FROM idempotency_keys WHERE created_at < $1`
)
