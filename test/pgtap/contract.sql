-- pgTAP: the API contract of the waitlist extension.
--
-- Function signatures, return types, default arguments and privileges; the
-- tables of the schema "waitlist" with their contractual columns and types;
-- the state sets the check constraints accept; and the indexes the design
-- relies on (one active entry per user, the line read in order).
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

-- EXPLAIN output of a query, as one text.
CREATE FUNCTION wl_test.plan_of(q text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    line text;
    result text := '';
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP
        result := result || line || E'\n';
    END LOOP;
    RETURN result;
END;
$$;

-- The name of the one index on waitlist.entry whose definition ends so.
CREATE FUNCTION wl_test.entry_index_ending(def_tail text) RETURNS name
LANGUAGE sql AS $$
    SELECT c.relname
      FROM pg_catalog.pg_index i
      JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
     WHERE i.indrelid = 'waitlist.entry'::regclass
       AND pg_catalog.pg_get_indexdef(i.indexrelid) LIKE '%' || def_tail
$$;

SELECT plan(158);

------------------------------------------------------------------------------
-- Functions: exact signatures and return types
------------------------------------------------------------------------------

SELECT has_function('waitlist_create_resource',
    ARRAY['text', 'interval', 'bigint', 'regprocedure', 'text[]', 'integer', 'interval', 'text', 'interval', 'integer', 'interval', 'interval', 'interval', 'text', 'text', 'integer[]', 'double precision', 'integer', 'timestamp with time zone', 'interval', 'boolean', 'integer', 'text', 'integer'],
    'waitlist_create_resource(text, interval, bigint, regprocedure, text[], integer, interval, text, interval, integer, interval, interval, interval, text, text, integer[], double precision, integer, timestamp with time zone, interval, boolean, integer, text, integer) exists');
SELECT function_returns('waitlist_create_resource',
    ARRAY['text', 'interval', 'bigint', 'regprocedure', 'text[]', 'integer', 'interval', 'text', 'interval', 'integer', 'interval', 'interval', 'interval', 'text', 'text', 'integer[]', 'double precision', 'integer', 'timestamp with time zone', 'interval', 'boolean', 'integer', 'text', 'integer'], 'void',
    'waitlist_create_resource returns void');
SELECT is(pg_catalog.pg_get_function_arguments(
        'waitlist_create_resource(text, interval, bigint, regprocedure, text[], integer, interval, text, interval, integer, interval, interval, interval, text, text, integer[], double precision, integer, timestamp with time zone, interval, boolean, integer, text, integer)'::regprocedure),
    'resource_id text, offer_ttl interval DEFAULT ''00:15:00''::interval, max_waiting bigint DEFAULT NULL::bigint, '
    'booking_function regprocedure DEFAULT NULL::regprocedure, channels text[] DEFAULT NULL::text[], '
    'wave_size integer DEFAULT NULL::integer, wave_interval interval DEFAULT NULL::interval, '
    'booking text DEFAULT NULL::text, booking_timeout interval DEFAULT ''00:02:00''::interval, '
    'booking_max_attempts integer DEFAULT 5, max_offer_extension interval DEFAULT NULL::interval, '
    'aging_interval interval DEFAULT NULL::interval, confirm_within interval DEFAULT NULL::interval, '
    'confirm_place_from text DEFAULT ''join''::text, position_visibility text DEFAULT ''exact''::text, '
    'position_bands integer[] DEFAULT NULL::integer[], join_rate_per_second double precision DEFAULT NULL::double precision, '
    'join_burst integer DEFAULT NULL::integer, offers_close_at timestamp with time zone DEFAULT NULL::timestamp with time zone, '
    'min_offer_ttl interval DEFAULT NULL::interval, ttl_shrink boolean DEFAULT false, '
    'max_party_size integer DEFAULT 1, party_policy text DEFAULT ''strict''::text, offer_fanout integer DEFAULT 1',
    'waitlist_create_resource takes 1.0''s (resource_id, offer_ttl, max_waiting, booking_function, channels, wave_size, wave_interval), then (booking, booking_timeout, booking_max_attempts, max_offer_extension, aging_interval, confirm_within, confirm_place_from, position_visibility, position_bands, join_rate_per_second, join_burst, offers_close_at, min_offer_ttl, ttl_shrink, max_party_size, party_policy, offer_fanout), all but the first with defaults');

SELECT has_function('waitlist_alter_resource',
    ARRAY['text', 'interval', 'bigint', 'boolean', 'regprocedure', 'boolean', 'text[]', 'integer', 'interval', 'boolean', 'text', 'interval', 'integer', 'interval', 'boolean', 'interval', 'boolean', 'interval', 'boolean', 'text', 'text', 'integer[]', 'boolean', 'double precision', 'integer', 'boolean', 'timestamp with time zone', 'boolean', 'interval', 'boolean', 'boolean', 'integer', 'text', 'integer'],
    'waitlist_alter_resource(text, interval, bigint, boolean, regprocedure, boolean, text[], integer, interval, boolean, text, interval, integer, interval, boolean, interval, boolean, interval, boolean, text, text, integer[], boolean, double precision, integer, boolean, timestamp with time zone, boolean, interval, boolean, boolean, integer, text, integer) exists');
SELECT function_returns('waitlist_alter_resource',
    ARRAY['text', 'interval', 'bigint', 'boolean', 'regprocedure', 'boolean', 'text[]', 'integer', 'interval', 'boolean', 'text', 'interval', 'integer', 'interval', 'boolean', 'interval', 'boolean', 'interval', 'boolean', 'text', 'text', 'integer[]', 'boolean', 'double precision', 'integer', 'boolean', 'timestamp with time zone', 'boolean', 'interval', 'boolean', 'boolean', 'integer', 'text', 'integer'], 'void',
    'waitlist_alter_resource returns void');
SELECT is(pg_catalog.pg_get_function_arguments(
        'waitlist_alter_resource(text, interval, bigint, boolean, regprocedure, boolean, text[], integer, interval, boolean, text, interval, integer, interval, boolean, interval, boolean, interval, boolean, text, text, integer[], boolean, double precision, integer, boolean, timestamp with time zone, boolean, interval, boolean, boolean, integer, text, integer)'::regprocedure),
    'resource_id text, offer_ttl interval DEFAULT NULL::interval, max_waiting bigint DEFAULT NULL::bigint, '
    'clear_max_waiting boolean DEFAULT false, booking_function regprocedure DEFAULT NULL::regprocedure, '
    'clear_booking_function boolean DEFAULT false, channels text[] DEFAULT NULL::text[], '
    'wave_size integer DEFAULT NULL::integer, wave_interval interval DEFAULT NULL::interval, '
    'clear_waves boolean DEFAULT false, booking text DEFAULT NULL::text, '
    'booking_timeout interval DEFAULT NULL::interval, booking_max_attempts integer DEFAULT NULL::integer, '
    'max_offer_extension interval DEFAULT NULL::interval, clear_max_offer_extension boolean DEFAULT false, '
    'aging_interval interval DEFAULT NULL::interval, clear_aging_interval boolean DEFAULT false, '
    'confirm_within interval DEFAULT NULL::interval, clear_confirm_within boolean DEFAULT false, '
    'confirm_place_from text DEFAULT NULL::text, position_visibility text DEFAULT NULL::text, '
    'position_bands integer[] DEFAULT NULL::integer[], clear_position_bands boolean DEFAULT false, '
    'join_rate_per_second double precision DEFAULT NULL::double precision, join_burst integer DEFAULT NULL::integer, '
    'clear_join_rate boolean DEFAULT false, offers_close_at timestamp with time zone DEFAULT NULL::timestamp with time zone, '
    'clear_offers_close_at boolean DEFAULT false, min_offer_ttl interval DEFAULT NULL::interval, '
    'clear_min_offer_ttl boolean DEFAULT false, ttl_shrink boolean DEFAULT NULL::boolean, '
    'max_party_size integer DEFAULT NULL::integer, party_policy text DEFAULT NULL::text, offer_fanout integer DEFAULT NULL::integer',
    'waitlist_alter_resource takes 1.0''s (resource_id, offer_ttl, max_waiting, clear_max_waiting, booking_function, clear_booking_function, channels, wave_size, wave_interval, clear_waves), then (booking, booking_timeout, booking_max_attempts, max_offer_extension, clear_max_offer_extension, aging_interval, clear_aging_interval, confirm_within, clear_confirm_within, confirm_place_from, position_visibility, position_bands, clear_position_bands, join_rate_per_second, join_burst, clear_join_rate, offers_close_at, clear_offers_close_at, min_offer_ttl, clear_min_offer_ttl, ttl_shrink, max_party_size, party_policy, offer_fanout), all but the first with defaults');

-- the accept saga and offer extensions (1.1)
SELECT has_function('waitlist_booking_confirmed', ARRAY['bigint', 'text'],
    'waitlist_booking_confirmed(bigint, text) exists');
SELECT function_returns('waitlist_booking_confirmed', ARRAY['bigint', 'text'], 'boolean',
    'waitlist_booking_confirmed returns boolean');
SELECT has_function('waitlist_booking_failed', ARRAY['bigint', 'text', 'boolean'],
    'waitlist_booking_failed(bigint, text, boolean) exists');
SELECT function_returns('waitlist_booking_failed', ARRAY['bigint', 'text', 'boolean'], 'text',
    'waitlist_booking_failed returns text');
SELECT has_function('waitlist_extend_offer', ARRAY['bigint', 'interval', 'text', 'text'],
    'waitlist_extend_offer(bigint, interval, text, text) exists');
SELECT function_returns('waitlist_extend_offer', ARRAY['bigint', 'interval', 'text', 'text'],
    'timestamp with time zone', 'waitlist_extend_offer returns timestamptz');
SELECT is(pg_catalog.pg_get_function_arguments('waitlist_booking_failed(bigint, text, boolean)'::regprocedure),
    'offer_id bigint, reason text, retryable boolean',
    'waitlist_booking_failed takes (offer_id, reason, retryable)');
SELECT is(pg_catalog.pg_get_function_arguments('waitlist_extend_offer(bigint, interval, text, text)'::regprocedure),
    'offer_id bigint, by_interval interval, reason text, idempotency_key text',
    'waitlist_extend_offer takes (offer_id, by_interval, reason, idempotency_key)');

SELECT has_function('waitlist_join', ARRAY['text', 'text', 'integer', 'integer'],
    'waitlist_join(text, text, integer, integer) exists');
SELECT function_returns('waitlist_join', ARRAY['text', 'text', 'integer', 'integer'], 'bigint',
    'waitlist_join returns bigint');
SELECT is(pg_catalog.pg_get_function_arguments('waitlist_join(text, text, integer, integer)'::regprocedure),
    'resource_id text, user_id text, priority integer DEFAULT 0, quantity integer DEFAULT 1',
    'waitlist_join takes (resource_id, user_id, priority, quantity), priority and quantity with defaults');

SELECT has_function('waitlist_leave', ARRAY['bigint'],
    'waitlist_leave(bigint) exists');
SELECT function_returns('waitlist_leave', ARRAY['bigint'], 'boolean',
    'waitlist_leave returns boolean');

SELECT has_function('waitlist_status', ARRAY['bigint'],
    'waitlist_status(bigint) exists');
SELECT function_returns('waitlist_status', ARRAY['bigint'], 'record',
    'waitlist_status returns a record');
SELECT is(
    (SELECT string_agg(a.name || ' ' || pg_catalog.format_type(a.typ, NULL), ', ' ORDER BY a.n)
       FROM pg_catalog.pg_proc p,
            unnest(p.proargnames, p.proallargtypes, p.proargmodes) WITH ORDINALITY AS a(name, typ, mode, n)
      WHERE p.oid = 'waitlist_status(bigint)'::regprocedure AND a.mode = 'o'),
    'state text, position bigint, offer_id bigint, offer_expires_at timestamp with time zone, band text, estimated_wait interval, estimate_note text',
    'waitlist_status returns 1.0''s (state text, position bigint, offer_id bigint, offer_expires_at timestamptz), then (band text, estimated_wait interval, estimate_note text)');

SELECT has_function('waitlist_release', ARRAY['text', 'integer', 'text'],
    'waitlist_release(text, integer, text) exists');
SELECT function_returns('waitlist_release', ARRAY['text', 'integer', 'text'], 'boolean',
    'waitlist_release returns boolean');

SELECT has_function('waitlist_promote', ARRAY['text', 'integer'],
    'waitlist_promote(text, integer) exists');
SELECT function_returns('waitlist_promote', ARRAY['text', 'integer'], 'integer',
    'waitlist_promote returns integer');

SELECT set_eq(
    $$SELECT p.oid::regprocedure::text
        FROM pg_catalog.pg_proc p
       WHERE p.proname IN ('waitlist_create_resource', 'waitlist_alter_resource', 'waitlist_join',
                           'waitlist_leave', 'waitlist_status', 'waitlist_release', 'waitlist_promote',
                           'waitlist_outbox_claim', 'waitlist_outbox_ack', 'waitlist_outbox_fail',
                           'waitlist_outbox_retry', 'waitlist_set_channel_rate', 'waitlist_inbox',
                           'waitlist_offer_seen')$$,
    $$VALUES ('waitlist_create_resource(text,interval,bigint,regprocedure,text[],integer,interval,text,interval,integer,interval,interval,interval,text,text,integer[],double precision,integer,timestamp with time zone,interval,boolean,integer,text,integer)'),
             ('waitlist_alter_resource(text,interval,bigint,boolean,regprocedure,boolean,text[],integer,interval,boolean,text,interval,integer,interval,boolean,interval,boolean,interval,boolean,text,text,integer[],boolean,double precision,integer,boolean,timestamp with time zone,boolean,interval,boolean,boolean,integer,text,integer)'),
             ('waitlist_join(text,text,integer,integer)'),
             ('waitlist_leave(bigint)'),
             ('waitlist_status(bigint)'),
             ('waitlist_release(text,integer,text)'),
             ('waitlist_promote(text,integer)'),
             ('waitlist_outbox_claim(text,integer,interval,text[])'),
             ('waitlist_outbox_ack(bigint,bigint)'),
             ('waitlist_outbox_fail(bigint,bigint,text)'),
             ('waitlist_outbox_retry(bigint)'),
             ('waitlist_set_channel_rate(text,double precision,integer)'),
             ('waitlist_inbox(text,interval)'),
             ('waitlist_offer_seen(bigint)')$$,
    'each API function has exactly one signature (no stray overloads)');

SELECT volatility_is('waitlist_status', ARRAY['bigint'], 'volatile', 'waitlist_status is VOLATILE, so it sees a join made earlier in the same statement');
SELECT volatility_is('waitlist_join', ARRAY['text', 'text', 'integer', 'integer'], 'volatile', 'waitlist_join is VOLATILE');
SELECT volatility_is('waitlist_release', ARRAY['text', 'integer', 'text'], 'volatile', 'waitlist_release is VOLATILE');
SELECT volatility_is('waitlist_promote', ARRAY['text', 'integer'], 'volatile', 'waitlist_promote is VOLATILE');
SELECT volatility_is('waitlist_leave', ARRAY['bigint'], 'volatile', 'waitlist_leave is VOLATILE');

SELECT is(
    (SELECT array_agg(p.proname::text ORDER BY p.proname)
       FROM pg_catalog.pg_proc p
      WHERE p.proname IN ('waitlist_create_resource', 'waitlist_alter_resource', 'waitlist_join',
                          'waitlist_leave', 'waitlist_status', 'waitlist_release', 'waitlist_promote',
                          'waitlist_outbox_claim', 'waitlist_outbox_ack', 'waitlist_outbox_fail',
                          'waitlist_outbox_retry', 'waitlist_set_channel_rate', 'waitlist_inbox',
                          'waitlist_offer_seen')
        AND p.proisstrict),
    NULL,
    'no API function is STRICT: a NULL argument raises an error instead of returning NULL');

------------------------------------------------------------------------------
-- Privileges: EXECUTE is not granted to PUBLIC
------------------------------------------------------------------------------

SELECT is(
    (SELECT count(*)::int
       FROM pg_catalog.pg_proc p
      WHERE p.proname IN ('waitlist_create_resource', 'waitlist_alter_resource', 'waitlist_join',
                          'waitlist_leave', 'waitlist_status', 'waitlist_release', 'waitlist_promote',
                          'waitlist_outbox_claim', 'waitlist_outbox_ack', 'waitlist_outbox_fail',
                          'waitlist_outbox_retry', 'waitlist_set_channel_rate', 'waitlist_inbox',
                          'waitlist_offer_seen')
        AND p.proacl IS NOT NULL),
    14,
    'every API function has an explicit ACL (the default ACL lets PUBLIC execute)');

-- every function of the extension in the schema applications call it in,
-- including ones added later (trigger functions cannot be called and are
-- left out; the schema waitlist itself is closed to PUBLIC)
SELECT is(
    (SELECT array_agg(p.oid::regprocedure::text ORDER BY p.proname)
       FROM pg_catalog.pg_proc p
       JOIN pg_catalog.pg_depend d
         ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
      WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass
        AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'waitlist')
        AND p.pronamespace = (SELECT extnamespace FROM pg_catalog.pg_extension WHERE extname = 'waitlist')
        AND p.prorettype <> 'trigger'::regtype
        AND (p.proacl IS NULL
             OR EXISTS (SELECT 1 FROM pg_catalog.aclexplode(p.proacl) a
                         WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'))),
    NULL,
    'no function of the extension grants EXECUTE to PUBLIC');

CREATE ROLE wl_test_outsider NOLOGIN;

SELECT function_privs_are('waitlist_create_resource',
    ARRAY['text', 'interval', 'bigint', 'regprocedure', 'text[]', 'integer', 'interval', 'text', 'interval', 'integer', 'interval', 'interval', 'interval', 'text', 'text', 'integer[]', 'double precision', 'integer', 'timestamp with time zone', 'interval', 'boolean', 'integer', 'text', 'integer'],
    'wl_test_outsider', ARRAY[]::name[], 'a plain role may not execute waitlist_create_resource');
SELECT function_privs_are('waitlist_alter_resource',
    ARRAY['text', 'interval', 'bigint', 'boolean', 'regprocedure', 'boolean', 'text[]', 'integer', 'interval', 'boolean', 'text', 'interval', 'integer', 'interval', 'boolean', 'interval', 'boolean', 'interval', 'boolean', 'text', 'text', 'integer[]', 'boolean', 'double precision', 'integer', 'boolean', 'timestamp with time zone', 'boolean', 'interval', 'boolean', 'boolean', 'integer', 'text', 'integer'],
    'wl_test_outsider', ARRAY[]::name[], 'a plain role may not execute waitlist_alter_resource');
SELECT function_privs_are('waitlist_join', ARRAY['text', 'text', 'integer', 'integer'],
    'wl_test_outsider', ARRAY[]::name[], 'a plain role may not execute waitlist_join');
SELECT function_privs_are('waitlist_leave', ARRAY['bigint'],
    'wl_test_outsider', ARRAY[]::name[], 'a plain role may not execute waitlist_leave');
SELECT function_privs_are('waitlist_status', ARRAY['bigint'],
    'wl_test_outsider', ARRAY[]::name[], 'a plain role may not execute waitlist_status');
SELECT function_privs_are('waitlist_release', ARRAY['text', 'integer', 'text'],
    'wl_test_outsider', ARRAY[]::name[], 'a plain role may not execute waitlist_release');
SELECT function_privs_are('waitlist_promote', ARRAY['text', 'integer'],
    'wl_test_outsider', ARRAY[]::name[], 'a plain role may not execute waitlist_promote');

DO $$ BEGIN PERFORM waitlist_create_resource('contract-priv'); END $$;

SELECT is(wl_test.sqlstate_as('wl_test_outsider', $$SELECT waitlist_join('contract-priv', 'u1')$$),
    '42501', 'calling waitlist_join without EXECUTE is refused (42501)');
SELECT is(wl_test.sqlstate_as('wl_test_outsider', $$SELECT count(*) FROM waitlist.entry$$),
    '42501', 'a plain role cannot read the tables of schema waitlist (42501)');

GRANT EXECUTE ON FUNCTION waitlist_join(text, text, integer, integer) TO wl_test_outsider;
SELECT is(wl_test.sqlstate_as('wl_test_outsider', $$SELECT waitlist_join('contract-priv', 'u1')$$),
    '00000', 'with EXECUTE on waitlist_join and no table privileges, a role can join');
SELECT is(
    (SELECT t.actor::text FROM waitlist.transition t
       JOIN waitlist.entry e ON e.entry_id = t.entity_id AND t.entity = 'entry'
      WHERE e.resource_id = 'contract-priv' AND e.user_id = 'u1'),
    'wl_test_outsider',
    'the transition of that join records the calling role as actor');
SELECT is(wl_test.sqlstate_as('wl_test_outsider', $$SELECT count(*) FROM waitlist.entry$$),
    '42501', 'EXECUTE on the API still gives no access to the tables');

------------------------------------------------------------------------------
-- Default argument values work when omitted
------------------------------------------------------------------------------

SELECT lives_ok($$SELECT waitlist_create_resource('contract-defaults')$$,
    'waitlist_create_resource(resource_id) alone works');
SELECT is((SELECT offer_ttl FROM waitlist.resource WHERE resource_id = 'contract-defaults'),
    interval '15 minutes', 'offer_ttl defaults to 15 minutes');
SELECT is((SELECT max_waiting FROM waitlist.resource WHERE resource_id = 'contract-defaults'),
    NULL, 'max_waiting defaults to NULL (no cap)');
SELECT is((SELECT booking_function::text FROM waitlist.resource WHERE resource_id = 'contract-defaults'),
    NULL, 'booking_function defaults to NULL');
SELECT is((SELECT free_units FROM waitlist.resource WHERE resource_id = 'contract-defaults'),
    0::bigint, 'a new resource has no free units');
SELECT is((SELECT channels FROM waitlist.resource WHERE resource_id = 'contract-defaults'),
    ARRAY['webhook'], 'channels default to {webhook}');
SELECT row_eq(
    $$SELECT wave_size, wave_interval, wave_started_at, wave_offers FROM waitlist.resource WHERE resource_id = 'contract-defaults'$$,
    ROW(NULL::integer, NULL::interval, NULL::timestamptz, 0),
    'a new resource has no waves');

SELECT lives_ok($$SELECT waitlist_alter_resource('contract-defaults')$$,
    'waitlist_alter_resource(resource_id) alone works');
SELECT row_eq(
    $$SELECT offer_ttl, max_waiting, booking_function::text, channels, wave_size, wave_interval
        FROM waitlist.resource WHERE resource_id = 'contract-defaults'$$,
    ROW(interval '15 minutes', NULL::bigint, NULL::text, ARRAY['webhook'], NULL::integer, NULL::interval),
    'waitlist_alter_resource with every setting omitted changes nothing');

SELECT ok(waitlist_join('contract-defaults', 'd1') IS NOT NULL,
    'waitlist_join(resource_id, user_id) without priority works');
SELECT is((SELECT priority FROM waitlist.entry WHERE resource_id = 'contract-defaults' AND user_id = 'd1'),
    0, 'priority defaults to 0');
DO $$ BEGIN PERFORM waitlist_join('contract-defaults', 'd2'); PERFORM waitlist_join('contract-defaults', 'd3'); END $$;
-- free units while people wait only appear by hand; promote then hands them out
UPDATE waitlist.resource SET free_units = 2 WHERE resource_id = 'contract-defaults';
SELECT is(waitlist_promote('contract-defaults'), 2,
    'waitlist_promote(resource_id) without max_offers offers every free unit');
SELECT is((SELECT free_units FROM waitlist.resource WHERE resource_id = 'contract-defaults'),
    0::bigint, '... and leaves none free');
SELECT is(
    (SELECT expires_at - created_at FROM waitlist.offer WHERE resource_id = 'contract-defaults' LIMIT 1),
    interval '15 minutes', 'offers of a default resource stay open 15 minutes');

------------------------------------------------------------------------------
-- Tables and their contractual columns
------------------------------------------------------------------------------

SELECT has_schema('waitlist', 'schema waitlist exists');
SELECT is(
    (SELECT count(*)::int FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
      WHERE n.nspname = 'waitlist' AND a.grantee = 0),
    0, 'schema waitlist grants nothing to PUBLIC');

SELECT has_table('waitlist', 'resource', 'table waitlist.resource exists');
SELECT col_is_pk('waitlist', 'resource', 'resource_id', 'resource_id is the primary key of waitlist.resource');
SELECT col_type_is('waitlist', 'resource', 'resource_id', 'text', 'waitlist.resource.resource_id is text');
SELECT col_type_is('waitlist', 'resource', 'offer_ttl', 'interval', 'waitlist.resource.offer_ttl is interval');
SELECT col_type_is('waitlist', 'resource', 'max_waiting', 'bigint', 'waitlist.resource.max_waiting is bigint');
SELECT col_type_is('waitlist', 'resource', 'free_units', 'bigint', 'waitlist.resource.free_units is bigint');

SELECT has_table('waitlist', 'entry', 'table waitlist.entry exists');
SELECT col_type_is('waitlist', 'entry', 'entry_id', 'bigint', 'waitlist.entry.entry_id is bigint');
SELECT col_type_is('waitlist', 'entry', 'resource_id', 'text', 'waitlist.entry.resource_id is text');
SELECT col_type_is('waitlist', 'entry', 'user_id', 'text', 'waitlist.entry.user_id is text');
SELECT col_type_is('waitlist', 'entry', 'state', 'text', 'waitlist.entry.state is text');
SELECT col_type_is('waitlist', 'entry', 'priority', 'integer', 'waitlist.entry.priority is integer');
SELECT col_type_is('waitlist', 'entry', 'seq', 'bigint', 'waitlist.entry.seq is bigint');
SELECT col_type_is('waitlist', 'entry', 'joined_at', 'timestamp with time zone', 'waitlist.entry.joined_at is timestamp with time zone');
SELECT col_type_is('waitlist', 'entry', 'updated_at', 'timestamp with time zone', 'waitlist.entry.updated_at is timestamp with time zone');

SELECT has_table('waitlist', 'offer', 'table waitlist.offer exists');
SELECT col_type_is('waitlist', 'offer', 'offer_id', 'bigint', 'waitlist.offer.offer_id is bigint');
SELECT col_type_is('waitlist', 'offer', 'entry_id', 'bigint', 'waitlist.offer.entry_id is bigint');
SELECT col_type_is('waitlist', 'offer', 'resource_id', 'text', 'waitlist.offer.resource_id is text');
SELECT col_type_is('waitlist', 'offer', 'state', 'text', 'waitlist.offer.state is text');
SELECT col_type_is('waitlist', 'offer', 'created_at', 'timestamp with time zone', 'waitlist.offer.created_at is timestamp with time zone');
SELECT col_type_is('waitlist', 'offer', 'expires_at', 'timestamp with time zone', 'waitlist.offer.expires_at is timestamp with time zone');
SELECT col_type_is('waitlist', 'offer', 'decided_at', 'timestamp with time zone', 'waitlist.offer.decided_at is timestamp with time zone');
SELECT col_type_is('waitlist', 'offer', 'reservation_ref', 'text', 'waitlist.offer.reservation_ref is text');
SELECT col_type_is('waitlist', 'offer', 'idempotency_key', 'text', 'waitlist.offer.idempotency_key is text');

SELECT has_table('waitlist', 'capacity_event', 'table waitlist.capacity_event exists');
SELECT col_type_is('waitlist', 'capacity_event', 'resource_id', 'text', 'waitlist.capacity_event.resource_id is text');
SELECT col_type_is('waitlist', 'capacity_event', 'event_id', 'text', 'waitlist.capacity_event.event_id is text');
SELECT ok(EXISTS (
        SELECT 1 FROM pg_catalog.pg_index i
         WHERE i.indrelid = 'waitlist.capacity_event'::regclass
           AND i.indisunique AND i.indpred IS NULL
           AND (SELECT array_agg(a.attname::text ORDER BY a.attname)
                  FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey))
               = ARRAY['event_id', 'resource_id']
           AND i.indnkeyatts = 2),
    'waitlist.capacity_event is unique on (resource_id, event_id)');

SELECT has_table('waitlist', 'outbox', 'table waitlist.outbox exists');
SELECT col_type_is('waitlist', 'outbox', 'outbox_id', 'bigint', 'waitlist.outbox.outbox_id is bigint');
SELECT col_type_is('waitlist', 'outbox', 'resource_id', 'text', 'waitlist.outbox.resource_id is text');
SELECT col_type_is('waitlist', 'outbox', 'entry_id', 'bigint', 'waitlist.outbox.entry_id is bigint');
SELECT col_type_is('waitlist', 'outbox', 'offer_id', 'bigint', 'waitlist.outbox.offer_id is bigint');
SELECT col_type_is('waitlist', 'outbox', 'event_type', 'text', 'waitlist.outbox.event_type is text');
SELECT col_type_is('waitlist', 'outbox', 'payload', 'jsonb', 'waitlist.outbox.payload is jsonb');
SELECT col_type_is('waitlist', 'outbox', 'created_at', 'timestamp with time zone', 'waitlist.outbox.created_at is timestamp with time zone');

SELECT has_table('waitlist', 'transition', 'table waitlist.transition exists');
SELECT col_type_is('waitlist', 'transition', 'entity', 'text', 'waitlist.transition.entity is text');
SELECT col_type_is('waitlist', 'transition', 'entity_id', 'bigint', 'waitlist.transition.entity_id is bigint');
SELECT col_type_is('waitlist', 'transition', 'resource_id', 'text', 'waitlist.transition.resource_id is text');
SELECT col_type_is('waitlist', 'transition', 'from_state', 'text', 'waitlist.transition.from_state is text');
SELECT col_type_is('waitlist', 'transition', 'to_state', 'text', 'waitlist.transition.to_state is text');
SELECT col_type_is('waitlist', 'transition', 'reason', 'text', 'waitlist.transition.reason is text');
SELECT col_type_is('waitlist', 'transition', 'rule_version', 'text', 'waitlist.transition.rule_version is text');
SELECT col_type_is('waitlist', 'transition', 'actor', 'name', 'waitlist.transition.actor is name');
SELECT col_type_is('waitlist', 'transition', 'at', 'timestamp with time zone', 'waitlist.transition.at is timestamp with time zone');
SELECT col_type_is('waitlist', 'transition', 'transaction_id', 'xid8', 'waitlist.transition.transaction_id is xid8');

------------------------------------------------------------------------------
-- State sets accepted by the check constraints
------------------------------------------------------------------------------

DO $$ BEGIN PERFORM waitlist_create_resource('contract-states'); END $$;

-- rows written as a restore writes them (a superuser in replica mode): the
-- row guard, which checks moves against waitlist.state_machine(), stands
-- aside, so what is tested here is the tables' own constraints
SET session_replication_role = replica;

-- each valid entry state, one row per state (distinct users: PENDING,
-- WAITING and OFFERED are all "active")
SELECT lives_ok(
    format($$INSERT INTO waitlist.entry (resource_id, user_id, state) VALUES ('contract-states', 'ok-%s', %L)$$, s, s),
    format('entry state %s is accepted', s))
  FROM unnest(ARRAY['PENDING', 'WAITING', 'OFFERED', 'ACCEPTED', 'DECLINED', 'EXPIRED', 'CANCELLED']) AS s;

SELECT throws_ok(
    format($$INSERT INTO waitlist.entry (resource_id, user_id, state) VALUES ('contract-states', 'bad', %L)$$, s),
    '23514', NULL, format('entry state %L is rejected (23514)', s))
  FROM unnest(ARRAY['OPEN', 'REVOKED', 'waiting', 'pending', 'CANCELED', '']) AS s;

SELECT throws_ok(
    $$INSERT INTO waitlist.entry (resource_id, user_id, state) VALUES ('contract-states', 'bad', NULL)$$,
    '23502', NULL, 'entry state NULL is rejected (23502)');

-- each valid offer state, each on its own entry; decided_at is set exactly
-- when the offer is no longer OPEN
SELECT lives_ok(
    format($$INSERT INTO waitlist.offer (entry_id, resource_id, user_id, state, expires_at, decided_at)
             SELECT entry_id, 'contract-states', user_id, %L, now() + interval '1 minute', %s
               FROM waitlist.entry WHERE resource_id = 'contract-states' AND user_id = 'ok-OFFERED'$$,
           s, CASE WHEN s = 'OPEN' THEN 'NULL' ELSE 'now()' END),
    format('offer state %s is accepted', s))
  FROM unnest(ARRAY['OPEN', 'ACCEPTED', 'DECLINED', 'EXPIRED', 'REVOKED', 'FAILED']) AS s;

SELECT throws_ok(
    format($$INSERT INTO waitlist.offer (entry_id, resource_id, user_id, state, expires_at, decided_at)
             SELECT entry_id, 'contract-states', user_id, %L, now() + interval '1 minute', now()
               FROM waitlist.entry WHERE resource_id = 'contract-states' AND user_id = 'ok-OFFERED'$$, s),
    '23514', NULL, format('offer state %L is rejected (23514)', s))
  FROM unnest(ARRAY['WAITING', 'CANCELLED', 'open', 'CLOSED', 'PENDING', '']) AS s;

SELECT throws_ok(
    $$UPDATE waitlist.entry SET state = 'GONE' WHERE resource_id = 'contract-states' AND user_id = 'ok-WAITING'$$,
    '23514', NULL, 'an UPDATE to an unknown entry state is rejected too (23514)');

------------------------------------------------------------------------------
-- Indexes: one active entry per (resource, user); the line in order
------------------------------------------------------------------------------

SELECT isnt(
    wl_test.entry_index_ending($$USING btree (resource_id, user_id) WHERE (state = ANY (ARRAY['PENDING'::text, 'WAITING'::text, 'OFFERED'::text]))$$),
    NULL,
    'waitlist.entry has an index on (resource_id, user_id) WHERE state IN (PENDING, WAITING, OFFERED)');
SELECT ok(
    (SELECT i.indisunique FROM pg_catalog.pg_index i
      WHERE i.indexrelid = ('waitlist.' || quote_ident(wl_test.entry_index_ending(
                $$USING btree (resource_id, user_id) WHERE (state = ANY (ARRAY['PENDING'::text, 'WAITING'::text, 'OFFERED'::text]))$$)))::regclass),
    '... and it is unique');

SELECT throws_ok(
    $$INSERT INTO waitlist.entry (resource_id, user_id, state) VALUES ('contract-states', 'ok-WAITING', 'OFFERED')$$,
    '23505', NULL, 'a second active entry of the same user on the same resource is rejected (23505)');
SELECT lives_ok(
    $$INSERT INTO waitlist.entry (resource_id, user_id, state) VALUES ('contract-states', 'ok-CANCELLED', 'WAITING')$$,
    'an active entry may sit beside finished entries of the same user');
SELECT lives_ok(
    $$INSERT INTO waitlist.entry (resource_id, user_id, state) VALUES ('contract-priv', 'ok-WAITING', 'WAITING')$$,
    'the same user may be active on another resource');
RESET session_replication_role;

------------------------------------------------------------------------------
-- The state machine (1.1): its columns, and moves it lacks refused (WL010)
------------------------------------------------------------------------------

SELECT has_function('waitlist', 'state_machine', ARRAY[]::name[],
    'waitlist.state_machine() exists');
SELECT is(
    (SELECT pg_catalog.array_to_string(p.proargnames, ',') FROM pg_catalog.pg_proc p
      WHERE p.oid = 'waitlist.state_machine()'::regprocedure),
    'entity,from_state,event,to_state,unit,outbox_event,reason',
    'waitlist.state_machine() returns (entity, from_state, event, to_state, unit, outbox_event, reason)');
SELECT is(
    (SELECT count(*)::integer FROM waitlist.state_machine() m
      WHERE m.entity = 'offer' AND m.unit = 'return'),
    4, 'four offer transitions return their unit (decline, expire, revoke, a booking exhausted)');
SELECT throws_ok(
    $$UPDATE waitlist.entry SET state = 'WAITING' WHERE resource_id = 'contract-states' AND user_id = 'ok-ACCEPTED'$$,
    'WL010', NULL, 'an accepted entry put back in line by hand is refused (WL010)');
SELECT throws_ok(
    $$UPDATE waitlist.offer SET state = 'OPEN', decided_at = NULL
       WHERE resource_id = 'contract-states' AND state = 'EXPIRED'$$,
    'WL010', NULL, 'an expired offer reopened by hand is refused (WL010)');
SELECT throws_ok(
    $$INSERT INTO waitlist.entry (resource_id, user_id, state) VALUES ('contract-states', 'new', 'ACCEPTED')$$,
    'WL010', NULL, 'an entry created by hand in a later state is refused (WL010)');
SELECT lives_ok(
    $$UPDATE waitlist.entry SET state = 'CANCELLED' WHERE resource_id = 'contract-states' AND user_id = 'ok-WAITING'$$,
    'a move the state machine has is allowed by hand');
SELECT is(
    (SELECT reason FROM waitlist.transition
      WHERE resource_id = 'contract-states' AND to_state = 'CANCELLED' AND from_state = 'WAITING'),
    'manual', '... and audited as manual');

SELECT isnt(
    wl_test.entry_index_ending($$USING btree (resource_id, rank_key DESC, seq) WHERE (state = 'WAITING'::text)$$),
    NULL,
    'waitlist.entry has the line index (resource_id, rank_key DESC, seq) WHERE state = WAITING (1.1: rank_key, aged priority)');

-- a line long enough for the planner to care, spread over a few resources
DO $$
BEGIN
    PERFORM waitlist_create_resource('contract-line-' || r) FROM generate_series(1, 4) r;
    PERFORM waitlist_join('contract-line-' || (u % 4 + 1), 'user-' || u, u % 3) FROM generate_series(1, 400) u;
END
$$;
ANALYZE waitlist.entry;
SET LOCAL enable_sort = off;
SELECT matches(
    wl_test.plan_of($$SELECT e.entry_id FROM waitlist.entry e
                       WHERE e.resource_id = 'contract-line-2' AND e.state = 'WAITING'
                       ORDER BY e.rank_key DESC, e.seq LIMIT 5 FOR UPDATE OF e SKIP LOCKED$$),
    'Index Scan using ' || wl_test.entry_index_ending($$USING btree (resource_id, rank_key DESC, seq) WHERE (state = 'WAITING'::text)$$) || ' on entry',
    'picking the next waiters reads the line index in (rank_key DESC, seq) order');
SELECT doesnt_match(
    wl_test.plan_of($$SELECT e.entry_id FROM waitlist.entry e
                       WHERE e.resource_id = 'contract-line-2' AND e.state = 'WAITING'
                       ORDER BY e.rank_key DESC, e.seq LIMIT 5 FOR UPDATE OF e SKIP LOCKED$$),
    'Sort',
    '... without a sort');
RESET enable_sort;

------------------------------------------------------------------------------
-- Positions (1.1): what the resource hides, waitlist_status() never shows
------------------------------------------------------------------------------

DO $$
BEGIN
    PERFORM waitlist_create_resource('contract-pos-' || v, position_visibility => v)
       FROM unnest(ARRAY['exact', 'band', 'none']) v;
    PERFORM waitlist_join('contract-pos-' || v, 'user-' || u)
       FROM unnest(ARRAY['exact', 'band', 'none']) v, generate_series(1, 12) u;
END
$$;
SELECT is(
    (SELECT string_agg(format('%s:%s', s."position", s.band), ',' ORDER BY e.seq)
       FROM waitlist.entry e, waitlist_status(e.entry_id) s
      WHERE e.resource_id = 'contract-pos-exact' AND e.user_id IN ('user-10', 'user-11')),
    '10:1-10,11:11-100',
    'an exact resource shows the position and its band (1-10, 11-100, ...)');
SELECT is(
    (SELECT count(*) FILTER (WHERE s."position" IS NULL AND s.band IS NOT NULL)::integer
       FROM waitlist.entry e, waitlist_status(e.entry_id) s
      WHERE e.resource_id = 'contract-pos-band'),
    12, 'a band resource never shows the position, only its band');
SELECT is(
    (SELECT count(*) FILTER (WHERE s."position" IS NULL AND s.band IS NULL AND s.estimated_wait IS NULL
                               AND s.estimate_note = 'position hidden')::integer
       FROM waitlist.entry e, waitlist_status(e.entry_id) s
      WHERE e.resource_id = 'contract-pos-none'),
    12, 'a none resource shows neither position, band nor estimate, and says why');
SELECT is(
    (SELECT s.estimate_note FROM waitlist.entry e, waitlist_status(e.entry_id) s
      WHERE e.resource_id = 'contract-pos-exact' AND e.user_id = 'user-1'),
    'no offers in the last hour',
    'without offers in the last hour the estimate is NULL, and the note says why');

SELECT * FROM finish();
ROLLBACK;
