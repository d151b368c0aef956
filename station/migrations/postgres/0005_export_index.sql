-- Exports read every provisioned device in id order (offline bundles need that order). This
-- index holds what they read of a device, so a million are read as one sequential range of the
-- index instead of one table lookup each.
CREATE INDEX devices_for_export ON devices (state, id, name, current_key_id, provisioned_at);
