-- pgTAP: the offer lifecycle API (accept, decline, sweep) and its contract
--
-- Every bad input raises its SQLSTATE and changes nothing (a digest of every
-- waitlist.* table is the same before and after):
--
--   42704  unknown offer, for accept and decline
--   22004  NULL offer id, NULL idempotency key, NULL max_offers
--   22023  empty idempotency key, max_offers 0 or negative
--   22001  idempotency key over 200 bytes
--   WL002  accept or decline past the deadline (swept or not)
--   WL003  accept of a declined or revoked offer, decline of an accepted one
--   42P13  booking function of the wrong signature, at create and at alter
--
-- and the booking function's outcomes at the API: success (ACCEPTED with
-- its reference), conflict (FAILED, the fan back at their place, no error),
-- transient error (raised, the offer still OPEN, a retry succeeds), with
-- the capacity of every resource accounted for after each:
--
--   units_released = free_units + OPEN + ACCEPTED + FAILED offers
--
-- Run with: pg_prove -d <db> test/pgtap/*.sql   (pgtap installed in <db>)
-- Leaves nothing behind: everything happens in one rolled back transaction.

\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off

BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION waitlist;
\ir helpers.psql

-- helpers for this file only (the shared ones, in the same schema wl_test,
-- come from helpers.psql); rolled back with everything else

-- the resources whose units are not all accounted for
CREATE FUNCTION wl_test.unbalanced() RETURNS text
LANGUAGE sql AS $$
    SELECT coalesce(string_agg(r.resource_id, ',' ORDER BY r.resource_id), '')
    FROM waitlist.resource r
    WHERE r.units_released <> r.free_units
        + (SELECT count(*) FROM waitlist.offer o
           WHERE o.resource_id = r.resource_id AND o.state IN ('OPEN', 'ACCEPTED', 'FAILED'))
$$;

CREATE FUNCTION wl_test.offer_state(id bigint) RETURNS text
LANGUAGE sql AS $$
    SELECT o.state || '/' || e.state
    FROM waitlist.offer o JOIN waitlist.entry e USING (resource_id, entry_id)
    WHERE o.offer_id = id
$$;

-- A booking function whose outcome the test chooses: 'book' returns a
-- reference, 'taken' raises unique_violation, 'sold out' raises WL004,
-- 'down' raises connection_failure.  Calls are counted with a sequence,
-- which a rolled back call still advances.
CREATE TABLE wl_test.mode (outcome text NOT NULL);
INSERT INTO wl_test.mode VALUES ('book');
CREATE SEQUENCE wl_test.calls;
CREATE FUNCTION wl_test.calls_made() RETURNS bigint
LANGUAGE sql AS $$ SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM wl_test.calls $$;
CREATE FUNCTION wl_test.book(p_resource text, p_fan text, p_offer bigint, p_key text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    outcome text := (SELECT m.outcome FROM wl_test.mode m);
BEGIN
    PERFORM nextval('wl_test.calls');
    CASE outcome
        WHEN 'book' THEN RETURN 'ref-' || p_offer;
        WHEN 'taken' THEN RAISE unique_violation USING MESSAGE = 'seat taken';
        WHEN 'sold out' THEN RAISE EXCEPTION 'sold out' USING ERRCODE = 'WL004';
        ELSE RAISE EXCEPTION 'booking service is down' USING ERRCODE = 'connection_failure';
    END CASE;
END;
$$;
-- one more wrong shape (helpers.psql has booking_int_offer and booking_returns_int)
CREATE FUNCTION wl_test.book_five_args(text, text, bigint, text, text) RETURNS text
LANGUAGE sql AS $$ SELECT 'ref' $$;

-- Fixture: "plain" (no booking function) with six fans and three offers;
-- "booked" (with the booking function) with five fans and three offers.
DO $$
BEGIN
    PERFORM waitlist_create_resource('plain', interval '10 minutes');
    PERFORM waitlist_join('plain', 'p' || i) FROM generate_series(1, 6) i;
    PERFORM waitlist_release('plain', 3, 'fixture-1');
    PERFORM waitlist_create_resource('booked', interval '10 minutes',
                                     booking_function => 'wl_test.book(text,text,bigint,text)');
    PERFORM waitlist_join('booked', 'b' || i) FROM generate_series(1, 5) i;
    PERFORM waitlist_release('booked', 3, 'fixture-1');
END
$$;

SELECT plan(117);

SELECT is((SELECT count(*) FROM waitlist.offer WHERE state = 'OPEN'), 6::bigint,
    'the fixture has six open offers');
SELECT is(wl_test.unbalanced(), '', 'the fixture is balanced');

------------------------------------------------------------------------------
-- Bad input to accept and decline
------------------------------------------------------------------------------

-- unknown offers: 42704
SELECT wl_test.rejects($$SELECT waitlist_accept(999999, 'k')$$, '42704',
    'waitlist_accept of an unknown offer');
SELECT wl_test.rejects($$SELECT waitlist_decline(999999)$$, '42704',
    'waitlist_decline of an unknown offer');
SELECT wl_test.rejects($$SELECT waitlist_accept(-1, 'k')$$, '42704',
    'waitlist_accept of a negative offer id');

-- NULL offer ids: 22004
SELECT wl_test.rejects($$SELECT waitlist_accept(NULL, 'k')$$, '22004',
    'waitlist_accept with a NULL offer id');
SELECT wl_test.rejects($$SELECT waitlist_decline(NULL)$$, '22004',
    'waitlist_decline with a NULL offer id');

-- idempotency keys: NULL 22004, empty 22023, over 200 bytes 22001
SELECT wl_test.rejects(format('SELECT waitlist_accept(%s, NULL)', wl_test.offer_of('plain', 'p1')),
    '22004', 'waitlist_accept with a NULL key');
SELECT wl_test.rejects(format('SELECT waitlist_accept(%s, %L)', wl_test.offer_of('plain', 'p1'), ''),
    '22023', 'waitlist_accept with an empty key');
SELECT wl_test.rejects(format('SELECT waitlist_accept(%s, %L)', wl_test.offer_of('plain', 'p1'), repeat('k', 201)),
    '22001', 'waitlist_accept with a 201-byte key');
-- the limit is in bytes: 101 two-byte characters are too many
SELECT wl_test.rejects(format('SELECT waitlist_accept(%s, %L)', wl_test.offer_of('plain', 'p1'), repeat('é', 101)),
    '22001', 'waitlist_accept with a 202-byte key of 101 characters');
-- the key is checked before the offer is looked up
SELECT wl_test.rejects($$SELECT waitlist_accept(999999, '')$$, '22023',
    'waitlist_accept of an unknown offer with an empty key');

-- a 200-byte key is fine
SELECT is((SELECT state FROM waitlist_accept(wl_test.offer_of('plain', 'p1'), repeat('k', 200))),
    'ACCEPTED', 'waitlist_accept with a 200-byte key accepts');
SELECT is((SELECT reservation_ref IS NULL FROM waitlist_accept(wl_test.offer_of('plain', 'p1'), repeat('k', 200))),
    true, 'without a booking function the reservation reference is NULL');
SELECT is(wl_test.offer_state(wl_test.offer_of('plain', 'p1')), 'ACCEPTED/ACCEPTED',
    'the offer and the entry are ACCEPTED');
SELECT is((SELECT count(*) FROM waitlist.outbox
           WHERE offer_id = wl_test.offer_of('plain', 'p1') AND event_type = 'offer_accepted'),
    1::bigint, 'one offer_accepted outbox row');
-- the same key again returns the same and changes nothing
SELECT wl_test.no_change(
    format('SELECT state FROM waitlist_accept(%s, %L)', wl_test.offer_of('plain', 'p1'), repeat('k', 200)),
    'ACCEPTED', 'a repeated accept with the same key');

-- an accepted offer cannot be declined: WL003
SELECT wl_test.rejects(format('SELECT waitlist_decline(%s)', wl_test.offer_of('plain', 'p1')),
    'WL003', 'waitlist_decline of an accepted offer');

-- a declined offer: repeated decline is false, accept is WL003
SELECT is(waitlist_decline(wl_test.offer_of('plain', 'p2')), true, 'waitlist_decline declines');
SELECT is(wl_test.offer_state(wl_test.offer_of('plain', 'p2')), 'DECLINED/DECLINED',
    'the offer and the entry are DECLINED');
SELECT isnt(wl_test.offer_of('plain', 'p4'), NULL, 'the unit went to the next in line');
SELECT wl_test.no_change(format('SELECT waitlist_decline(%s)', wl_test.offer_of('plain', 'p2')),
    'false', 'a repeated decline');
SELECT wl_test.rejects(format('SELECT waitlist_accept(%s, %L)', wl_test.offer_of('plain', 'p2'), 'p2-key'),
    'WL003', 'waitlist_accept of a declined offer');

-- a revoked offer (the fan left): WL003 for accept and decline
SELECT is(waitlist_leave(wl_test.entry_of('plain', 'p3')), true, 'leaving while offered');
SELECT is(wl_test.offer_state(wl_test.offer_of('plain', 'p3')), 'REVOKED/CANCELLED',
    'the offer is REVOKED and the entry CANCELLED');
SELECT wl_test.rejects(format('SELECT waitlist_accept(%s, %L)', wl_test.offer_of('plain', 'p3'), 'p3-key'),
    'WL003', 'waitlist_accept of a revoked offer');
SELECT wl_test.rejects(format('SELECT waitlist_decline(%s)', wl_test.offer_of('plain', 'p3')),
    'WL003', 'waitlist_decline of a revoked offer');

-- past the deadline, before any sweep: WL002, and the offer stays OPEN
UPDATE waitlist.offer SET expires_at = now() - interval '1 second'
WHERE offer_id = wl_test.offer_of('plain', 'p4');
SELECT wl_test.rejects(format('SELECT waitlist_accept(%s, %L)', wl_test.offer_of('plain', 'p4'), 'p4-key'),
    'WL002', 'waitlist_accept past the deadline');
SELECT wl_test.rejects(format('SELECT waitlist_decline(%s)', wl_test.offer_of('plain', 'p4')),
    'WL002', 'waitlist_decline past the deadline');
SELECT is(wl_test.offer_state(wl_test.offer_of('plain', 'p4')), 'OPEN/OFFERED',
    'an offer past its deadline stays OPEN until the sweep');

-- sweep: max_offers NULL 22004, 0 or negative 22023
SELECT wl_test.rejects($$SELECT waitlist_sweep(NULL)$$, '22004', 'waitlist_sweep with NULL max_offers');
SELECT wl_test.rejects($$SELECT waitlist_sweep(0)$$, '22023', 'waitlist_sweep with max_offers 0');
SELECT wl_test.rejects($$SELECT waitlist_sweep(-5)$$, '22023', 'waitlist_sweep with negative max_offers');

-- the sweep expires it; an expired offer is WL002 for accept and decline
SELECT is(waitlist_sweep(), 1, 'waitlist_sweep expires the offer past its deadline');
SELECT is(wl_test.offer_state(wl_test.offer_of('plain', 'p4')), 'EXPIRED/EXPIRED',
    'the offer and the entry are EXPIRED');
SELECT is((SELECT count(*) FROM waitlist.outbox
           WHERE offer_id = wl_test.offer_of('plain', 'p4') AND event_type = 'offer_expired'),
    1::bigint, 'one offer_expired outbox row');
SELECT wl_test.no_change($$SELECT waitlist_sweep()$$, '0', 'a second sweep');
SELECT wl_test.rejects(format('SELECT waitlist_decline(%s)', wl_test.offer_of('plain', 'p4')),
    'WL002', 'waitlist_decline of an expired offer');
SELECT wl_test.rejects(format('SELECT waitlist_accept(%s, %L)', wl_test.offer_of('plain', 'p4'), 'p4-key'),
    'WL002', 'waitlist_accept of an expired offer');
SELECT is(wl_test.unbalanced(), '', 'every unit is accounted for after accept, decline, leave and expiry');

------------------------------------------------------------------------------
-- Booking functions of the wrong signature: 42P13 at create and at alter
------------------------------------------------------------------------------

SELECT wl_test.rejects(
    $$SELECT waitlist_create_resource('wrong', booking_function => 'wl_test.booking_int_offer(text,text,integer,text)')$$,
    '42P13', 'waitlist_create_resource with an integer offer id parameter');
SELECT wl_test.rejects(
    $$SELECT waitlist_create_resource('wrong', booking_function => 'wl_test.booking_returns_int(text,text,bigint,text)')$$,
    '42P13', 'waitlist_create_resource with a booking function returning integer');
SELECT wl_test.rejects(
    $$SELECT waitlist_alter_resource('booked', booking_function => 'wl_test.book_five_args(text,text,bigint,text,text)')$$,
    '42P13', 'waitlist_alter_resource with a five-argument booking function');
SELECT wl_test.rejects(
    $$SELECT waitlist_alter_resource('booked', booking_function => 'wl_test.booking_returns_int(text,text,bigint,text)')$$,
    '42P13', 'waitlist_alter_resource with a booking function returning integer');
SELECT is((SELECT booking_function::text FROM waitlist.resource WHERE resource_id = 'booked'),
    'wl_test.book(text,text,bigint,text)', 'the booking function is still the one set at create');

------------------------------------------------------------------------------
-- The booking function's outcomes
------------------------------------------------------------------------------

-- success: ACCEPTED with the reference, stored on the offer and the request
SELECT results_eq(
    format('SELECT state, reservation_ref FROM waitlist_accept(%s, %L)', wl_test.offer_of('booked', 'b1'), 'b1-key'),
    format($$VALUES ('ACCEPTED'::text, 'ref-%s'::text)$$, wl_test.offer_of('booked', 'b1')),
    'a booking that succeeds: ACCEPTED with its reference');
SELECT is(wl_test.calls_made(), 1::bigint, 'the booking function was called once');
SELECT is(wl_test.offer_state(wl_test.offer_of('booked', 'b1')), 'ACCEPTED/ACCEPTED',
    'the offer and the entry are ACCEPTED');
SELECT is((SELECT reservation_ref FROM waitlist.offer WHERE offer_id = wl_test.offer_of('booked', 'b1')),
    'ref-' || wl_test.offer_of('booked', 'b1'), 'the offer keeps the reference');
SELECT is((SELECT payload->>'reservation_ref' FROM waitlist.outbox
           WHERE offer_id = wl_test.offer_of('booked', 'b1') AND event_type = 'offer_accepted'),
    'ref-' || wl_test.offer_of('booked', 'b1'), 'the offer_accepted row carries the reference');
-- the same key: the same answer, no second call
SELECT wl_test.no_change(
    format('SELECT reservation_ref FROM waitlist_accept(%s, %L)', wl_test.offer_of('booked', 'b1'), 'b1-key'),
    'ref-' || wl_test.offer_of('booked', 'b1'), 'a repeated accept with the same key');
-- another key: the reservation the offer has, no second call
SELECT is((SELECT reservation_ref FROM waitlist_accept(wl_test.offer_of('booked', 'b1'), 'b1-other')),
    'ref-' || wl_test.offer_of('booked', 'b1'), 'an accept with another key returns the same reservation');
SELECT is(wl_test.calls_made(), 1::bigint, 'the booking function was still called only once');
SELECT is((SELECT count(*) FROM waitlist.transition
           WHERE entity = 'offer' AND entity_id = wl_test.offer_of('booked', 'b1') AND to_state = 'ACCEPTED'),
    1::bigint, 'the offer was accepted once');

-- conflict (unique_violation): FAILED without an error; the unit is retired
-- and the fan is back in line at their old place (first: b4 and b5 joined later)
UPDATE wl_test.mode SET outcome = 'taken';
SELECT lives_ok(format('SELECT waitlist_accept(%s, %L)', wl_test.offer_of('booked', 'b2'), 'b2-key'),
    'a booking conflict is no error');
SELECT results_eq(
    format('SELECT state, reservation_ref FROM waitlist_accept(%s, %L)', wl_test.offer_of('booked', 'b2'), 'b2-key'),
    $$VALUES ('FAILED'::text, NULL::text)$$,
    'a booking conflict (23505): FAILED without a reference');
SELECT is(wl_test.calls_made(), 2::bigint, 'the booking function was called once more, and not for the repeat');
SELECT is(wl_test.offer_state(wl_test.offer_of('booked', 'b2')), 'FAILED/WAITING',
    'the offer is FAILED and the entry WAITING again');
SELECT is((SELECT "position" FROM waitlist_status(wl_test.entry_of('booked', 'b2'))), 1::bigint,
    'the fan is first in line again');
SELECT is((SELECT payload->>'detail' FROM waitlist.outbox
           WHERE offer_id = wl_test.offer_of('booked', 'b2') AND event_type = 'offer_failed'),
    'seat taken', 'the offer_failed row carries the booking system''s message');
SELECT wl_test.rejects(format('SELECT waitlist_accept(%s, %L)', wl_test.offer_of('booked', 'b2'), 'b2-other'),
    'WL003', 'waitlist_accept of a FAILED offer with another key');
SELECT is(wl_test.unbalanced(), '', 'every unit is accounted for after a conflict');

-- conflict (WL004): the same
UPDATE wl_test.mode SET outcome = 'sold out';
SELECT results_eq(
    format('SELECT state, reservation_ref FROM waitlist_accept(%s, %L)', wl_test.offer_of('booked', 'b3'), 'b3-key'),
    $$VALUES ('FAILED'::text, NULL::text)$$,
    'a booking conflict (WL004): FAILED without a reference');
SELECT is(wl_test.offer_state(wl_test.offer_of('booked', 'b3')), 'FAILED/WAITING',
    'the offer is FAILED and the entry WAITING again');
SELECT is((SELECT "position" FROM waitlist_status(wl_test.entry_of('booked', 'b3'))), 2::bigint,
    'the fan is second in line, behind the earlier fan and ahead of the later ones');
SELECT is((SELECT free_units FROM waitlist.resource WHERE resource_id = 'booked'), 0::bigint,
    'a retired unit does not come back');
SELECT is(wl_test.unbalanced(), '', 'every unit is accounted for after a second conflict');

-- a transient error: raised, nothing changes, the offer stays OPEN; once
-- the booking system is back, the same key books
SELECT is(waitlist_release('booked', 1, 'more-1'), true, 'one more unit is released');
UPDATE wl_test.mode SET outcome = 'down';
SELECT is(wl_test.offer_state(wl_test.offer_of('booked', 'b2')), 'OPEN/OFFERED',
    'the first in line has a new offer');
SELECT wl_test.rejects(format('SELECT waitlist_accept(%s, %L)', wl_test.offer_of('booked', 'b2'), 'b2-retry'),
    '08006', 'a transient booking error');
SELECT is(wl_test.offer_state(wl_test.offer_of('booked', 'b2')), 'OPEN/OFFERED',
    'after a transient error the offer is still OPEN');
SELECT is(wl_test.calls_made(), 4::bigint, 'the booking function was called');
UPDATE wl_test.mode SET outcome = 'book';
SELECT results_eq(
    format('SELECT state, reservation_ref FROM waitlist_accept(%s, %L)', wl_test.offer_of('booked', 'b2'), 'b2-retry'),
    format($$VALUES ('ACCEPTED'::text, 'ref-%s'::text)$$, wl_test.offer_of('booked', 'b2')),
    'the retry with the same key books');
SELECT is(wl_test.offer_state(wl_test.offer_of('booked', 'b2')), 'ACCEPTED/ACCEPTED',
    'the offer and the entry are ACCEPTED');
SELECT is(wl_test.unbalanced(), '', 'every unit is accounted for after the retry');

-- no booking function any more: ACCEPTED without a reference, the outbox
-- asks for the booking (b3, first in line now, gets the next unit)
SELECT lives_ok($$SELECT waitlist_alter_resource('booked', clear_booking_function => true)$$,
    'waitlist_alter_resource clears the booking function');
SELECT is((SELECT booking_function FROM waitlist.resource WHERE resource_id = 'booked'), NULL,
    'clear_booking_function removes it');
SELECT is(waitlist_release('booked', 1, 'more-2'), true, 'another unit is released');
SELECT results_eq(
    format('SELECT state, reservation_ref FROM waitlist_accept(%s, %L)', wl_test.offer_of('booked', 'b3'), 'b3-again'),
    $$VALUES ('ACCEPTED'::text, NULL::text)$$,
    'without a booking function: ACCEPTED without a reference');
SELECT is((SELECT payload->>'detail' FROM waitlist.outbox
           WHERE offer_id = wl_test.offer_of('booked', 'b3') AND event_type = 'offer_accepted'),
    'booking requested', 'the offer_accepted row asks for the booking');
SELECT is(wl_test.calls_made(), 5::bigint, 'the old booking function was not called');

------------------------------------------------------------------------------
-- In the end
------------------------------------------------------------------------------

SELECT is(wl_test.unbalanced(), '', 'every unit released is free, open, accepted or retired');
SELECT is((SELECT count(*) FROM waitlist.offer o
           WHERE o.state IS DISTINCT FROM (SELECT t.to_state FROM waitlist.transition t
                                           WHERE t.resource_id = o.resource_id AND t.entity = 'offer'
                                             AND t.entity_id = o.offer_id
                                           ORDER BY t.transition_id DESC LIMIT 1)),
    0::bigint, 'every offer''s last transition is its state');
SELECT is((SELECT count(*) FROM (SELECT entity_id FROM waitlist.transition
                                 WHERE entity = 'offer' AND from_state = 'OPEN'
                                 GROUP BY resource_id, entity_id HAVING count(*) > 1) twice),
    0::bigint, 'no offer was decided twice');
SELECT set_eq(
    $$SELECT o.state, b.event_type FROM waitlist.offer o
      JOIN waitlist.outbox b ON b.resource_id = o.resource_id AND b.offer_id = o.offer_id
      WHERE b.event_type <> 'offer_created'$$,
    $$VALUES ('ACCEPTED', 'offer_accepted'), ('DECLINED', 'offer_declined'), ('EXPIRED', 'offer_expired'),
             ('REVOKED', 'offer_revoked'), ('FAILED', 'offer_failed')$$,
    'each outcome has its outbox event type');
SELECT is((SELECT count(*) FROM waitlist.offer o
           WHERE o.state <> 'OPEN'
             AND (SELECT count(*) FROM waitlist.outbox b
                  WHERE b.resource_id = o.resource_id AND b.offer_id = o.offer_id
                    AND b.event_type <> 'offer_created') <> 1),
    0::bigint, 'every decided offer has exactly one outcome row in the outbox');

SELECT * FROM finish();
ROLLBACK;
