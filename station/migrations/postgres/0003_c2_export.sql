-- Export to C2. c2_registrations is what this station knows a C2 server holds for a device:
-- the key it delivered, and a key whose POST may or may not have reached C2 (an interrupted
-- export, retried on the next run). c2_exports keeps one row per device and export run.
CREATE TABLE c2_registrations (
    target           TEXT NOT NULL,
    device_id        TEXT NOT NULL REFERENCES devices (id),
    delivered_key_id TEXT,
    delivered_at     BIGINT,
    sending_key_id   TEXT,
    sending_as       TEXT CHECK (sending_as IN ('created', 'replaced')),
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (target, device_id)
);

CREATE TABLE c2_exports (
    id          BIGSERIAL PRIMARY KEY,
    run_id      TEXT NOT NULL,
    target      TEXT NOT NULL,
    device_id   TEXT NOT NULL REFERENCES devices (id),
    key_id      TEXT,
    outcome     TEXT NOT NULL CHECK (outcome IN ('created', 'replaced', 'unchanged', 'failed')),
    reason      TEXT,
    attempts    BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    operator    TEXT NOT NULL
);
CREATE INDEX c2_exports_by_device ON c2_exports (device_id);
CREATE INDEX c2_exports_by_run ON c2_exports (run_id);
