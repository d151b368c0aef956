-- Confirmed key rotation: keys may be 'next' (sent, not yet confirmed) or 'retired' (replaced
-- after the device confirmed its successor); one rotation record per device.
ALTER TABLE device_keys DROP CONSTRAINT device_keys_state_check;
ALTER TABLE device_keys ADD CONSTRAINT device_keys_state_check
    CHECK (state IN ('pending', 'active', 'failed', 'next', 'retired'));

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
