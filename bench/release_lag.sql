-- Scenario 4: release one unit of a random resource PREFIX-1 .. PREFIX-NRES
-- (-D prefix=... -D nres=...) and note the releasing transaction's id, whose
-- commit timestamp starts the lag
\set r random(1, :nres)
\set e random(1, 999999999999)
BEGIN;
SELECT waitlist_release(:prefix || '-' || :r, 1, 'lag' || :client_id || '-' || :e);
INSERT INTO bench.lag_release (resource_id, event_id, xid)
VALUES (:prefix || '-' || :r, 'lag' || :client_id || '-' || :e, pg_current_xact_id());
END;
