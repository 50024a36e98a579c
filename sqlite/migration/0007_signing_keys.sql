-- 0007_signing_keys: the asymmetric keys that sign session tokens
-- (otpd.SigningKey), published as a JWKS.
--
-- Keys form one sequence: seq is unique, so of several instances that make
-- the first key (or rotate) at once, one conditional insert wins. The
-- public key is PKIX DER, stored plain; the private key is PKCS #8 DER
-- sealed under the server secret with the key id as associated data.
-- Times are unix milliseconds (UTC): a key signs from active_at on, until
-- the next key's active_at. Keys are never changed once stored.
CREATE TABLE signing_keys (
    id          TEXT    NOT NULL PRIMARY KEY, -- the JWS kid, "sk_..."
    seq         INTEGER  NOT NULL UNIQUE,
    alg         TEXT    NOT NULL, -- EdDSA or RS256
    public_key  BLOB    NOT NULL,
    private_key BLOB    NOT NULL,
    created_at  INTEGER  NOT NULL,
    active_at   INTEGER  NOT NULL
);
