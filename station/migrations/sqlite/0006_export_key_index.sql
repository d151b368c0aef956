-- Exports read each provisioned device's current key in device-id order. Keys are stored in the
-- order they were made, so reaching them through their key id is one random page read per
-- device; through this index, which holds what an export reads of a key in device-id order, a
-- million keys are one sequential walk beside the devices. It also serves every lookup of a
-- device's keys, which device_keys_by_device did.
CREATE INDEX device_keys_for_export ON device_keys (device_id, key_id, state, created_at, confirmed_at, sealed_key);
DROP INDEX device_keys_by_device;
-- The same for the rotation state an export checks of every device.
CREATE INDEX rotations_for_export ON rotations (device_id, state);
