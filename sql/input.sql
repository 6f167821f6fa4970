--
-- input: bad arguments are refused with a SQLSTATE before anything changes
--
\set VERBOSITY sqlstate
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- a fresh install, so that this file does not depend on the files before it
DROP EXTENSION IF EXISTS waitlist CASCADE;
CREATE EXTENSION waitlist;
RESET client_min_messages;

SELECT waitlist_create_resource('input-1', '1 minute', 10);
SELECT waitlist_join('input-1', 'ida') AS ida \gset

-- identifiers: NULL (22004), empty (22023), longer than 200 bytes (22001)
SELECT waitlist_create_resource(NULL, '1 minute');
SELECT waitlist_create_resource('', '1 minute');
SELECT waitlist_create_resource(repeat('r', 201), '1 minute');
SELECT waitlist_join(NULL, 'ida');
SELECT waitlist_join('input-1', NULL);
SELECT waitlist_join('input-1', '');
SELECT waitlist_join('input-1', repeat('u', 201));
SELECT waitlist_join('input-1', repeat('é', 101));
SELECT waitlist_release('input-1', 1, NULL);
SELECT waitlist_release('input-1', 1, '');
SELECT waitlist_release('input-1', 1, repeat('e', 201));
SELECT waitlist_promote(NULL);
-- exactly 200 bytes is fine
SELECT waitlist_create_resource(repeat('r', 200), '1 minute');
SELECT waitlist_join(repeat('r', 200), repeat('u', 200)) IS NOT NULL AS joined;
SELECT waitlist_join(repeat('r', 200), repeat('é', 100)) IS NOT NULL AS joined;

-- other arguments
SELECT waitlist_join('input-1', 'ida', NULL);
SELECT waitlist_leave(NULL);
SELECT waitlist_status(NULL);
SELECT waitlist_release('input-1', NULL, 'ev-1');
SELECT waitlist_release('input-1', 0, 'ev-1');
SELECT waitlist_release('input-1', -3, 'ev-1');
SELECT waitlist_release('input-1', 1000001, 'ev-1');
SELECT waitlist_promote('input-1', -1);

-- resource settings
SELECT waitlist_create_resource('input-2', NULL);
SELECT waitlist_create_resource('input-2', '0 seconds');
SELECT waitlist_create_resource('input-2', '-1 minute');
SELECT waitlist_create_resource('input-2', '1 minute', 0);
SELECT waitlist_create_resource('input-2', '1 minute', -5);
SELECT waitlist_create_resource('input-2', '1 minute', booking_function => 'lower(text)'::regprocedure);
SELECT waitlist_alter_resource('input-1', offer_ttl => '0 seconds');
SELECT waitlist_alter_resource('input-1', max_waiting => 0);
SELECT waitlist_alter_resource('input-1', max_waiting => 5, clear_max_waiting => true);
SELECT waitlist_alter_resource('input-1', clear_max_waiting => NULL);
SELECT waitlist_alter_resource('input-1', clear_booking_function => NULL);
SELECT waitlist_alter_resource('input-1', booking_function => 'lower(text)'::regprocedure);
SELECT waitlist_alter_resource('input-none', offer_ttl => '1 minute');
-- bounded when set: offer_ttl and wave_interval at most 1 year, max_waiting
-- at most 1000000000, wave_size at most 1000000
SELECT waitlist_create_resource('input-2', '100000000 years');
SELECT waitlist_create_resource('input-2', '1 minute', 1000000001);
SELECT waitlist_create_resource('input-2', wave_size => 1000001, wave_interval => '1 minute');
SELECT waitlist_create_resource('input-2', wave_size => 1, wave_interval => '100000000 years');
SELECT waitlist_alter_resource('input-1', offer_ttl => '13 months');
SELECT waitlist_alter_resource('input-1', max_waiting => 9223372036854775807);
SELECT waitlist_alter_resource('input-1', wave_size => 1, wave_interval => '1 year 1 second');

-- none of that changed anything
SELECT left(resource_id, 8) AS resource_id, octet_length(resource_id) AS id_bytes,
       offer_ttl, max_waiting, booking_function, free_units, units_released
FROM waitlist.resource ORDER BY id_bytes, resource_id;
SELECT count(*) AS entries FROM waitlist.entry;
SELECT count(*) AS events FROM waitlist.capacity_event;
SELECT state, "position" FROM waitlist_status(:ida);
