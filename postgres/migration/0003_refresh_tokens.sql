-- 0003_refresh_tokens: the refresh tokens of sessions, the PostgreSQL twin
-- of sqlite/migration/0003_refresh_tokens.sql.
--
-- refresh_tokens holds otpd.RefreshToken: each session (a family) is a chain
-- of tokens, every refresh spending the newest and minting its child. Only
-- the SHA-256 of a token is stored. Times are BIGINT unix milliseconds
-- (UTC). Security state (rotated_at, revoked_at) changes only through single
-- conditional UPDATEs: a rotation's WHERE is re-checked on the row version
-- that a concurrent rotation committed, so under READ COMMITTED one wins.
CREATE TABLE refresh_tokens (
    id               TEXT   NOT NULL PRIMARY KEY, -- "rt_..."
    tenant           TEXT   NOT NULL,
    family_id        TEXT   NOT NULL, -- the session, "sess_..."
    auth_identity_id TEXT   NOT NULL,
    parent_id        TEXT   NOT NULL DEFAULT '', -- '' = first of its family
    token_hash       BYTEA  NOT NULL UNIQUE, -- SHA-256 of the token
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL, -- the family's absolute end
    rotated_at       BIGINT,
    revoked_at       BIGINT
);

-- Family revocation and the session's liveness.
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (tenant, family_id);

-- Revocation of every session of an auth identity.
CREATE INDEX refresh_tokens_auth_identity_idx ON refresh_tokens (tenant, auth_identity_id);

-- Expiry cleanup.
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);
