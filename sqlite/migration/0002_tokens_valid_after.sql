-- 0002_tokens_valid_after: session token revocation per auth identity.
--
-- tokens_valid_after is otpd.AuthIdentity.TokensValidAfter: every session
-- token of the identity issued before it is revoked. INTEGER unix
-- milliseconds (UTC), 0 meaning none revoked, so existing identities keep
-- their tokens. It only moves forward, through a single conditional UPDATE
-- (MAX of the stored value and the new one): a revocation never undoes a
-- later one.
ALTER TABLE auth_identities
    ADD COLUMN tokens_valid_after INTEGER NOT NULL DEFAULT 0;
