-- Work orders from the MES: which devices a run is to key. An order is open until closed (by
-- force, with a reason, while devices are still outstanding); its items are the devices it
-- expects, with what their labels must say. A device provisioned under an order records it.
CREATE TABLE work_orders (
    id           TEXT PRIMARY KEY NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('open', 'closed')),
    source       TEXT NOT NULL,
    digest       TEXT NOT NULL,
    imported_at  BIGINT NOT NULL,
    imported_by  TEXT NOT NULL,
    operator     TEXT NOT NULL,
    closed_at    BIGINT,
    closed_by    TEXT,
    close_reason TEXT
);

CREATE TABLE work_order_items (
    order_id      TEXT NOT NULL REFERENCES work_orders (id),
    position      BIGINT NOT NULL,
    device_id     TEXT NOT NULL,
    device_name   TEXT NOT NULL,
    model         TEXT,
    serial_number TEXT NOT NULL,
    link          TEXT,
    batch         TEXT,
    PRIMARY KEY (order_id, device_id)
);
CREATE INDEX work_order_items_by_device ON work_order_items (device_id);

ALTER TABLE devices ADD COLUMN order_id TEXT;
CREATE INDEX devices_by_order ON devices (order_id);
