-- An export with nothing to send was called 'unchanged', which claims what C2 cannot show (C2
-- gives no way to read a key back, so a change made in C2 is invisible); it is now
-- 'already_exported': this station delivered this same key to this C2 before and C2 still lists
-- the client. SQLite cannot alter a CHECK constraint, so the table is rebuilt with the new word.
CREATE TABLE c2_exports_v2 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL,
    target      TEXT NOT NULL,
    device_id   TEXT NOT NULL REFERENCES devices (id),
    key_id      TEXT,
    outcome     TEXT NOT NULL CHECK (outcome IN ('created', 'replaced', 'already_exported', 'failed')),
    reason      TEXT,
    attempts    BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    operator    TEXT NOT NULL
);
INSERT INTO c2_exports_v2 (id, run_id, target, device_id, key_id, outcome, reason, attempts, at, operator)
SELECT id, run_id, target, device_id, key_id,
       CASE outcome WHEN 'unchanged' THEN 'already_exported' ELSE outcome END,
       reason, attempts, at, operator
FROM c2_exports;
DROP TABLE c2_exports;
ALTER TABLE c2_exports_v2 RENAME TO c2_exports;
CREATE INDEX c2_exports_by_device ON c2_exports (device_id);
CREATE INDEX c2_exports_by_run ON c2_exports (run_id);
