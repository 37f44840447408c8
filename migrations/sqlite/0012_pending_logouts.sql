-- Back-channel deliveries still to send, by when they are due (version 12, SQLite). Never edited
-- once applied.
--
-- The delivery job asks for the due deliveries not delivered and not given up, oldest due
-- first. Along an index of every delivery's next_attempt_at it walked past the finished ones
-- (kept a day, their next_attempt_at in the past, so first in the order) on each run, every
-- 5 s and after every sign-out: its cost grew with the day's sign-outs. The partial index holds
-- the pending ones only; the job's query names the same condition, so it is used.
CREATE INDEX logout_deliveries_pending ON logout_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
DROP INDEX logout_deliveries_due;
