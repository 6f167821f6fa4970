-- Scenario 9: release one unit of a random resource PREFIX-1 .. PREFIX-NRES
\set r random(1, :nres)
\set e random(1, 999999999999)
SELECT waitlist_release(:prefix || '-' || :r, 1, 'm' || :client_id || '-' || :e);
