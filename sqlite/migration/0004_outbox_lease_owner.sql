-- 0004_outbox_lease_owner: who holds an outbox message's lease.
--
-- lease_owner is the random id of the dispatcher that claimed the message
-- last ('' once released or rescheduled). A dispatcher keeps its leases short
-- and renews those it still owns while their deliveries run (one conditional
-- UPDATE ... WHERE lease_owner = ?), so the messages of a process that died
-- are due again within one short lease; reschedules and releases apply only
-- to the owner's own leases.
ALTER TABLE outbox ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
