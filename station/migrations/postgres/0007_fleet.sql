-- Several stations on one database.
--
-- Every key's check value (HMAC-SHA-256 of a fixed label under the key, 16 bytes, hex), unique
-- across the inventory: a key generated, rotated or imported twice is refused. Keys recorded
-- before this migration get theirs when a station first unlocks (only the master key opens them).
ALTER TABLE device_keys ADD COLUMN check_value TEXT;
CREATE UNIQUE INDEX device_keys_by_check_value ON device_keys (check_value);

-- Facts about the inventory itself; 'master_key_check' names the master key its secrets are
-- sealed under, so that a station holding another master key is refused at start.
CREATE TABLE inventory_meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- Every station that has used this inventory: its identity and certificate, for the records
-- that name it.
CREATE TABLE stations (
    station_id  TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    certificate BYTEA NOT NULL,
    first_seen  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL
);

-- A device is worked on by one station process at a time: the holder of its lease, until the
-- lease expires (times in milliseconds of the database's own clock). No foreign key: a lease
-- is taken before the device's first record exists.
CREATE TABLE device_leases (
    device_id   TEXT PRIMARY KEY NOT NULL,
    station_id  TEXT NOT NULL,
    holder      TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    acquired_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
