-- pgTAP: the contract of waitlist_history() and waitlist_explain(), the
-- support functions, and their bad input.
--
-- Signatures, result columns and types, the owner frame (SECURITY DEFINER
-- with search_path pinned), no EXECUTE for PUBLIC, the monitor duty (and no
-- other) holding them; a NULL entry raises 22004 and an unknown one 42704,
-- changing nothing.  What they say is tested in sql/explain.sql.
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

SELECT plan(32);

------------------------------------------------------------------------------
-- Signatures and results
------------------------------------------------------------------------------

SELECT has_function('waitlist_history', ARRAY['bigint'], 'waitlist_history(bigint) exists');
SELECT function_returns('waitlist_history', ARRAY['bigint'], 'setof record',
    'waitlist_history returns a set of records');
SELECT is(
    (SELECT string_agg(format('%s %s', a.name, format_type(a.type, NULL)), ', ' ORDER BY a.ord)
       FROM pg_catalog.pg_proc p,
            unnest(p.proallargtypes, p.proargmodes::text[], p.proargnames) WITH ORDINALITY AS a(type, mode, name, ord)
      WHERE p.oid = 'waitlist_history(bigint)'::regprocedure AND a.mode = 't'),
    'at timestamp with time zone, entity text, entity_id bigint, from_state text, to_state text, '
    'reason text, rule_version text, actor name, position bigint',
    'waitlist_history returns (at, entity, entity_id, from_state, to_state, reason, rule_version, actor, position)');
SELECT is((SELECT proargnames[1] FROM pg_catalog.pg_proc WHERE oid = 'waitlist_history(bigint)'::regprocedure),
    'entry_id', 'waitlist_history takes entry_id');

SELECT has_function('waitlist_explain', ARRAY['bigint'], 'waitlist_explain(bigint) exists');
SELECT function_returns('waitlist_explain', ARRAY['bigint'], 'setof text',
    'waitlist_explain returns a set of text');
SELECT is((SELECT proargnames[1] FROM pg_catalog.pg_proc WHERE oid = 'waitlist_explain(bigint)'::regprocedure),
    'entry_id', 'waitlist_explain takes entry_id');

SELECT set_eq(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
       WHERE p.proname IN ('waitlist_history', 'waitlist_explain')$$,
    $$VALUES ('waitlist_history(bigint)'), ('waitlist_explain(bigint)')$$,
    'each support function has exactly one signature');

------------------------------------------------------------------------------
-- The owner frame and privileges
------------------------------------------------------------------------------

SELECT is_definer('waitlist_history', ARRAY['bigint'], 'waitlist_history runs as the extension owner');
SELECT is_definer('waitlist_explain', ARRAY['bigint'], 'waitlist_explain runs as the extension owner');
SELECT is((SELECT proconfig FROM pg_catalog.pg_proc WHERE oid = 'waitlist_history(bigint)'::regprocedure),
    '{"search_path=pg_catalog, pg_temp"}', 'waitlist_history pins search_path');
SELECT is((SELECT proconfig FROM pg_catalog.pg_proc WHERE oid = 'waitlist_explain(bigint)'::regprocedure),
    '{"search_path=pg_catalog, pg_temp"}', 'waitlist_explain pins search_path');
SELECT is(has_function_privilege('public', 'waitlist_history(bigint)', 'EXECUTE'), false,
    'PUBLIC cannot execute waitlist_history');
SELECT is(has_function_privilege('public', 'waitlist_explain(bigint)', 'EXECUTE'), false,
    'PUBLIC cannot execute waitlist_explain');
SELECT set_eq(
    $$SELECT d.duty FROM waitlist_duty_privileges() d
       WHERE d.object_name LIKE '%.waitlist_history(bigint)'$$,
    ARRAY['monitor'], 'waitlist_history belongs to the monitor duty only');
SELECT set_eq(
    $$SELECT d.duty FROM waitlist_duty_privileges() d
       WHERE d.object_name LIKE '%.waitlist_explain(bigint)'$$,
    ARRAY['monitor'], 'waitlist_explain belongs to the monitor duty only');

DO $$
BEGIN
    PERFORM waitlist_create_resource('sup', interval '10 minutes');
    PERFORM waitlist_join('sup', 'fan-1');
END
$$;
CREATE ROLE wl_test_support NOLOGIN;
CREATE ROLE wl_test_app_only NOLOGIN;
DO $$
BEGIN
    PERFORM waitlist_grant('wl_test_support', 'monitor');
    PERFORM waitlist_grant('wl_test_app_only', 'app');
END
$$;
SELECT is(wl_test.sqlstate_as('wl_test_support', format('SELECT * FROM waitlist_history(%s)', wl_test.entry_of('sup', 'fan-1'))),
    '00000', 'monitor reads an entry''s history');
SELECT is(wl_test.sqlstate_as('wl_test_support', format('SELECT * FROM waitlist_explain(%s)', wl_test.entry_of('sup', 'fan-1'))),
    '00000', 'monitor reads an entry''s explanation');
SELECT is(wl_test.sqlstate_as('wl_test_app_only', format('SELECT * FROM waitlist_history(%s)', wl_test.entry_of('sup', 'fan-1'))),
    '42501', 'the app duty cannot read histories');
SELECT is(wl_test.sqlstate_as('wl_test_app_only', format('SELECT * FROM waitlist_explain(%s)', wl_test.entry_of('sup', 'fan-1'))),
    '42501', 'the app duty cannot read explanations');

-- a caller's search_path and operators change nothing
CREATE SCHEMA wl_test_hostile;
CREATE FUNCTION wl_test_hostile.always(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR wl_test_hostile.= (LEFTARG = text, RIGHTARG = text, FUNCTION = wl_test_hostile.always);
-- (pgTAP itself compares through search_path: the counts are taken first)
SELECT wl_test.entry_of('sup', 'fan-1') AS fan \gset
SET LOCAL search_path = wl_test_hostile, pg_catalog, public;
SELECT count(*) AS history_rows FROM waitlist_history(:fan) \gset
SELECT count(*) AS explain_rows FROM waitlist_explain(:fan) \gset
RESET search_path;
SELECT is(:history_rows::int, 1, 'a caller''s operators do not change the history');
SELECT is(:explain_rows::int, 2, 'a caller''s operators do not change the explanation');

------------------------------------------------------------------------------
-- Bad input
------------------------------------------------------------------------------

SELECT wl_test.rejects('SELECT * FROM waitlist_history(NULL)', '22004', 'waitlist_history(NULL)');
SELECT wl_test.rejects('SELECT * FROM waitlist_history(-1)', '42704', 'waitlist_history of an unknown entry');
SELECT wl_test.rejects('SELECT * FROM waitlist_explain(NULL)', '22004', 'waitlist_explain(NULL)');
SELECT wl_test.rejects('SELECT * FROM waitlist_explain(-1)', '42704', 'waitlist_explain of an unknown entry');
SELECT throws_ok('SELECT * FROM waitlist_explain(9223372036854775807)', '42704',
    'waitlist entry 9223372036854775807 does not exist', 'the error names the entry');
SELECT throws_ok('SELECT * FROM waitlist_history(NULL)', '22004',
    'entry_id must not be null', 'the error names the argument');

SELECT * FROM finish();
ROLLBACK;
