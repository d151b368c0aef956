-- `keyfill sync`: a field station's records copied to the factory's database. A copied event
-- keeps where it came from (the source inventory's id and its event id), so it is copied once;
-- the source remembers, per target inventory, the last event it copied.
ALTER TABLE events ADD COLUMN origin TEXT;
CREATE UNIQUE INDEX events_by_origin ON events (origin);

CREATE TABLE sync_progress (
    target     TEXT PRIMARY KEY NOT NULL,
    last_event BIGINT NOT NULL,
    synced_at  BIGINT NOT NULL
);
