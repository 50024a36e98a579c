-- 0006_idempotency_keys: the first answers of requests made with an
-- Idempotency-Key, kept for a day so that a retry gets the same answer and
-- acts no more. body is sealed under the server key (it may carry a code).
CREATE TABLE idempotency_keys (
    tenant       TEXT    NOT NULL,
    scope        TEXT    NOT NULL, -- the API key that made the request
    key          TEXT    NOT NULL,
    request_hash BYTEA   NOT NULL,
    status       BIGINT  NOT NULL,
    body         BYTEA   NOT NULL,
    created_at   BIGINT  NOT NULL,
    PRIMARY KEY (tenant, scope, key)
);

CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
