-- pgTAP: the accept saga of an external booking service and offer
-- extensions, their contract and their bad input.
--
-- Each transition of the saga (request, retry, confirmed, failed, exhausted
-- by attempts and by the deadline) with what it does to the offer, the entry,
-- the unit and the outbox; every refusal with its SQLSTATE and no change: a
-- report for an offer without a saga (55000), a late confirmation (WL015), a
-- second reservation (WL016), an extension past the bound (WL017), bad
-- arguments; and who may call what (the booking duty reports, the app extends).
--
-- Leaves nothing behind: everything happens in one rolled back transaction
-- (so the refused confirmations' own records, committed by a worker of their
-- own, cannot see these rows; sql/saga.sql shows them).

\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off

BEGIN;
SET LOCAL client_min_messages = error;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION waitlist;
\ir helpers.psql
SET LOCAL waitlist.promotion_mode = inline;

SELECT plan(61);

DO $$
BEGIN
    PERFORM waitlist_create_resource('ext', interval '10 minutes', booking => 'external',
                                     booking_timeout => '5 minutes', booking_max_attempts => 2);
    PERFORM waitlist_join('ext', 'fan-' || i) FROM generate_series(1, 4) i;
    PERFORM waitlist_release('ext', 2, 'ext-1');
END
$$;

-- the request
SELECT is((SELECT state FROM waitlist_accept(wl_test.offer_of('ext', 'fan-1'), 'k1')), 'ACCEPTING',
    'an accept on an external resource returns ACCEPTING');
SELECT is((SELECT state FROM waitlist.offer WHERE offer_id = wl_test.offer_of('ext', 'fan-1')), 'ACCEPTING',
    'the offer is ACCEPTING');
SELECT is((SELECT state FROM waitlist.entry WHERE entry_id = wl_test.entry_of('ext', 'fan-1')), 'OFFERED',
    'its entry stays OFFERED');
SELECT is((SELECT free_units FROM waitlist.resource WHERE resource_id = 'ext'), 0::bigint,
    'the unit stays held');
SELECT ok((SELECT booking_deadline > now() + interval '4 minutes' AND booking_deadline <= now() + interval '5 minutes'
             FROM waitlist.offer WHERE offer_id = wl_test.offer_of('ext', 'fan-1')),
    'the saga ends by itself booking_timeout after the accept');
SELECT is((SELECT count(*)::integer FROM waitlist.outbox WHERE event_type = 'booking_requested'), 1,
    'one booking_requested row');
SELECT is((SELECT channel FROM waitlist.outbox WHERE event_type = 'booking_requested'), 'booking',
    'on channel booking');
SELECT ok((SELECT payload ?& ARRAY['resource_id', 'user_id', 'offer_id', 'idempotency_key', 'attempt', 'deadline']
             FROM waitlist.outbox WHERE event_type = 'booking_requested'),
    'carrying resource, user, offer, idempotency key, attempt and deadline');
SELECT wl_test.no_change(format('SELECT state FROM waitlist_accept(%s, %L)', wl_test.offer_of('ext', 'fan-1'), 'k1'),
    'ACCEPTING', 'the same key again');
SELECT is((SELECT state FROM waitlist_accept(wl_test.offer_of('ext', 'fan-1'), 'k2')), 'ACCEPTING',
    'another key joins the saga');
SELECT is((SELECT count(*)::integer FROM waitlist.outbox WHERE event_type = 'booking_requested'), 1,
    'and asks for no second booking');

-- refusals while ACCEPTING
SELECT wl_test.rejects(format('SELECT waitlist_decline(%s)', wl_test.offer_of('ext', 'fan-1')), 'WL003',
    'declining an ACCEPTING offer');
SELECT wl_test.rejects(format('SELECT waitlist_leave(%s)', wl_test.entry_of('ext', 'fan-1')), '55000',
    'leaving with a booking in progress');
SELECT wl_test.rejects(format('SELECT waitlist_extend_offer(%s, %L, %L, %L)', wl_test.offer_of('ext', 'fan-1'),
                              '1 minute', 'why', 'x'), 'WL003',
    'extending an ACCEPTING offer');

-- retry, then confirmed
SELECT is(waitlist_booking_failed(wl_test.offer_of('ext', 'fan-1'), 'HTTP 503', true), 'ACCEPTING',
    'a retryable failure with attempts left asks again');
SELECT is((SELECT array_agg(payload->>'attempt' ORDER BY outbox_id) FROM waitlist.outbox
            WHERE event_type = 'booking_requested'), ARRAY['1', '2'],
    'the second request is attempt 2');
SELECT ok(waitlist_booking_confirmed(wl_test.offer_of('ext', 'fan-1'), 'R-1'), 'a confirmation returns true');
SELECT is((SELECT state || '/' || reservation_ref FROM waitlist.offer WHERE offer_id = wl_test.offer_of('ext', 'fan-1')),
    'ACCEPTED/R-1', 'the offer is ACCEPTED with the reservation');
SELECT is((SELECT state FROM waitlist.entry WHERE entry_id = wl_test.entry_of('ext', 'fan-1')), 'ACCEPTED',
    'its entry is ACCEPTED');
SELECT wl_test.no_change(format('SELECT waitlist_booking_confirmed(%s, %L)::text', wl_test.offer_of('ext', 'fan-1'), 'R-1'),
    'false', 'the same confirmation again');
SELECT wl_test.rejects(format('SELECT waitlist_booking_confirmed(%s, %L)', wl_test.offer_of('ext', 'fan-1'), 'R-2'),
    'WL016', 'a second reservation for an accepted offer');
SELECT wl_test.no_change(format('SELECT waitlist_booking_failed(%s, %L, false)', wl_test.offer_of('ext', 'fan-1'), 'x'),
    'ACCEPTED', 'a failure after the confirmation');
