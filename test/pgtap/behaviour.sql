-- pgTAP: behaviour of the waitlist API, seen through the API and the tables.
--
-- Join idempotency, positions in line with priorities and after leaves,
-- release and promote counts, joins that are offered at once because units
-- are free, and leaving with an open offer (revoked, passed to the next
-- waiter).
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

-- the line as waitlist_status() reports it: "user=position, ..." in order
CREATE FUNCTION wl_test.line(r text) RETURNS text
LANGUAGE sql AS $$
    SELECT coalesce(string_agg(e.user_id || '=' || s.position, ', ' ORDER BY s.position, e.user_id), '')
      FROM waitlist.entry e, LATERAL waitlist_status(e.entry_id) s
     WHERE e.resource_id = r AND s.state = 'WAITING'
$$;

-- users holding an open offer, in offer order
CREATE FUNCTION wl_test.offered(r text) RETURNS text
LANGUAGE sql AS $$
    SELECT coalesce(string_agg(e.user_id, ', ' ORDER BY o.offer_id), '')
      FROM waitlist.offer o
      JOIN waitlist.entry e ON e.resource_id = o.resource_id AND e.entry_id = o.entry_id
     WHERE o.resource_id = r AND o.state = 'OPEN'
$$;

-- join, then report the state of the entry (in a statement of its own: a
-- STABLE function like waitlist_status sees the snapshot of its statement)
CREATE FUNCTION wl_test.join_state(r text, u text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    id bigint := waitlist_join(r, u);
    st text;
BEGIN
    SELECT s.state INTO st FROM waitlist_status(id) s;
    RETURN st;
END;
$$;

CREATE FUNCTION wl_test.free_units(r text) RETURNS bigint
LANGUAGE sql AS $$
    SELECT free_units FROM waitlist.resource WHERE resource_id = r
$$;

SELECT plan(90);

------------------------------------------------------------------------------
-- Join is idempotent while the entry is active
------------------------------------------------------------------------------

DO $$ BEGIN PERFORM waitlist_create_resource('show', interval '10 minutes'); END $$;

SELECT waitlist_join('show', 'alice') AS alice_entry \gset
SELECT is(:alice_entry::bigint, wl_test.entry_of('show', 'alice'),
    'waitlist_join returns the id of the new entry');
SELECT is(waitlist_join('show', 'alice'), wl_test.entry_of('show', 'alice'),
    'a double tap returns the same entry id');
SELECT is(waitlist_join('show', 'alice', 9), wl_test.entry_of('show', 'alice'),
    'a tap with another priority returns the same entry id too');
SELECT is((SELECT count(*)::int FROM waitlist.entry WHERE resource_id = 'show' AND user_id = 'alice'), 1,
    'the taps made one entry');
SELECT is((SELECT priority FROM waitlist.entry WHERE entry_id = wl_test.entry_of('show', 'alice')), 0,
    '... which keeps the priority of the first tap');
SELECT results_eq(
    $$SELECT from_state, to_state, reason, rule_version, actor::text FROM waitlist.transition
       WHERE entity = 'entry' AND entity_id = wl_test.entry_of('show', 'alice')$$,
    $$VALUES (NULL::text, 'WAITING'::text, 'joined'::text, 'priority-fifo/1'::text, current_user::text)$$,
    'the taps wrote one transition: NULL -> WAITING, joined, by the caller');
SELECT row_eq($$SELECT state, "position", offer_id, offer_expires_at FROM waitlist_status(wl_test.entry_of('show', 'alice'))$$,
    ROW('WAITING'::text, 1::bigint, NULL::bigint, NULL::timestamptz),
    'a lone waiter is WAITING at position 1 with no offer');

-- a join reads the resource row but never writes it while no units are free
SELECT ctid AS show_ctid FROM waitlist.resource WHERE resource_id = 'show' \gset
SELECT ok(waitlist_join('show', 'bob') IS NOT NULL, 'bob joins');
SELECT is((SELECT ctid FROM waitlist.resource WHERE resource_id = 'show'), :'show_ctid'::tid,
    '... without rewriting the resource row');

SELECT ok(waitlist_leave(wl_test.entry_of('show', 'alice')), 'alice leaves');
SELECT isnt(waitlist_join('show', 'alice'), (SELECT min(entry_id) FROM waitlist.entry WHERE resource_id = 'show' AND user_id = 'alice'),
    'joining again after leaving makes a new entry');
SELECT results_eq(
    $$SELECT state FROM waitlist.entry WHERE resource_id = 'show' AND user_id = 'alice' ORDER BY entry_id$$,
    $$VALUES ('CANCELLED'::text), ('WAITING'::text)$$,
    '... beside the cancelled one');
SELECT is(wl_test.line('show'), 'bob=1, alice=2', '... at the back of the line');

------------------------------------------------------------------------------
-- Positions: priority DESC, then first come first served; renumbered after
-- leaves
------------------------------------------------------------------------------

DO $$
BEGIN
    PERFORM waitlist_create_resource('line');
    PERFORM waitlist_join('line', 'u1');
    PERFORM waitlist_join('line', 'u2', 0);
    PERFORM waitlist_join('line', 'u3', 5);
    PERFORM waitlist_join('line', 'u4');
    PERFORM waitlist_join('line', 'u5', 5);
    PERFORM waitlist_join('line', 'u6', -1);
END
$$;

SELECT is(wl_test.line('line'), 'u3=1, u5=2, u1=3, u2=4, u4=5, u6=6',
    'higher priority first, then in order of joining; negative priority last');
SELECT is(wl_test.line('show'), 'bob=1, alice=2', 'another resource''s line is not affected');

SELECT ok(waitlist_leave(wl_test.entry_of('line', 'u5')), 'leave from the middle of the line returns true');
SELECT is(wl_test.line('line'), 'u3=1, u1=2, u2=3, u4=4, u6=5', 'the ones behind move up');
SELECT row_eq($$SELECT state, "position", offer_id, offer_expires_at FROM waitlist_status(wl_test.entry_of('line', 'u5'))$$,
    ROW('CANCELLED'::text, NULL::bigint, NULL::bigint, NULL::timestamptz),
    'the entry that left is CANCELLED with no position');
SELECT is(waitlist_leave(wl_test.entry_of('line', 'u5')), false, 'leaving again returns false');

SELECT ok(waitlist_leave(wl_test.entry_of('line', 'u3')), 'the head of the line leaves');
SELECT is(wl_test.line('line'), 'u1=1, u2=2, u4=3, u6=4', 'everyone moves up');

SELECT ok(waitlist_join('line', 'u7', 3) IS NOT NULL, 'a late joiner with priority 3');
SELECT ok(waitlist_join('line', 'u8') IS NOT NULL, 'a late joiner with priority 0');
SELECT is(wl_test.line('line'), 'u7=1, u1=2, u2=3, u4=4, u8=5, u6=6',
    'the late priority joiner goes ahead, the late plain joiner behind its peers');

------------------------------------------------------------------------------
-- Release and promote
------------------------------------------------------------------------------

SELECT is(waitlist_release('line', 2, 'line-ev-1'), true, 'releasing 2 units returns true');
SELECT is(wl_test.offered('line'), 'u7, u1', 'the first two in line get offers, in line order');
SELECT is(wl_test.free_units('line'), 0::bigint, 'no units stay free');
SELECT is(wl_test.line('line'), 'u2=1, u4=2, u8=3, u6=4', 'the rest of the line moves up');
SELECT row_eq(
    $$SELECT s.state, s.position, s.offer_id, s.offer_expires_at
        FROM waitlist_status(wl_test.entry_of('line', 'u7')) s$$,
    (SELECT ROW('OFFERED'::text, NULL::bigint, o.offer_id, now() + interval '15 minutes')
       FROM waitlist.offer o WHERE o.entry_id = wl_test.entry_of('line', 'u7')),
    'an offered entry is OFFERED, without a position, with its offer and a deadline of now() + offer_ttl');
SELECT is(
    (SELECT count(*)::int FROM waitlist.outbox
      WHERE resource_id = 'line' AND event_type = 'offer_created'),
    2, 'one offer_created outbox row per offer');
SELECT is(
    (SELECT payload->>'user_id' FROM waitlist.outbox
      WHERE resource_id = 'line' AND event_type = 'offer_created'
        AND entry_id = wl_test.entry_of('line', 'u1')),
    'u1', 'the outbox row names the user');
SELECT is(
    (SELECT string_agg(entity || ':' || coalesce(from_state, '') || '->' || to_state, ', ' ORDER BY transition_id)
       FROM waitlist.transition WHERE resource_id = 'line' AND reason = 'promoted'),
    'entry:WAITING->OFFERED, entry:WAITING->OFFERED, offer:->OPEN, offer:->OPEN',
    'the promotion is in the audit trail');
SELECT is(
    (SELECT units_released FROM waitlist.resource WHERE resource_id = 'line'), 2::bigint,
    'units_released counts the released units');

SELECT is(waitlist_promote('line'), 0, 'promote with no free units makes no offer');
SELECT is(waitlist_release('line', 10, 'line-ev-2'), true, 'releasing 10 units for 4 waiters');
SELECT is(wl_test.offered('line'), 'u7, u1, u2, u4, u8, u6', 'every waiter gets an offer');
SELECT is(wl_test.free_units('line'), 6::bigint, 'the other 6 units stay free');
SELECT is(waitlist_promote('line'), 0, 'promote with free units and no waiters makes no offer');
SELECT is(wl_test.free_units('line'), 6::bigint, '... and keeps the units');
SELECT is(waitlist_release('line', 1, 'line-ev-2'), false, 'the second event again returns false');
SELECT is(wl_test.free_units('line'), 6::bigint, '... and adds nothing');

SELECT is(waitlist_release('show', 1, 'line-ev-2'), true,
    'the same event id on another resource counts there');
SELECT is(wl_test.offered('show'), 'bob', '... and offers there');

-- waitlist_promote on its own: free units while people wait only arise by hand
DO $$
BEGIN
    PERFORM waitlist_create_resource('manual');
    PERFORM waitlist_join('manual', 'm' || i) FROM generate_series(1, 4) i;
    UPDATE waitlist.resource SET free_units = 3 WHERE resource_id = 'manual';
END
$$;
SELECT is(waitlist_promote('manual', 0), 0, 'promote with max_offers 0 makes no offer');
SELECT is(waitlist_promote('manual', 1), 1, 'promote with max_offers 1 makes one offer');
SELECT is(wl_test.offered('manual'), 'm1', '... to the head of the line');
SELECT is(wl_test.free_units('manual'), 2::bigint, '... and takes one unit');
SELECT is(waitlist_promote('manual', 5), 2, 'promote with max_offers 5 is limited by the 2 free units');
SELECT is(waitlist_promote('manual'), 0, 'promote with nothing free makes no offer');
SELECT is(wl_test.offered('manual'), 'm1, m2, m3', 'three offers in line order');
SELECT is(wl_test.line('manual'), 'm4=1', 'one left waiting');

------------------------------------------------------------------------------
-- A join to a resource with free units is offered right away
------------------------------------------------------------------------------

DO $$ BEGIN PERFORM waitlist_create_resource('early', interval '5 minutes'); END $$;
SELECT is(waitlist_release('early', 2, 'early-ev-1'), true, 'releasing 2 units with nobody waiting');
SELECT is(wl_test.free_units('early'), 2::bigint, '... leaves them free');
SELECT is((SELECT count(*)::int FROM waitlist.offer WHERE resource_id = 'early'), 0, '... with no offer');

SELECT is(wl_test.join_state('early', 'x'), 'OFFERED',
    'the first joiner is offered at once');
SELECT is(wl_test.free_units('early'), 1::bigint, '... taking a unit');
SELECT is(wl_test.join_state('early', 'y'), 'OFFERED',
    'the second joiner is offered at once');
SELECT is(wl_test.free_units('early'), 0::bigint, '... taking the last unit');
SELECT is(wl_test.join_state('early', 'z'), 'WAITING',
    'the third joiner waits');
SELECT is(wl_test.line('early'), 'z=1', '... at position 1');
SELECT is(
    (SELECT expires_at - created_at FROM waitlist.offer WHERE entry_id = wl_test.entry_of('early', 'x')),
    interval '5 minutes', 'the offer lasts the resource''s offer_ttl');

------------------------------------------------------------------------------
-- Leaving while offered revokes the offer; the next waiter gets the unit
------------------------------------------------------------------------------

CREATE TEMP TABLE x_offer ON COMMIT DROP AS
    SELECT offer_id FROM waitlist.offer WHERE entry_id = wl_test.entry_of('early', 'x');

SELECT is(waitlist_leave(wl_test.entry_of('early', 'x')), true, 'an offered fan leaves');
SELECT row_eq($$SELECT state, "position", offer_id, offer_expires_at FROM waitlist_status(wl_test.entry_of('early', 'x'))$$,
    ROW('CANCELLED'::text, NULL::bigint, NULL::bigint, NULL::timestamptz),
    'the entry is CANCELLED and shows no open offer');
SELECT is((SELECT state FROM waitlist.offer WHERE offer_id = (SELECT offer_id FROM x_offer)), 'REVOKED',
    'its offer is REVOKED');
SELECT ok((SELECT decided_at IS NOT NULL FROM waitlist.offer WHERE offer_id = (SELECT offer_id FROM x_offer)),
    '... with decided_at set');
SELECT is((SELECT state FROM waitlist_status(wl_test.entry_of('early', 'z'))), 'OFFERED',
    'the next waiter gets an offer');
SELECT is(wl_test.offered('early'), 'y, z', 'open offers: y and now z');
SELECT is(wl_test.free_units('early'), 0::bigint, 'the unit went straight to z');
SELECT is(
    (SELECT count(*)::int FROM waitlist.outbox
      WHERE event_type = 'offer_revoked' AND offer_id = (SELECT offer_id FROM x_offer)),
    1, 'an offer_revoked outbox row tells x');
SELECT is(
    (SELECT count(*)::int FROM waitlist.outbox
      WHERE event_type = 'offer_created' AND entry_id = wl_test.entry_of('early', 'z')),
    1, 'an offer_created outbox row tells z');
SELECT is(
    (SELECT string_agg(coalesce(from_state, '') || '->' || to_state || ' (' || reason || ')', ', ' ORDER BY transition_id)
       FROM waitlist.transition WHERE entity = 'entry' AND entity_id = wl_test.entry_of('early', 'x')),
    '->WAITING (joined), WAITING->OFFERED (promoted), OFFERED->CANCELLED (left while offered)',
    'the audit trail of x''s entry');
SELECT is(
    (SELECT string_agg(coalesce(from_state, '') || '->' || to_state || ' (' || reason || ')', ', ' ORDER BY transition_id)
       FROM waitlist.transition WHERE entity = 'offer' AND entity_id = (SELECT offer_id FROM x_offer)),
    '->OPEN (promoted), OPEN->REVOKED (left while offered)',
    'the audit trail of x''s offer');
SELECT is(waitlist_leave(wl_test.entry_of('early', 'x')), false, 'leaving again returns false');
SELECT is(wl_test.offered('early'), 'y, z', '... and changes no offer');

SELECT is(waitlist_leave(wl_test.entry_of('early', 'y')), true, 'another offered fan leaves, nobody waiting');
SELECT is(wl_test.offered('early'), 'z', 'only z holds an offer');
SELECT is(wl_test.free_units('early'), 1::bigint, 'the unit is free again');
SELECT is(wl_test.join_state('early', 'w'), 'OFFERED',
    'the next joiner gets it at once');
SELECT is(wl_test.free_units('early'), 0::bigint, '... and nothing is free');

------------------------------------------------------------------------------
-- max_waiting counts waiting entries only; altering settings
------------------------------------------------------------------------------

DO $$ BEGIN PERFORM waitlist_create_resource('capped', interval '5 minutes', 1); END $$;
DO $$ BEGIN PERFORM waitlist_release('capped', 1, 'capped-ev-1'); END $$;
SELECT is(wl_test.join_state('capped', 'a'), 'OFFERED',
    'a joiner on a capped list is offered a free unit');
SELECT is(wl_test.join_state('capped', 'b'), 'WAITING',
    'an offered entry does not count against max_waiting');
SELECT throws_ok($$SELECT waitlist_join('capped', 'c')$$, 'WL001', NULL,
    'one waiting entry fills a list capped at 1');
SELECT lives_ok($$SELECT waitlist_alter_resource('capped', max_waiting => 2)$$, 'raising the cap');
SELECT is(wl_test.join_state('capped', 'c'), 'WAITING',
    '... lets the next one in');
SELECT lives_ok($$SELECT waitlist_alter_resource('capped', clear_max_waiting => true)$$, 'clearing the cap');
SELECT is(wl_test.join_state('capped', 'd'), 'WAITING',
    '... lets anyone in');
SELECT is((SELECT max_waiting FROM waitlist.resource WHERE resource_id = 'capped'), NULL::bigint,
    'max_waiting is NULL after clearing');

SELECT lives_ok($$SELECT waitlist_alter_resource('capped', interval '1 hour')$$, 'changing offer_ttl');
DO $$ BEGIN PERFORM waitlist_release('capped', 1, 'capped-ev-2'); END $$;
SELECT is(
    (SELECT expires_at - created_at FROM waitlist.offer WHERE entry_id = wl_test.entry_of('capped', 'b')),
    interval '1 hour', 'new offers use the new offer_ttl');
SELECT is(
    (SELECT expires_at - created_at FROM waitlist.offer WHERE entry_id = wl_test.entry_of('capped', 'a')),
    interval '5 minutes', 'open offers keep the deadline they were made with');

SELECT * FROM finish();
ROLLBACK;
