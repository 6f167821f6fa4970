-- pgTAP: aged priority lanes, rule versions and confirmed places: the
-- contract of waitlist_confirm() and the new settings, and their bad input.
--
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
SET LOCAL waitlist.promotion_mode = inline;

SELECT plan(30);

SELECT has_function('waitlist_confirm', ARRAY['bigint'], 'waitlist_confirm(bigint) exists');
SELECT function_returns('waitlist_confirm', ARRAY['bigint'], 'boolean', 'waitlist_confirm returns boolean');
SELECT col_type_is('waitlist', 'entry', 'rank_key', 'double precision', 'waitlist.entry.rank_key is double precision');
SELECT col_type_is('waitlist', 'resource', 'aging_interval', 'interval', 'waitlist.resource.aging_interval is interval');
SELECT col_type_is('waitlist', 'resource', 'rule_version', 'text', 'waitlist.resource.rule_version is text');
SELECT col_default_is('waitlist', 'resource', 'rule_version', 'priority-fifo/1', 'a resource starts at rule version priority-fifo/1');

-- settings
SELECT wl_test.rejects($$SELECT waitlist_create_resource('x', aging_interval => '0')$$, '22023', 'an aging_interval of 0');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('x', aging_interval => '13 months')$$, '22023', 'an aging_interval over 1 year');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('x', confirm_within => '-1 hour')$$, '22023', 'a negative confirm_within');
SELECT wl_test.rejects($$SELECT waitlist_create_resource('x', confirm_place_from => 'lunch')$$, '22023', 'an unknown confirm_place_from');

DO $$
BEGIN
    PERFORM waitlist_create_resource('fo', interval '10 minutes', confirm_within => '1 hour');
    PERFORM waitlist_join('fo', 'fan-' || i) FROM generate_series(1, 3) i;
END
$$;
SELECT is((SELECT state FROM waitlist_status(wl_test.entry_of('fo', 'fan-1'))), 'PENDING',
    'a join on a resource with confirm_within holds a PENDING place');
SELECT is((SELECT "position" FROM waitlist_status(wl_test.entry_of('fo', 'fan-1'))), NULL,
    'a PENDING place has no position yet');
SELECT ok(waitlist_confirm(wl_test.entry_of('fo', 'fan-1')), 'waitlist_confirm returns true for a PENDING place');
SELECT wl_test.no_change(format('SELECT waitlist_confirm(%s)::text', wl_test.entry_of('fo', 'fan-1')),
    'false', 'confirming a confirmed place');
SELECT wl_test.rejects('SELECT waitlist_confirm(NULL)', '22004', 'a NULL entry_id');
SELECT wl_test.rejects('SELECT waitlist_confirm(-7)', '42704', 'an unknown entry');
UPDATE waitlist.entry SET confirm_by = now() - interval '1 second' WHERE entry_id = wl_test.entry_of('fo', 'fan-2');
SELECT is(waitlist_sweep(10), 0, 'the sweep counts no offer for the places it lets go');
SELECT is((SELECT state FROM waitlist.entry WHERE entry_id = wl_test.entry_of('fo', 'fan-2')), 'EXPIRED',
    'an unconfirmed place past confirm_by is EXPIRED');
SELECT wl_test.rejects(format('SELECT waitlist_confirm(%s)', wl_test.entry_of('fo', 'fan-2')), '55000',
    'confirming a place let go');

-- the app duty confirms
CREATE ROLE wl_test_app;
SELECT waitlist_grant('wl_test_app', 'app');
SELECT is(wl_test.sqlstate_as('wl_test_app', format('SELECT waitlist_confirm(%s)', wl_test.entry_of('fo', 'fan-3'))),
    '00000', 'the app duty may confirm a place');
SELECT is((SELECT state FROM waitlist.entry WHERE entry_id = wl_test.entry_of('fo', 'fan-3')), 'WAITING',
    'and the place is WAITING');
SELECT is((SELECT reason FROM waitlist.transition WHERE entity = 'entry' AND entity_id = wl_test.entry_of('fo', 'fan-3')
            ORDER BY transition_id DESC LIMIT 1), 'confirmed', 'audited as confirmed');

SELECT * FROM finish();
ROLLBACK;
