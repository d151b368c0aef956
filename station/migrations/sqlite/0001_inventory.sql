-- Device inventory: one row per device, its sealed keys, and the station's event log.
CREATE TABLE devices (
    id                  TEXT PRIMARY KEY NOT NULL,
    name                TEXT NOT NULL UNIQUE,
    serial_number       TEXT NOT NULL,
    credential_mode     TEXT NOT NULL CHECK (credential_mode IN ('identity', 'secret')),
    identity_public_key BLOB,
    sealed_setup_secret BLOB,
    model               TEXT,
    state               TEXT NOT NULL CHECK (state IN ('pending', 'provisioned', 'failed')),
    transport           TEXT,
    port                TEXT,
    current_key_id      TEXT,
    failure             TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    provisioned_at      BIGINT
);

CREATE TABLE device_keys (
    key_id       TEXT PRIMARY KEY NOT NULL,
    device_id    TEXT NOT NULL REFERENCES devices (id),
    kind         TEXT NOT NULL,
    sealed_key   BLOB NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'active', 'failed')),
    station_id   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    confirmed_at BIGINT
);
CREATE INDEX device_keys_by_device ON device_keys (device_id);

CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         BIGINT NOT NULL,
    device_id  TEXT,
    station_id TEXT NOT NULL,
    operator   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    detail     TEXT NOT NULL
);
CREATE INDEX events_by_device ON events (device_id);
