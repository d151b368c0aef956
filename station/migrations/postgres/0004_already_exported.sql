-- An export with nothing to send was called 'unchanged', which claims what C2 cannot show (C2
-- gives no way to read a key back, so a change made in C2 is invisible); it is now
-- 'already_exported': this station delivered this same key to this C2 before and C2 still lists
-- the client.
ALTER TABLE c2_exports DROP CONSTRAINT c2_exports_outcome_check;
UPDATE c2_exports SET outcome = 'already_exported' WHERE outcome = 'unchanged';
ALTER TABLE c2_exports ADD CONSTRAINT c2_exports_outcome_check
    CHECK (outcome IN ('created', 'replaced', 'already_exported', 'failed'));
