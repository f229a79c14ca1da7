-- One pending timer per open deadline instead of its whole ladder (some 20 rows per instruction):
-- the steps after the pending one wait in the deadline row, [[step, notify, fire_at], ...], frozen
-- when the deadline was set; firing (or folding) a step writes the next one in the same transaction.
-- Deadlines written before this migration have their whole ladder as timers and an empty list here.
ALTER TABLE deadlines ADD COLUMN ladder TEXT NOT NULL DEFAULT '[]';
