-- pgTAP: every bad input raises the documented SQLSTATE and changes nothing.
--
--   22004  a NULL where a value is required
--   22023  an invalid value (empty id, quantity out of 1..1000000,
--          non-positive offer_ttl, max_waiting <= 0, negative max_offers,
--          setting and clearing one setting at once, notification channels
--          that are not a non-empty subset of email, sms, push, webhook,
--          wave_size and wave_interval not positive or not given together;
--          offer_ttl or wave_interval over 1 year, max_waiting over
--          1000000000, wave_size over 1000000)
--   23514  a resource row written by hand with a setting out of bounds
--   22001  an id over 200 bytes
--   42704  unknown resource, entry or offer
--   42710  duplicate resource
--   42883  booking function that does not exist
--   42P13  booking function with the wrong signature
--   WL001  full waitlist
--   WL002  offer past its deadline
--   WL003  offer no longer open
--   WL005  stale outbox lease token (in the plain-statement section; the
--          outbox functions' bad input is in outbox.sql)
--
-- After each rejected call a digest of every waitlist.* table must be what it
-- was before.  Calls that succeed without doing anything (a double tap, a
-- repeated release event, a repeated leave or decline or accept) are held to
-- the same standard.  The last section raises errors from plain statements
-- under a savepoint, outside any PL/pgSQL exception block, and checks that
-- the session survives them.
--
-- Run with: pg_prove -d <db> test/pgtap/*.sql   (pgtap installed in <db>)
-- Leaves nothing behind: everything happens in one rolled back transaction.

\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off

BEGIN;
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION waitlist;
\ir helpers.psql
-- the releasing transaction promotes (not a promotion worker), so that
-- offers can be checked right after each call
SET LOCAL waitlist.promotion_mode = inline;

-- helpers for this file only (the shared ones, in the same schema wl_test,
-- come from helpers.psql); rolled back with everything else

-- booking functions of the other wrong shapes (helpers.psql has two more),
-- and one right one
CREATE FUNCTION wl_test.booking_ok(text, text, bigint, text) RETURNS text
LANGUAGE sql AS $$ SELECT 'ref-' || $3 $$;
CREATE FUNCTION wl_test.booking_three_args(text, text, bigint) RETURNS text
LANGUAGE sql AS $$ SELECT 'ref' $$;
CREATE FUNCTION wl_test.booking_setof(text, text, bigint, text) RETURNS SETOF text
LANGUAGE sql AS $$ SELECT 'ref' $$;
CREATE PROCEDURE wl_test.booking_procedure(text, text, bigint, text)
LANGUAGE sql AS $$ SELECT 1 $$;

-- A fixture with rows in every table, so the digest has something to watch:
-- resource "bad" with two offered fans, two waiting ones and one who left.
DO $$
BEGIN
    PERFORM waitlist_create_resource('bad', interval '10 minutes');
    PERFORM waitlist_join('bad', 'fan-' || i) FROM generate_series(1, 5) i;
    PERFORM waitlist_release('bad', 2, 'fixture-event-1');
    PERFORM waitlist_leave((SELECT entry_id FROM waitlist.entry WHERE resource_id = 'bad' AND user_id = 'fan-5'));
END
$$;

SELECT plan(362);

SELECT is(wl_test.digest() ~ '(^|\n)entry n=5 ' AND wl_test.digest() ~ '(^|\n)offer n=2 ' AND wl_test.digest() ~ '(^|\n)capacity_event n=1 ',
    true, 'the fixture has entries, offers and a capacity event');

------------------------------------------------------------------------------
-- NULL for every argument that must not be NULL: 22004
------------------------------------------------------------------------------

SELECT wl_test.rejects($$SELECT waitlist_create_resource(NULL::text)$$, '22004',
    'waitlist_create_resource with NULL resource_id');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-null', NULL::interval)$$, '22004',
    'waitlist_create_resource with NULL offer_ttl');

SELECT wl_test.rejects($$SELECT waitlist_alter_resource(NULL::text)$$, '22004',
    'waitlist_alter_resource with NULL resource_id');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('bad', clear_max_waiting => NULL)$$, '22004',
    'waitlist_alter_resource with NULL clear_max_waiting');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('bad', clear_booking_function => NULL)$$, '22004',
    'waitlist_alter_resource with NULL clear_booking_function');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('bad', clear_waves => NULL)$$, '22004',
    'waitlist_alter_resource with NULL clear_waves');

SELECT wl_test.rejects($$SELECT waitlist_join(NULL, 'fan-x')$$, '22004',
    'waitlist_join with NULL resource_id');
SELECT wl_test.rejects($$SELECT waitlist_join('bad', NULL)$$, '22004',
    'waitlist_join with NULL user_id');
SELECT wl_test.rejects($$SELECT waitlist_join('bad', 'fan-x', NULL)$$, '22004',
    'waitlist_join with NULL priority');

SELECT wl_test.rejects($$SELECT waitlist_leave(NULL)$$, '22004',
    'waitlist_leave with NULL entry_id');
SELECT wl_test.rejects($$SELECT * FROM waitlist_status(NULL)$$, '22004',
    'waitlist_status with NULL entry_id');

SELECT wl_test.rejects($$SELECT waitlist_release(NULL, 1, 'e-null')$$, '22004',
    'waitlist_release with NULL resource_id');
SELECT wl_test.rejects($$SELECT waitlist_release('bad', NULL, 'e-null')$$, '22004',
    'waitlist_release with NULL quantity');
SELECT wl_test.rejects($$SELECT waitlist_release('bad', 1, NULL)$$, '22004',
    'waitlist_release with NULL event_id');

SELECT wl_test.rejects($$SELECT waitlist_promote(NULL)$$, '22004',
    'waitlist_promote with NULL resource_id');

-- where NULL means "none" or "keep" it is not an error
SELECT wl_test.no_change($$SELECT waitlist_promote('bad', NULL)$$, '0',
    'waitlist_promote with NULL max_offers and no free units');
SELECT lives_ok($$SELECT waitlist_alter_resource('bad', NULL, NULL, false, NULL, false)$$,
    'waitlist_alter_resource with every setting NULL (keep) works');
SELECT lives_ok($$SELECT waitlist_alter_resource('bad', NULL, NULL, false, NULL, false, NULL, NULL, NULL, false)$$,
    'waitlist_alter_resource with every setting NULL (keep), channels and waves too, works');
SELECT row_eq($$SELECT offer_ttl, max_waiting, booking_function, free_units, channels, wave_size, wave_interval
                  FROM waitlist.resource WHERE resource_id = 'bad'$$,
    ROW(interval '10 minutes', NULL::bigint, NULL::regprocedure, 0::bigint, ARRAY['webhook'], NULL::integer, NULL::interval),
    '... and keeps every setting');
SELECT lives_ok($$SELECT waitlist_create_resource('bad-nulls-ok', interval '1 minute', NULL, NULL, NULL, NULL, NULL)$$,
    'waitlist_create_resource with NULL max_waiting, booking_function, channels and waves works');
SELECT row_eq($$SELECT max_waiting, booking_function, channels, wave_size, wave_interval
                  FROM waitlist.resource WHERE resource_id = 'bad-nulls-ok'$$,
    ROW(NULL::bigint, NULL::regprocedure, ARRAY['webhook'], NULL::integer, NULL::interval),
    '... meaning no cap, no booking function, the webhook channel and no waves');

------------------------------------------------------------------------------
-- Unknown resource or entry: 42704
------------------------------------------------------------------------------

SELECT wl_test.rejects($$SELECT waitlist_join('no-such-resource', 'fan-x')$$, '42704',
    'waitlist_join to an unknown resource');
SELECT wl_test.rejects($$SELECT waitlist_release('no-such-resource', 1, 'e-unknown')$$, '42704',
    'waitlist_release for an unknown resource');
SELECT wl_test.rejects($$SELECT waitlist_promote('no-such-resource')$$, '42704',
    'waitlist_promote of an unknown resource');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('no-such-resource', interval '1 minute')$$, '42704',
    'waitlist_alter_resource of an unknown resource');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('no-such-resource')$$, '42704',
    'waitlist_alter_resource of an unknown resource, changing nothing');
SELECT wl_test.rejects($$SELECT waitlist_join('BAD', 'fan-x')$$, '42704',
    'waitlist_join with a resource_id differing only in case');

SELECT wl_test.rejects(
    format('SELECT waitlist_leave(%s)', (SELECT coalesce(max(entry_id), 0) + 1000 FROM waitlist.entry)), '42704',
    'waitlist_leave of an unknown entry');
SELECT wl_test.rejects($$SELECT waitlist_leave(-1)$$, '42704',
    'waitlist_leave of entry -1');
SELECT wl_test.rejects(
    format('SELECT * FROM waitlist_status(%s)', (SELECT coalesce(max(entry_id), 0) + 1000 FROM waitlist.entry)), '42704',
    'waitlist_status of an unknown entry');
SELECT wl_test.rejects($$SELECT * FROM waitlist_status(0)$$, '42704',
    'waitlist_status of entry 0');

------------------------------------------------------------------------------
-- Release quantity out of 1..1000000: 22023
------------------------------------------------------------------------------

SELECT wl_test.rejects($$SELECT waitlist_release('bad', 0, 'e-q0')$$, '22023',
    'waitlist_release of quantity 0');
SELECT wl_test.rejects($$SELECT waitlist_release('bad', -1, 'e-qneg')$$, '22023',
    'waitlist_release of quantity -1');
SELECT wl_test.rejects($$SELECT waitlist_release('bad', 1000001, 'e-qbig')$$, '22023',
    'waitlist_release of quantity 1000001');
SELECT wl_test.rejects($$SELECT waitlist_release('bad', 2147483647, 'e-qmax')$$, '22023',
    'waitlist_release of quantity 2147483647');
SELECT wl_test.rejects($$SELECT waitlist_release('no-such-resource', 0, 'e-q0')$$, '22023',
    'a bad quantity is reported before an unknown resource');

------------------------------------------------------------------------------
-- Empty ids: 22023; ids over 200 bytes: 22001
------------------------------------------------------------------------------

SELECT wl_test.rejects($$SELECT waitlist_create_resource('')$$, '22023',
    'waitlist_create_resource with an empty resource_id');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('')$$, '22023',
    'waitlist_alter_resource with an empty resource_id');
SELECT wl_test.rejects($$SELECT waitlist_join('', 'fan-x')$$, '22023',
    'waitlist_join with an empty resource_id');
SELECT wl_test.rejects($$SELECT waitlist_join('bad', '')$$, '22023',
    'waitlist_join with an empty user_id');
SELECT wl_test.rejects($$SELECT waitlist_release('', 1, 'e-empty')$$, '22023',
    'waitlist_release with an empty resource_id');
SELECT wl_test.rejects($$SELECT waitlist_release('bad', 1, '')$$, '22023',
    'waitlist_release with an empty event_id');
SELECT wl_test.rejects($$SELECT waitlist_promote('')$$, '22023',
    'waitlist_promote with an empty resource_id');

SELECT wl_test.rejects($$SELECT waitlist_create_resource(repeat('r', 201))$$, '22001',
    'waitlist_create_resource with a 201-byte resource_id');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource(repeat('r', 201))$$, '22001',
    'waitlist_alter_resource with a 201-byte resource_id');
SELECT wl_test.rejects($$SELECT waitlist_join(repeat('r', 201), 'fan-x')$$, '22001',
    'waitlist_join with a 201-byte resource_id');
SELECT wl_test.rejects($$SELECT waitlist_join('bad', repeat('u', 201))$$, '22001',
    'waitlist_join with a 201-byte user_id');
SELECT wl_test.rejects($$SELECT waitlist_join('bad', repeat('é', 101))$$, '22001',
    'waitlist_join with a 101-character, 202-byte user_id (the limit is in bytes)');
SELECT wl_test.rejects($$SELECT waitlist_release(repeat('r', 201), 1, 'e-long')$$, '22001',
    'waitlist_release with a 201-byte resource_id');
SELECT wl_test.rejects($$SELECT waitlist_release('bad', 1, repeat('e', 201))$$, '22001',
    'waitlist_release with a 201-byte event_id');
SELECT wl_test.rejects($$SELECT waitlist_promote(repeat('r', 201))$$, '22001',
    'waitlist_promote with a 201-byte resource_id');

-- exactly 200 bytes is fine
SELECT lives_ok($$SELECT waitlist_create_resource(repeat('r', 200))$$,
    'a 200-byte resource_id is accepted');
SELECT lives_ok($$SELECT waitlist_join(repeat('r', 200), repeat('é', 100))$$,
    'a 200-byte (100-character) user_id is accepted');
SELECT lives_ok($$SELECT waitlist_release(repeat('r', 200), 1, repeat('e', 200))$$,
    'a 200-byte event_id is accepted');

------------------------------------------------------------------------------
-- offer_ttl must be positive, max_waiting positive, max_offers not negative
------------------------------------------------------------------------------

SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-ttl', interval '0')$$, '22023',
    'waitlist_create_resource with offer_ttl 0');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-ttl', interval '-1 minute')$$, '22023',
    'waitlist_create_resource with offer_ttl -1 minute');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-ttl', interval '1 day -24 hours')$$, '22023',
    'waitlist_create_resource with offer_ttl 1 day -24 hours (zero)');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('bad', interval '0')$$, '22023',
    'waitlist_alter_resource with offer_ttl 0');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('bad', interval '-1 minute')$$, '22023',
    'waitlist_alter_resource with offer_ttl -1 minute');

SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-cap', interval '1 minute', 0)$$, '22023',
    'waitlist_create_resource with max_waiting 0');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-cap', interval '1 minute', -5)$$, '22023',
    'waitlist_create_resource with max_waiting -5');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('bad', max_waiting => 0)$$, '22023',
    'waitlist_alter_resource with max_waiting 0');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('bad', max_waiting => -1)$$, '22023',
    'waitlist_alter_resource with max_waiting -1');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('bad', max_waiting => 10, clear_max_waiting => true)$$, '22023',
    'waitlist_alter_resource setting and clearing max_waiting at once');

SELECT wl_test.rejects($$SELECT waitlist_promote('bad', -1)$$, '22023',
    'waitlist_promote with max_offers -1');
SELECT wl_test.no_change($$SELECT waitlist_promote('bad', 0)$$, '0',
    'waitlist_promote with max_offers 0');

------------------------------------------------------------------------------
-- Every setting bounded when set: offer_ttl and wave_interval at most 1 year,
-- max_waiting at most 1000000000, wave_size at most 1000000 (22023); the
-- table holds the same bounds for rows written by hand (23514)
------------------------------------------------------------------------------

SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-big', interval '1 year 1 microsecond')$$, '22023',
    'waitlist_create_resource with offer_ttl just over 1 year');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-big', interval '100000000 years')$$, '22023',
    'waitlist_create_resource with offer_ttl 100000000 years');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('bad', interval '2 years')$$, '22023',
    'waitlist_alter_resource with offer_ttl 2 years');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-big', interval '1 minute', 1000000001)$$, '22023',
    'waitlist_create_resource with max_waiting 1000000001');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('bad', max_waiting => 9223372036854775807)$$, '22023',
    'waitlist_alter_resource with max_waiting 9223372036854775807');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-big', wave_size => 1000001, wave_interval => interval '1 minute')$$, '22023',
    'waitlist_create_resource with wave_size 1000001');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-big', wave_size => 2, wave_interval => interval '100000000 years')$$, '22023',
    'waitlist_create_resource with wave_interval 100000000 years');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-big', wave_size => 2, wave_interval => interval '1 year 1 microsecond')$$, '22023',
    'waitlist_create_resource with wave_interval just over 1 year');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('bad', wave_size => 2147483647, wave_interval => interval '1 minute')$$, '22023',
    'waitlist_alter_resource with wave_size 2147483647');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('bad', wave_size => 2, wave_interval => interval '100000000 years')$$, '22023',
    'waitlist_alter_resource with wave_interval 100000000 years');
SELECT lives_ok($$SELECT waitlist_create_resource('bad-big-ok', interval '1 year', 1000000000, NULL, NULL, 1000000, interval '1 year')$$,
    'every bound itself is accepted');
SELECT row_eq($$SELECT offer_ttl, max_waiting, wave_size, wave_interval FROM waitlist.resource WHERE resource_id = 'bad-big-ok'$$,
    ROW(interval '1 year', 1000000000::bigint, 1000000, interval '1 year'), '... and stored');

SELECT throws_ok($$UPDATE waitlist.resource SET offer_ttl = interval '100000000 years' WHERE resource_id = 'bad-big-ok'$$,
    '23514', NULL, 'an offer_ttl over 1 year written by hand is rejected (23514)');
SELECT throws_ok($$UPDATE waitlist.resource SET wave_interval = interval '100000000 years' WHERE resource_id = 'bad-big-ok'$$,
    '23514', NULL, 'a wave_interval over 1 year written by hand is rejected (23514)');
SELECT throws_ok($$UPDATE waitlist.resource SET max_waiting = 1000000001 WHERE resource_id = 'bad-big-ok'$$,
    '23514', NULL, 'a max_waiting over 1000000000 written by hand is rejected (23514)');
SELECT throws_ok($$UPDATE waitlist.resource SET wave_size = 1000001 WHERE resource_id = 'bad-big-ok'$$,
    '23514', NULL, 'a wave_size over 1000000 written by hand is rejected (23514)');
SELECT throws_ok($$UPDATE waitlist.resource SET wave_started_at = '294276-12-01' WHERE resource_id = 'bad-big-ok'$$,
    '22008', NULL, 'a wave that would end after the last timestamp cannot be written (22008)');

-- the settings' own bounds
SELECT results_eq(
    $$SELECT name, min_val, max_val FROM pg_catalog.pg_settings
       WHERE name IN ('waitlist.naptime', 'waitlist.max_event_attempts',
                      'waitlist.outbox_max_attempts', 'waitlist.outbox_retry_base')
       ORDER BY name$$,
    $$VALUES ('waitlist.max_event_attempts'::text, '1'::text, '100'::text),
             ('waitlist.naptime', '10', '3600000'),
             ('waitlist.outbox_max_attempts', '1', '1000'),
             ('waitlist.outbox_retry_base', '1', '3600000')$$,
    'every numeric waitlist setting has a minimum and a maximum');
SELECT throws_ok($$SET LOCAL waitlist.outbox_max_attempts = 1001$$, '22023', NULL,
    'waitlist.outbox_max_attempts over 1000 is refused (22023)');
SELECT throws_ok($$SET LOCAL waitlist.outbox_retry_base = '2h'$$, '22023', NULL,
    'waitlist.outbox_retry_base over 1 hour is refused (22023)');

------------------------------------------------------------------------------
-- Notification channels: a non-empty subset of email, sms, push, webhook
------------------------------------------------------------------------------

SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-ch', channels => '{}')$$, '22023',
    'waitlist_create_resource without channels');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-ch', channels => '{fax}')$$, '22023',
    'waitlist_create_resource with an unknown channel');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-ch', channels => '{email,pager}')$$, '22023',
    'waitlist_create_resource with a known and an unknown channel');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-ch', channels => '{SMS}')$$, '22023',
    'waitlist_create_resource with a channel differing only in case');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-ch', channels => '{email,NULL}')$$, '22023',
    'waitlist_create_resource with a NULL channel');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-ch', channels => '{""}')$$, '22023',
    'waitlist_create_resource with an empty channel name');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('bad', channels => '{}')$$, '22023',
    'waitlist_alter_resource to no channels');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('bad', channels => '{webhook,fax}')$$, '22023',
    'waitlist_alter_resource with an unknown channel');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('no-such-resource', channels => '{sms}')$$, '42704',
    'waitlist_alter_resource of the channels of an unknown resource');
SELECT lives_ok($$SELECT waitlist_create_resource('bad-ch-ok', channels => '{push,email,sms,webhook}')$$,
    'every channel at once is accepted');

------------------------------------------------------------------------------
-- Waves: wave_size and wave_interval positive, and given together
------------------------------------------------------------------------------

SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-w', wave_size => 2)$$, '22023',
    'waitlist_create_resource with wave_size and no wave_interval');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-w', wave_interval => interval '1 minute')$$, '22023',
    'waitlist_create_resource with wave_interval and no wave_size');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-w', wave_size => 0, wave_interval => interval '1 minute')$$, '22023',
    'waitlist_create_resource with wave_size 0');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-w', wave_size => -2, wave_interval => interval '1 minute')$$, '22023',
    'waitlist_create_resource with wave_size -2');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-w', wave_size => 2, wave_interval => interval '0')$$, '22023',
    'waitlist_create_resource with wave_interval 0');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-w', wave_size => 2, wave_interval => interval '-1 minute')$$, '22023',
    'waitlist_create_resource with wave_interval -1 minute');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('bad', wave_size => 0, wave_interval => interval '1 minute')$$, '22023',
    'waitlist_alter_resource with wave_size 0');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('bad', wave_size => 2, wave_interval => interval '0')$$, '22023',
    'waitlist_alter_resource with wave_interval 0');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('bad', wave_size => 2, clear_waves => true)$$, '22023',
    'waitlist_alter_resource setting and clearing wave_size at once');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('bad', wave_interval => interval '1 minute', clear_waves => true)$$, '22023',
    'waitlist_alter_resource setting and clearing wave_interval at once');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('bad', wave_size => 2)$$, '22023',
    'waitlist_alter_resource giving a resource without waves a wave_size only');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('bad', wave_interval => interval '1 minute')$$, '22023',
    'waitlist_alter_resource giving a resource without waves a wave_interval only');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('no-such-resource', wave_size => 2, wave_interval => interval '1 minute')$$, '42704',
    'waitlist_alter_resource of the waves of an unknown resource');
SELECT lives_ok($$SELECT waitlist_create_resource('bad-w-ok', wave_size => 2, wave_interval => interval '1 minute')$$,
    'a wave_size with a wave_interval is accepted');
SELECT lives_ok($$SELECT waitlist_alter_resource('bad-w-ok', wave_size => 3)$$,
    'a resource with waves may change its wave_size alone');
SELECT lives_ok($$SELECT waitlist_alter_resource('bad', clear_waves => true)$$,
    'clearing the waves of a resource without waves works');
SELECT row_eq($$SELECT wave_size, wave_interval FROM waitlist.resource WHERE resource_id = 'bad'$$,
    ROW(NULL::integer, NULL::interval), '... and it still has none');

------------------------------------------------------------------------------
-- Duplicate resource: 42710
------------------------------------------------------------------------------

SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad')$$, '42710',
    'waitlist_create_resource of an existing resource');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad', interval '1 hour', 3)$$, '42710',
    'waitlist_create_resource of an existing resource with other settings');

------------------------------------------------------------------------------
-- Booking functions: wrong signature 42P13, unknown 42883
------------------------------------------------------------------------------

SELECT wl_test.rejects(
    $$SELECT waitlist_create_resource('bad-bf', interval '1 minute', NULL, 'wl_test.booking_three_args(text,text,bigint)')$$,
    '42P13', 'waitlist_create_resource with a 3-argument booking function');
SELECT wl_test.rejects(
    $$SELECT waitlist_create_resource('bad-bf', interval '1 minute', NULL, 'wl_test.booking_returns_int(text,text,bigint,text)')$$,
    '42P13', 'waitlist_create_resource with a booking function returning integer');
SELECT wl_test.rejects(
    $$SELECT waitlist_create_resource('bad-bf', interval '1 minute', NULL, 'wl_test.booking_int_offer(text,text,integer,text)')$$,
    '42P13', 'waitlist_create_resource with a booking function taking an integer offer_id');
SELECT wl_test.rejects(
    $$SELECT waitlist_create_resource('bad-bf', interval '1 minute', NULL, 'wl_test.booking_setof(text,text,bigint,text)')$$,
    '42P13', 'waitlist_create_resource with a set-returning booking function');
SELECT wl_test.rejects(
    $$SELECT waitlist_create_resource('bad-bf', interval '1 minute', NULL, 'wl_test.booking_procedure(text,text,bigint,text)')$$,
    '42P13', 'waitlist_create_resource with a procedure as booking function');
SELECT wl_test.rejects(
    $$SELECT waitlist_alter_resource('bad', booking_function => 'wl_test.booking_returns_int(text,text,bigint,text)')$$,
    '42P13', 'waitlist_alter_resource with a booking function of the wrong signature');
SELECT wl_test.rejects(
    format('SELECT waitlist_create_resource(%L, interval %L, NULL, %s::oid::regprocedure)',
           'bad-bf', '1 minute', (SELECT max(oid)::bigint + 100000 FROM pg_catalog.pg_proc)),
    '42883', 'waitlist_create_resource with a booking function that does not exist');
SELECT wl_test.rejects(
    $$SELECT waitlist_alter_resource('bad', booking_function => 'wl_test.booking_ok(text,text,bigint,text)',
                                     clear_booking_function => true)$$,
    '22023', 'waitlist_alter_resource setting and clearing booking_function at once');
SELECT lives_ok(
    $$SELECT waitlist_create_resource('bad-bf', interval '1 minute', NULL, 'wl_test.booking_ok(text,text,bigint,text)')$$,
    'a booking function (text, text, bigint, text) RETURNS text is accepted');
SELECT is((SELECT booking_function FROM waitlist.resource WHERE resource_id = 'bad-bf'),
    'wl_test.booking_ok(text,text,bigint,text)'::regprocedure, '... and stored');

------------------------------------------------------------------------------
-- A full waitlist: WL001, while a double tap still gets its entry
------------------------------------------------------------------------------

DO $$ BEGIN PERFORM waitlist_create_resource('bad-full', interval '5 minutes', 2); END $$;
SELECT ok(waitlist_join('bad-full', 'a') IS NOT NULL, 'first join to a list capped at 2');
SELECT ok(waitlist_join('bad-full', 'b') IS NOT NULL, 'second join to a list capped at 2');

SELECT wl_test.rejects($$SELECT waitlist_join('bad-full', 'c')$$, 'WL001',
    'a third join to a list capped at 2');
SELECT wl_test.rejects($$SELECT waitlist_join('bad-full', 'vip', 1000)$$, 'WL001',
    'a high-priority join to a full list');
SELECT wl_test.no_change(
    $$SELECT waitlist_join('bad-full', 'a') = (SELECT entry_id FROM waitlist.entry WHERE resource_id = 'bad-full' AND user_id = 'a')$$,
    'true', 'a double tap of a waiting user on a full list');
SELECT is((SELECT count(*)::int FROM waitlist.entry WHERE resource_id = 'bad-full'), 2,
    'the full list still has exactly 2 entries');

SELECT wl_test.no_change(
    $$SELECT waitlist_join('bad', 'fan-1') = (SELECT entry_id FROM waitlist.entry WHERE resource_id = 'bad' AND user_id = 'fan-1')$$,
    'true', 'a double tap of an offered user');
SELECT wl_test.no_change(
    $$SELECT waitlist_join('bad', 'fan-3', 7) = (SELECT entry_id FROM waitlist.entry WHERE resource_id = 'bad' AND user_id = 'fan-3')$$,
    'true', 'a double tap of a waiting user with another priority');

------------------------------------------------------------------------------
-- A repeated release event counts once
------------------------------------------------------------------------------

DO $$ BEGIN PERFORM waitlist_create_resource('bad-rel'); END $$;
SELECT is(waitlist_release('bad-rel', 3, 'event-1'), true, 'a new release event returns true');
SELECT is((SELECT free_units FROM waitlist.resource WHERE resource_id = 'bad-rel'), 3::bigint,
    '... and adds its units');
SELECT wl_test.no_change($$SELECT waitlist_release('bad-rel', 3, 'event-1')$$, 'false',
    'the same release event again');
SELECT wl_test.no_change($$SELECT waitlist_release('bad-rel', 5, 'event-1')$$, 'false',
    'the same event id with another quantity');
SELECT wl_test.no_change($$SELECT waitlist_release('bad', 1, 'fixture-event-1')$$, 'false',
    'a repeated event on a resource with waiters (no new offer)');
SELECT is((SELECT count(*)::int FROM waitlist.capacity_event WHERE event_id = 'event-1'), 1,
    'the repeated event is recorded once');

------------------------------------------------------------------------------
-- A repeated leave is a no-op
------------------------------------------------------------------------------

SELECT wl_test.no_change(
    $$SELECT waitlist_leave((SELECT entry_id FROM waitlist.entry WHERE resource_id = 'bad' AND user_id = 'fan-5'))$$,
    'false', 'leaving an entry that already left');

------------------------------------------------------------------------------
-- Offers: accept, decline, sweep
------------------------------------------------------------------------------

SELECT wl_test.rejects($$SELECT * FROM waitlist_accept(NULL, 'key-1')$$, '22004',
    'waitlist_accept with NULL offer_id');
SELECT wl_test.rejects(format('SELECT * FROM waitlist_accept(%s, NULL)', wl_test.offer_of('bad', 'fan-1')), '22004',
    'waitlist_accept with NULL idempotency_key');
SELECT wl_test.rejects(format('SELECT * FROM waitlist_accept(%s, %L)', wl_test.offer_of('bad', 'fan-1'), ''), '22023',
    'waitlist_accept with an empty idempotency_key');
SELECT wl_test.rejects(format('SELECT * FROM waitlist_accept(%s, repeat(%L, 201))', wl_test.offer_of('bad', 'fan-1'), 'k'), '22001',
    'waitlist_accept with a 201-byte idempotency_key');
SELECT wl_test.rejects(
    format('SELECT * FROM waitlist_accept(%s, %L)', (SELECT max(offer_id) + 1000 FROM waitlist.offer), 'key-1'), '42704',
    'waitlist_accept of an unknown offer');
SELECT wl_test.rejects($$SELECT waitlist_decline(NULL)$$, '22004',
    'waitlist_decline with NULL offer_id');
SELECT wl_test.rejects(
    format('SELECT waitlist_decline(%s)', (SELECT max(offer_id) + 1000 FROM waitlist.offer)), '42704',
    'waitlist_decline of an unknown offer');
SELECT wl_test.rejects($$SELECT waitlist_sweep(NULL)$$, '22004',
    'waitlist_sweep with NULL max_offers');
SELECT wl_test.rejects($$SELECT waitlist_sweep(0)$$, '22023',
    'waitlist_sweep with max_offers 0');
SELECT wl_test.rejects($$SELECT waitlist_sweep(-1)$$, '22023',
    'waitlist_sweep with max_offers -1');
SELECT wl_test.rejects($$SELECT waitlist_schedule_sweep(NULL)$$, '22004',
    'waitlist_schedule_sweep with NULL schedule');
SELECT wl_test.no_change($$SELECT waitlist_sweep()$$, '0',
    'waitlist_sweep with no offer past its deadline');

-- fan-1 accepts; fan-2 declines (fan-3 is offered the unit)
SELECT is((SELECT state FROM waitlist_accept(wl_test.offer_of('bad', 'fan-1'), 'key-fan-1')), 'ACCEPTED',
    'fan-1 accepts');
SELECT wl_test.no_change(
    format('SELECT (waitlist_accept(%s, %L)).state', wl_test.offer_of('bad', 'fan-1'), 'key-fan-1'),
    'ACCEPTED', 'a repeated accept with the same key');
SELECT wl_test.rejects(format('SELECT waitlist_decline(%s)', wl_test.offer_of('bad', 'fan-1')), 'WL003',
    'waitlist_decline of an accepted offer');
SELECT is(waitlist_decline(wl_test.offer_of('bad', 'fan-2')), true, 'fan-2 declines');
SELECT wl_test.no_change(format('SELECT waitlist_decline(%s)', wl_test.offer_of('bad', 'fan-2')), 'false',
    'a repeated decline');
SELECT wl_test.rejects(format('SELECT * FROM waitlist_accept(%s, %L)', wl_test.offer_of('bad', 'fan-2'), 'key-fan-2'),
    'WL003', 'waitlist_accept of a declined offer');
SELECT is((SELECT state FROM waitlist.offer WHERE offer_id = wl_test.offer_of('bad', 'fan-3')), 'OPEN',
    'the declined unit went to fan-3');

-- fan-3's offer runs out before anyone sweeps it (before this transaction
-- began, so that the sweep, which compares with now(), sees it past however
-- long the file took to get here)
UPDATE waitlist.offer SET expires_at = now() - interval '1 second'
 WHERE offer_id = wl_test.offer_of('bad', 'fan-3');
SELECT wl_test.rejects(format('SELECT * FROM waitlist_accept(%s, %L)', wl_test.offer_of('bad', 'fan-3'), 'key-fan-3'),
    'WL002', 'waitlist_accept of an offer past its deadline, not yet swept');
SELECT wl_test.rejects(format('SELECT waitlist_decline(%s)', wl_test.offer_of('bad', 'fan-3')), 'WL002',
    'waitlist_decline of an offer past its deadline, not yet swept');
SELECT is(waitlist_sweep(), 1, 'the sweep expires it');
SELECT wl_test.rejects(format('SELECT * FROM waitlist_accept(%s, %L)', wl_test.offer_of('bad', 'fan-3'), 'key-fan-3'),
    'WL002', 'waitlist_accept of an expired offer');
SELECT wl_test.rejects(format('SELECT waitlist_decline(%s)', wl_test.offer_of('bad', 'fan-3')), 'WL002',
    'waitlist_decline of an expired offer');

------------------------------------------------------------------------------
-- The same errors raised by plain statements rather than inside a PL/pgSQL
-- exception block (where throws_ok catches them): the statement fails, the
-- savepoint is rolled back, and the session carries on.  An API call that
-- leaves a dangling frame behind takes the backend down here, and the tests
-- after it never run.  psql prints each expected error on stderr.
------------------------------------------------------------------------------

-- a resource whose promotions fail: a trigger of this file's own refuses its
-- offers (an offer_ttl past the last representable timestamp did, until
-- settings were bounded in the table too)
CREATE FUNCTION wl_test.refuse_far_offer() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.resource_id = 'bad-far' THEN
        RAISE EXCEPTION 'no offers for bad-far' USING ERRCODE = '22008';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER wl_test_refuse_far_offer BEFORE INSERT ON waitlist.offer
    FOR EACH ROW EXECUTE FUNCTION wl_test.refuse_far_offer();
DO $$
BEGIN
    PERFORM waitlist_create_resource('bad-far');
    PERFORM waitlist_join('bad-far', 'fan-far');
END
$$;

\set ON_ERROR_STOP 0
\set VERBOSITY terse

SELECT wl_test.digest() AS probe_before \gset
SAVEPOINT probe;
SELECT waitlist_join('no-such-resource', 'fan-x');
\set probe_state :SQLSTATE
ROLLBACK TO SAVEPOINT probe;
SELECT is(:'probe_state'::text, '42704', 'waitlist_join to an unknown resource, as a plain statement, raises 42704');
SELECT is(wl_test.digest(), :'probe_before', '... and the session goes on with nothing changed');

SELECT wl_test.digest() AS probe_before \gset
SAVEPOINT probe;
SELECT waitlist_release('no-such-resource', 1, 'e-probe');
\set probe_state :SQLSTATE
ROLLBACK TO SAVEPOINT probe;
SELECT is(:'probe_state'::text, '42704', 'waitlist_release for an unknown resource, as a plain statement, raises 42704');
SELECT is(wl_test.digest(), :'probe_before', '... and the session goes on with nothing changed');

SELECT wl_test.digest() AS probe_before \gset
SAVEPOINT probe;
SELECT waitlist_promote('no-such-resource');
\set probe_state :SQLSTATE
ROLLBACK TO SAVEPOINT probe;
SELECT is(:'probe_state'::text, '42704', 'waitlist_promote of an unknown resource, as a plain statement, raises 42704');
SELECT is(wl_test.digest(), :'probe_before', '... and the session goes on with nothing changed');

SELECT wl_test.digest() AS probe_before \gset
SAVEPOINT probe;
SELECT waitlist_alter_resource('no-such-resource');
\set probe_state :SQLSTATE
ROLLBACK TO SAVEPOINT probe;
SELECT is(:'probe_state'::text, '42704', 'waitlist_alter_resource of an unknown resource, as a plain statement, raises 42704');
SELECT is(wl_test.digest(), :'probe_before', '... and the session goes on with nothing changed');

SELECT wl_test.digest() AS probe_before \gset
SAVEPOINT probe;
SELECT waitlist_create_resource('bad');
\set probe_state :SQLSTATE
ROLLBACK TO SAVEPOINT probe;
SELECT is(:'probe_state'::text, '42710', 'waitlist_create_resource of an existing resource, as a plain statement, raises 42710');
SELECT is(wl_test.digest(), :'probe_before', '... and the session goes on with nothing changed');

SELECT wl_test.digest() AS probe_before \gset
SAVEPOINT probe;
SELECT waitlist_leave(-1);
\set probe_state :SQLSTATE
ROLLBACK TO SAVEPOINT probe;
SELECT is(:'probe_state'::text, '42704', 'waitlist_leave of an unknown entry, as a plain statement, raises 42704');
SELECT is(wl_test.digest(), :'probe_before', '... and the session goes on with nothing changed');

SELECT wl_test.digest() AS probe_before \gset
SAVEPOINT probe;
SELECT * FROM waitlist_status(-1);
\set probe_state :SQLSTATE
ROLLBACK TO SAVEPOINT probe;
SELECT is(:'probe_state'::text, '42704', 'waitlist_status of an unknown entry, as a plain statement, raises 42704');
SELECT is(wl_test.digest(), :'probe_before', '... and the session goes on with nothing changed');

SELECT wl_test.digest() AS probe_before \gset
SAVEPOINT probe;
SELECT waitlist_join('bad-full', 'c');
\set probe_state :SQLSTATE
ROLLBACK TO SAVEPOINT probe;
SELECT is(:'probe_state'::text, 'WL001', 'a join to a full list, as a plain statement, raises WL001');
SELECT is(wl_test.digest(), :'probe_before', '... and the session goes on with nothing changed');

SELECT wl_test.digest() AS probe_before \gset
SAVEPOINT probe;
SELECT * FROM waitlist_accept(-1, 'key-probe');
\set probe_state :SQLSTATE
ROLLBACK TO SAVEPOINT probe;
SELECT is(:'probe_state'::text, '42704', 'waitlist_accept of an unknown offer, as a plain statement, raises 42704');
SELECT is(wl_test.digest(), :'probe_before', '... and the session goes on with nothing changed');

SELECT wl_test.digest() AS probe_before \gset
SAVEPOINT probe;
SELECT waitlist_decline(-1);
\set probe_state :SQLSTATE
ROLLBACK TO SAVEPOINT probe;
SELECT is(:'probe_state'::text, '42704', 'waitlist_decline of an unknown offer, as a plain statement, raises 42704');
SELECT is(wl_test.digest(), :'probe_before', '... and the session goes on with nothing changed');

SELECT wl_test.digest() AS probe_before \gset
SAVEPOINT probe;
SELECT waitlist_sweep(0);
\set probe_state :SQLSTATE
ROLLBACK TO SAVEPOINT probe;
SELECT is(:'probe_state'::text, '22023', 'waitlist_sweep with max_offers 0, as a plain statement, raises 22023');
SELECT is(wl_test.digest(), :'probe_before', '... and the session goes on with nothing changed');

SELECT wl_test.digest() AS probe_before \gset
SAVEPOINT probe;
SELECT waitlist_release('bad', 0, 'e-probe');
\set probe_state :SQLSTATE
ROLLBACK TO SAVEPOINT probe;
SELECT is(:'probe_state'::text, '22023', 'waitlist_release of quantity 0, as a plain statement, raises 22023');
SELECT is(wl_test.digest(), :'probe_before', '... and the session goes on with nothing changed');

-- a relay holds one outbox row of the fixture
SELECT outbox_id AS probe_row, lease_token AS probe_token FROM waitlist_outbox_claim('probe-relay', 1) \gset

SELECT wl_test.digest() AS probe_before \gset
SAVEPOINT probe;
SELECT count(*) FROM waitlist_outbox_claim('probe-relay', 0);
\set probe_state :SQLSTATE
ROLLBACK TO SAVEPOINT probe;
SELECT is(:'probe_state'::text, '22023', 'waitlist_outbox_claim of 0 rows, as a plain statement, raises 22023');
SELECT is(wl_test.digest(), :'probe_before', '... and the session goes on with nothing changed');

SELECT wl_test.digest() AS probe_before \gset
SAVEPOINT probe;
SELECT waitlist_outbox_ack(:probe_row, :probe_token + 1);
\set probe_state :SQLSTATE
ROLLBACK TO SAVEPOINT probe;
SELECT is(:'probe_state'::text, 'WL005', 'waitlist_outbox_ack with a stale token, as a plain statement, raises WL005');
SELECT is(wl_test.digest(), :'probe_before', '... and the session goes on with nothing changed');

SELECT wl_test.digest() AS probe_before \gset
SAVEPOINT probe;
SELECT waitlist_outbox_fail(-1, :probe_token, 'probe');
\set probe_state :SQLSTATE
ROLLBACK TO SAVEPOINT probe;
SELECT is(:'probe_state'::text, '42704', 'waitlist_outbox_fail of an unknown row, as a plain statement, raises 42704');
SELECT is(wl_test.digest(), :'probe_before', '... and the session goes on with nothing changed');

SELECT wl_test.digest() AS probe_before \gset
SAVEPOINT probe;
SELECT waitlist_set_channel_rate('fax', 1);
\set probe_state :SQLSTATE
ROLLBACK TO SAVEPOINT probe;
SELECT is(:'probe_state'::text, '22023', 'waitlist_set_channel_rate of an unknown channel, as a plain statement, raises 22023');
SELECT is(wl_test.digest(), :'probe_before', '... and the session goes on with nothing changed');

SELECT wl_test.digest() AS probe_before \gset
SAVEPOINT probe;
SELECT waitlist_offer_seen(-1);
\set probe_state :SQLSTATE
ROLLBACK TO SAVEPOINT probe;
SELECT is(:'probe_state'::text, '42704', 'waitlist_offer_seen of an unknown offer, as a plain statement, raises 42704');
SELECT is(wl_test.digest(), :'probe_before', '... and the session goes on with nothing changed');

SELECT wl_test.digest() AS probe_before \gset
SAVEPOINT probe;
SELECT waitlist_alter_resource('bad', wave_size => 0, wave_interval => interval '1 minute');
\set probe_state :SQLSTATE
ROLLBACK TO SAVEPOINT probe;
SELECT is(:'probe_state'::text, '22023', 'waitlist_alter_resource with wave_size 0, as a plain statement, raises 22023');
SELECT is(wl_test.digest(), :'probe_before', '... and the session goes on with nothing changed');

SELECT is(waitlist_outbox_ack(:probe_row, :probe_token), true,
    'after these errors the relay acks its row');

SELECT wl_test.digest() AS probe_before \gset
SAVEPOINT probe;
SELECT waitlist_release('bad-far', 1, 'e-probe');
\set probe_state :SQLSTATE
ROLLBACK TO SAVEPOINT probe;
SELECT is(:'probe_state'::text, '22008', 'a release whose promotion fails (an offer trigger raises 22008), as a plain statement, raises 22008');
SELECT is(wl_test.digest(), :'probe_before', '... and the session goes on with nothing changed');

\set VERBOSITY default
\set ON_ERROR_STOP 1

------------------------------------------------------------------------------
-- Parties and parallel offers: out of range, unknown, or not together (22023),
-- NULL (22004), a fanout over parties already in line (55000)
------------------------------------------------------------------------------

SELECT waitlist_create_resource('bad-party', max_party_size => 3);
SELECT waitlist_join('bad-party', 'party-of-two', 0, 2);
SELECT wl_test.rejects($$SELECT waitlist_join('bad-party', 'party-x', 0, 0)$$, '22023',
    'waitlist_join with quantity 0');
SELECT wl_test.rejects($$SELECT waitlist_join('bad-party', 'party-x', 0, 4)$$, '22023',
    'waitlist_join with a party above max_party_size');
SELECT wl_test.rejects($$SELECT waitlist_join('bad-party', 'party-x', 0, 2147483647)$$, '22023',
    'waitlist_join with a party larger than the resource could ever free');
SELECT wl_test.rejects($$SELECT waitlist_join('bad-party', 'party-x', 0, NULL)$$, '22004',
    'waitlist_join with NULL quantity');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-party-2', max_party_size => 0)$$, '22023',
    'waitlist_create_resource with max_party_size 0');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-party-2', max_party_size => 100000)$$, '22023',
    'waitlist_create_resource with an absurd max_party_size');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-party-2', party_policy => 'biggest_first')$$, '22023',
    'waitlist_create_resource with an unknown party_policy');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-party-2', party_policy => NULL)$$, '22004',
    'waitlist_create_resource with NULL party_policy');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-party-2', offer_fanout => 0)$$, '22023',
    'waitlist_create_resource with offer_fanout 0');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-party-2', offer_fanout => 1000)$$, '22023',
    'waitlist_create_resource with an absurd offer_fanout');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('bad-party-2', offer_fanout => 2, max_party_size => 2)$$, '22023',
    'waitlist_create_resource with a fanout and parties');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('bad-party', offer_fanout => -1)$$, '22023',
    'waitlist_alter_resource with a negative offer_fanout');
SELECT waitlist_create_resource('bad-party-empty', max_party_size => 3);
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('bad-party-empty', offer_fanout => 2)$$, '22023',
    'waitlist_alter_resource with a fanout on a resource of parties');
SELECT wl_test.rejects($$SELECT waitlist_alter_resource('bad-party', offer_fanout => 2, max_party_size => 1)$$, '55000',
    'waitlist_alter_resource with a fanout while parties wait');

------------------------------------------------------------------------------
-- After all these errors the API frames are unwound: a change by hand is
-- audited as manual, not with the reason of a call that failed
------------------------------------------------------------------------------

UPDATE waitlist.entry SET state = 'CANCELLED' WHERE resource_id = 'bad-full' AND user_id = 'b';
SELECT results_eq(
    $$SELECT from_state, to_state, reason, actor::text FROM waitlist.transition
       WHERE entity = 'entry' AND entity_id = (SELECT entry_id FROM waitlist.entry WHERE resource_id = 'bad-full' AND user_id = 'b')
       ORDER BY transition_id$$,
    $$VALUES (NULL::text, 'WAITING'::text, 'joined'::text, current_user::text),
             ('WAITING', 'CANCELLED', 'manual', current_user::text)$$,
    'a manual UPDATE after failed calls is recorded as manual');

SELECT * FROM finish();
ROLLBACK;
