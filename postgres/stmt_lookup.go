package postgres

// Statements of challenge lookups by id and of idempotency records.
//
// The lookups by id compare tenant and actor type as expressions, each
// column concatenated with the empty string, which no index matches, so
// that the planner can only find the row by its primary key. Compared as
// columns, a generic plan made on a young table's statistics chose
// challenges_key_idx on (tenant, actor_type) and filtered on id: every
// server API verification without a subject shares that prefix, so each
// check scanned all of them (a load run fell from 410 to 280 checks/s as
// the table grew). plan_test.go checks the plans.
const (
	sqlFindChallenge = `SELECT ` + challengeColumns + ` FROM challenges WHERE id = $2 AND tenant || '' = $1`

	// sqlAttemptChallengeID: the liveness predicate at $4.
	sqlAttemptChallengeID = `
UPDATE challenges SET attempts = attempts + 1
WHERE id = $3 AND tenant || '' = $1 AND actor_type || '' = $2
	AND consumed_at IS NULL AND retired_at IS NULL AND expires_at > $4 AND attempts < max_attempts
RETURNING ` + challengeColumns

	sqlCancelChallenge = `
UPDATE challenges SET retired_at = $3
WHERE id = $2 AND tenant || '' = $1
	AND consumed_at IS NULL AND retired_at IS NULL AND expires_at > $3 AND attempts < max_attempts`

	// sqlRetireActorChallenges: a prefix of challenges_key_idx.
	sqlRetireActorChallenges = `
UPDATE challenges SET retired_at = $3
WHERE tenant = $1 AND actor_type = $2
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