SELECT is((SELECT state || '/' || reservation_ref FROM waitlist_accept(wl_test.offer_of('ext', 'fan-1'), 'k2')),
    'ACCEPTED/R-1', 'a key that joined the saga answers with its outcome');

-- not retryable: FAILED, unit retired, fan back in place
SELECT is((SELECT state FROM waitlist_accept(wl_test.offer_of('ext', 'fan-2'), 'k1')), 'ACCEPTING',
    'fan-2 accepts');
SELECT is(waitlist_booking_failed(wl_test.offer_of('ext', 'fan-2'), 'HTTP 409', false), 'FAILED',
    'a failure that is not retryable fails the offer');
SELECT is((SELECT state FROM waitlist.entry WHERE entry_id = wl_test.entry_of('ext', 'fan-2')), 'WAITING',
    'the fan is back in line');
SELECT is((SELECT "position" FROM waitlist_status(wl_test.entry_of('ext', 'fan-2'))), 1::bigint,
    'at their place, ahead of those who joined after them');
SELECT is((SELECT free_units FROM waitlist.resource WHERE resource_id = 'ext'), 0::bigint,
    'the unit is retired');
SELECT wl_test.rejects(format('SELECT waitlist_booking_confirmed(%s, %L)', wl_test.offer_of('ext', 'fan-2'), 'R-2'),
    'WL015', 'a confirmation after the saga failed');

-- attempts exhausted: EXPIRED, unit to the next fan
SELECT lives_ok($$SELECT waitlist_release('ext', 1, 'ext-2')$$, 'another unit');
SELECT is((SELECT state FROM waitlist_accept(wl_test.offer_of('ext', 'fan-2'), 'k2')), 'ACCEPTING',
    'fan-2 accepts the new offer');
SELECT is(waitlist_booking_failed(wl_test.offer_of('ext', 'fan-2'), 'HTTP 503', true), 'ACCEPTING', 'attempt 2');
SELECT is(waitlist_booking_failed(wl_test.offer_of('ext', 'fan-2'), 'HTTP 503', true), 'EXPIRED',
    'a retryable failure of the last attempt ends the saga');
SELECT is((SELECT state FROM waitlist.offer WHERE offer_id = wl_test.offer_of('ext', 'fan-3')), 'OPEN',
    'and the unit goes to the next fan');

-- the deadline
SELECT is((SELECT state FROM waitlist_accept(wl_test.offer_of('ext', 'fan-3'), 'k3')), 'ACCEPTING', 'fan-3 accepts');
UPDATE waitlist.offer SET booking_deadline = now() - interval '1 second' WHERE offer_id = wl_test.offer_of('ext', 'fan-3');
SELECT is(waitlist_booking_failed(wl_test.offer_of('ext', 'fan-3'), 'HTTP 503', true), 'EXPIRED',
    'a retryable failure past the deadline ends the saga');
SELECT is((SELECT state FROM waitlist.offer WHERE offer_id = wl_test.offer_of('ext', 'fan-4')), 'OPEN',
    'the unit goes to fan-4');

-- bad input
SELECT wl_test.rejects('SELECT waitlist_booking_confirmed(NULL, ''R'')', '22004', 'a NULL offer_id');
SELECT wl_test.rejects(format('SELECT waitlist_booking_confirmed(%s, NULL)', wl_test.offer_of('ext', 'fan-4')),
    '22004', 'a NULL reservation_ref');
SELECT wl_test.rejects(format('SELECT waitlist_booking_confirmed(%s, %L)', wl_test.offer_of('ext', 'fan-4'), repeat('r', 201)),
    '22001', 'a reservation_ref over 200 bytes');
SELECT wl_test.rejects(format('SELECT waitlist_booking_confirmed(%s, %L)', wl_test.offer_of('ext', 'fan-4'), 'R'),
    '55000', 'a confirmation for an offer never accepted');
SELECT wl_test.rejects('SELECT waitlist_booking_failed(-1, ''x'', true)', '42704', 'a failure for no offer');

-- privileges: the booking duty reports, the app duty extends, neither the other
CREATE ROLE wl_test_booker;
CREATE ROLE wl_test_app;
SELECT waitlist_grant('wl_test_booker', 'booking');
SELECT waitlist_grant('wl_test_app', 'app');
SELECT is(wl_test.sqlstate_as('wl_test_booker',
          format('SELECT waitlist_booking_confirmed(%s, %L)', wl_test.offer_of('ext', 'fan-1'), 'R-1')),
    '00000', 'the booking duty may report a booking');
SELECT is(wl_test.sqlstate_as('wl_test_app',
          format('SELECT waitlist_booking_confirmed(%s, %L)', wl_test.offer_of('ext', 'fan-1'), 'R-1')),
    '42501', 'the app duty may not');
SELECT is(wl_test.sqlstate_as('wl_test_booker',
          format('SELECT waitlist_extend_offer(%s, %L, %L, %L)', wl_test.offer_of('ext', 'fan-4'), '1 minute', 'why', 'p1')),
    '42501', 'the booking duty may not extend an offer');
SELECT is(wl_test.sqlstate_as('wl_test_app',
          format('SELECT waitlist_extend_offer(%s, %L, %L, %L)', wl_test.offer_of('ext', 'fan-4'), '1 minute', 'why', 'p1')),
    '00000', 'the app duty may');

-- extensions
SELECT wl_test.rejects(format('SELECT waitlist_extend_offer(%s, %L, %L, %L)', wl_test.offer_of('ext', 'fan-4'),
                              '10 minutes', 'why', 'e1'), 'WL017', 'an extension past one offer_ttl in all');

SELECT * FROM finish();
ROLLBACK;
