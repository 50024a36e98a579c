-- 0001_init: otpd's initial schema, the PostgreSQL twin of
-- sqlite/migration/0001_init.sql: the same tables, columns, constraints and
-- indexes. Times are BIGINT unix milliseconds (UTC), as in SQLite; JSON
-- documents are JSONB objects ('{}' when empty); hashes and sealed payloads
-- are BYTEA.

-- challenges holds issued codes (only their HMAC). Security state (attempts,
-- consumed_at, retired_at) changes only through single conditional UPDATEs.
CREATE TABLE challenges (
    id           TEXT    NOT NULL PRIMARY KEY, -- ULID, time-ordered
    tenant       TEXT    NOT NULL,
    actor_type   TEXT    NOT NULL,
    purpose      TEXT    NOT NULL,
    destination  TEXT    NOT NULL,
    channel      TEXT    NOT NULL DEFAULT '', -- '' = never delivered
    subject_id   TEXT    NOT NULL DEFAULT '',
    code_hash    BYTEA   NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL,
    consumed_at  BIGINT,
    retired_at   BIGINT
);

-- The live-challenge lookup, retirement and SendStats.Last: one key, newest
-- first. Not partial, so that counting a guess, consuming or retiring a row
-- does not touch the index (HOT updates stay possible).
CREATE INDEX challenges_key_idx
    ON challenges (tenant, actor_type, purpose, destination, created_at);

-- Send statistics per destination (cooldown and budget), across purposes and
-- actor types.
CREATE INDEX challenges_destination_idx
    ON challenges (tenant, destination, created_at);

-- Expiry cleanup.
CREATE INDEX challenges_expires_idx ON challenges (expires_at);

-- auth_identities is Medusa's auth_identity. Its actor links live in
-- auth_identity_actors; app_metadata holds the other keys.
CREATE TABLE auth_identities (
    id           TEXT   NOT NULL PRIMARY KEY,
    tenant       TEXT   NOT NULL,
    app_metadata JSONB  NOT NULL DEFAULT '{}',
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- provider_identities is Medusa's provider_identity.
CREATE TABLE provider_identities (
    id                TEXT   NOT NULL PRIMARY KEY,
    tenant            TEXT   NOT NULL,
    auth_identity_id  TEXT   NOT NULL REFERENCES auth_identities (id) ON DELETE CASCADE,
    provider          TEXT   NOT NULL,
    entity_id         TEXT   NOT NULL,
    user_metadata     JSONB  NOT NULL DEFAULT '{}',
    provider_metadata JSONB  NOT NULL DEFAULT '{}',
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    UNIQUE (tenant, provider, entity_id)
);

CREATE INDEX provider_identities_auth_identity_idx
    ON provider_identities (auth_identity_id, created_at);

-- auth_identity_actors is app_metadata.<actor_type>_id: at most one actor per
-- auth identity and actor type. One actor may be linked from several
-- identities (one per way of signing in).
CREATE TABLE auth_identity_actors (
    auth_identity_id TEXT   NOT NULL REFERENCES auth_identities (id) ON DELETE CASCADE,
    actor_type       TEXT   NOT NULL,
    actor_id         TEXT   NOT NULL,
    tenant           TEXT   NOT NULL,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (auth_identity_id, actor_type)
);

CREATE INDEX auth_identity_actors_actor_idx
    ON auth_identity_actors (tenant, actor_type, actor_id);

-- actors are accounts of one actor type (Medusa customers, users, ...).
CREATE TABLE actors (
    id             TEXT    NOT NULL PRIMARY KEY,
    tenant         TEXT    NOT NULL,
    type           TEXT    NOT NULL,
    email          TEXT    NOT NULL DEFAULT '',
    phone          TEXT    NOT NULL DEFAULT '',
    first_name     TEXT    NOT NULL DEFAULT '',
    last_name      TEXT    NOT NULL DEFAULT '',
    company_name   TEXT    NOT NULL DEFAULT '',
    metadata       JSONB   NOT NULL DEFAULT '{}',
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    phone_verified BOOLEAN NOT NULL DEFAULT FALSE,
    has_account    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL
);

-- One account per verified email and per verified phone within a tenant and
-- actor type; these indexes also serve the sign-in lookup. Unverified
-- contacts and guest actors (has_account false, as in Medusa) reserve
-- nothing: otherwise anyone could claim another person's address.
CREATE UNIQUE INDEX actors_account_email_idx
    ON actors (tenant, type, email) WHERE has_account AND email_verified AND email <> '';
CREATE UNIQUE INDEX actors_account_phone_idx
    ON actors (tenant, type, phone) WHERE has_account AND phone_verified AND phone <> '';

-- outbox holds events queued for durable notifiers, sealed under the server
-- key. A row is deleted once delivered or given up.
CREATE TABLE outbox (
    id              TEXT    NOT NULL PRIMARY KEY,
    notifier        TEXT    NOT NULL,
    payload         BYTEA   NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    created_at      BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL,
    last_error      TEXT    NOT NULL DEFAULT ''
);

CREATE INDEX outbox_next_attempt_idx ON outbox (next_attempt_at, id);
