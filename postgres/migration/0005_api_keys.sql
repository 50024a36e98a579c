-- 0005_api_keys: the keys of the server API (/v1), the PostgreSQL twin of
-- sqlite/migration/0005_api_keys.sql.
--
-- api_keys holds otpd.APIKey: only the SHA-256 of a key's secret is stored
-- (the secret has 256 random bits, so a fast hash is enough), and keys are
-- found by it. permissions is TEXT, the permission names joined by commas.
-- Times are BIGINT unix milliseconds (UTC). Keys are never deleted:
-- revoked_at marks a revoked key, and last_used_at only moves forward.
CREATE TABLE api_keys (
    id           TEXT   NOT NULL PRIMARY KEY, -- "key_..."
    tenant       TEXT   NOT NULL,
    name         TEXT   NOT NULL,
    permissions  TEXT   NOT NULL DEFAULT '',
    key_hash     BYTEA  NOT NULL, -- SHA-256 of the secret
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);

-- The lookup of every authenticated request; unique, so two keys never
-- share a hash.
CREATE UNIQUE INDEX api_keys_hash_idx ON api_keys (key_hash);

-- otpd keys list: oldest first.
CREATE INDEX api_keys_created_idx ON api_keys (created_at, id);
