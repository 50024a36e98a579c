-- 0002_tokens_valid_after: session token revocation per auth identity, the
-- PostgreSQL twin of sqlite/migration/0002_tokens_valid_after.sql.
--
-- tokens_valid_after is otpd.AuthIdentity.TokensValidAfter: every session
-- token of the identity issued before it is revoked. BIGINT unix
-- milliseconds (UTC), 0 meaning none revoked, so existing identities keep
-- their tokens. It only moves forward, through a single conditional UPDATE
-- (GREATEST of the stored value and the new one): a revocation never undoes
-- a later one. A constant default does not rewrite the table.
ALTER TABLE auth_identities
    ADD COLUMN tokens_valid_after BIGINT NOT NULL DEFAULT 0;
