-- The audit log: each station's entries in one hash chain, each entry signed by the station's
-- signing key (formats/src/audit.rs says what is hashed and signed). Rows are only ever
-- inserted; `keyfill audit verify` tells whether one was edited, deleted, moved or added since.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    station_id TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    operator   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    device_id  TEXT,
    detail     TEXT NOT NULL,
    -- Hex: the previous entry's hash, this entry's hash, the signing key and the signature.
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    signer     TEXT NOT NULL,
    signature  TEXT NOT NULL
);
CREATE UNIQUE INDEX audit_log_by_position ON audit_log (station_id, seq);

-- Each chain's last entry. Its row is locked by every append, so that the appends of a station
-- (several processes, several sessions) take their turns.
CREATE TABLE audit_heads (
    station_id TEXT PRIMARY KEY NOT NULL,
    seq        BIGINT NOT NULL,
    hash       TEXT NOT NULL,
    signer     TEXT NOT NULL
);

-- The signing keys' certificates from the factory root (hex), for a verifier that has only the
-- factory root's public key.
CREATE TABLE audit_signers (
    public_key  TEXT PRIMARY KEY NOT NULL,
    station_id  TEXT NOT NULL,
    certificate TEXT NOT NULL
);

-- Signed checkpoints, written every so many entries: a chain found shorter than one was cut.
CREATE TABLE audit_checkpoints (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    station_id TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    hash       TEXT NOT NULL,
    at         BIGINT NOT NULL,
    signer     TEXT NOT NULL,
    signature  TEXT NOT NULL
);
CREATE INDEX audit_checkpoints_by_station ON audit_checkpoints (station_id, seq);
