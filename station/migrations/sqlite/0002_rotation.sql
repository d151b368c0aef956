-- Confirmed key rotation: keys may be 'next' (sent, not yet confirmed) or 'retired' (replaced
-- after the device confirmed its successor); one rotation record per device.
CREATE TABLE device_keys_v2 (
    key_id       TEXT PRIMARY KEY NOT NULL,
    device_id    TEXT NOT NULL REFERENCES devices (id),
    kind         TEXT NOT NULL,
    sealed_key   BLOB NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'active', 'failed', 'next', 'retired')),
    station_id   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    confirmed_at BIGINT
);
INSERT INTO device_keys_v2 SELECT key_id, device_id, kind, sealed_key, state, station_id, created_at, confirmed_at FROM device_keys;
DROP TABLE device_keys;
ALTER TABLE device_keys_v2 RENAME TO device_keys;
CREATE INDEX device_keys_by_device ON device_keys (device_id);

CREATE TABLE rotations (
    device_id          TEXT PRIMARY KEY NOT NULL REFERENCES devices (id),
    old_key_id         TEXT NOT NULL,
    new_key_id         TEXT NOT NULL,
    state              TEXT NOT NULL CHECK (state IN ('rotation_pending', 'active', 'rotation_failed')),
    attempts           BIGINT NOT NULL,
    command_timestamps TEXT NOT NULL,
    started_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    failure            TEXT
);
