-- 0008_audit_log: the audit log, one row per authentication event (see
-- otpd.AuditRecord). No row holds a code, a password or a token. Rows are
-- deleted by the janitor once older than the configured retention
-- (audit_log_time_idx). Queries read newest first along one of the
-- indexes, each ending in (created_at, id) for the keyset pages: by
-- identity or address along their own, anything else (tenant, event,
-- outcome, time range) along audit_log_time_idx with a filter. Every index
-- is paid for by every authentication, so there are no more.
CREATE TABLE audit_log (
    id          TEXT    NOT NULL PRIMARY KEY, -- aud_<ULID>
    tenant      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    event       TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    purpose     TEXT    NOT NULL DEFAULT '',
    identity_id TEXT    NOT NULL DEFAULT '',
    address     TEXT    NOT NULL DEFAULT '', -- normalized email or phone
    client_addr TEXT    NOT NULL DEFAULT '',
    user_agent  TEXT    NOT NULL DEFAULT '',
    request_id  TEXT    NOT NULL DEFAULT '',
    api_key_id  TEXT    NOT NULL DEFAULT '',
    detail      TEXT    NOT NULL DEFAULT ''  -- JSON object of short strings
) WITHOUT ROWID; -- clustered by id, which grows with time: one b-tree less

CREATE INDEX audit_log_time_idx ON audit_log (created_at, id);
CREATE INDEX audit_log_identity_idx ON audit_log (identity_id, created_at, id) WHERE identity_id <> '';
CREATE INDEX audit_log_address_idx ON audit_log (address, created_at, id) WHERE address <> '';
