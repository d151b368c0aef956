-- Bearer tokens of the local automation API (src/api/token.rs). Only a SHA-256 of each token's
-- secret is kept: the token itself is shown once, when it is created. Revoked tokens keep their
-- row so that their names stay theirs in the event log.
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL UNIQUE,
    scopes       TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    revoked_at   BIGINT,
    last_used_at BIGINT
);
