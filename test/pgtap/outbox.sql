-- pgTAP: the notification API, its contract and its bad input.
--
-- The outbox consumer protocol (waitlist_outbox_claim, _ack, _fail,
-- _retry), the channel rate limits (waitlist_set_channel_rate), the in-app
-- inbox (waitlist_inbox, waitlist_offer_seen): exact signatures, return
-- types and columns, defaults, volatility, privileges; the settings
-- waitlist.notify_channel, waitlist.outbox_max_attempts and
-- waitlist.outbox_retry_base; the tables, columns and view behind them.
--
-- Then every bad input with its SQLSTATE, and after each rejected call a
-- digest of every waitlist.* table must be what it was before (the digest
-- helper is the one in helpers.psql, shared with bad_input.sql):
--
--   22004  a NULL where a value is required
--   22023  an invalid value (empty consumer, user or channel; max_rows
--          outside 1..10000; a lease that is not positive or over 1 day;
--          an unknown channel; a rate not positive or outside
--          0.000001..1000000, a burst not positive or over 1000000)
--   23514  a channel row written by hand out of those bounds
--   22001  a consumer or user id over 200 bytes
--   42704  unknown outbox row or offer
--   WL005  a lease token that is not the row's (never claimed, made up)
--          or no longer holds (the row was dead-lettered, or failed with
--          it already), failing a delivered row
--   42501  setting a superuser-only setting as a plain role
--
-- Calls that succeed without doing anything (retry of a row that is not
-- dead, a repeated ack, a repeated offer_seen, reading the inbox) are held
-- to the same standard.
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
-- offers and their outbox rows exist right after each call
SET LOCAL waitlist.promotion_mode = inline;

-- helpers for this file only (the shared ones, in the same schema wl_test,
-- come from helpers.psql); rolled back with everything else

-- The output columns of a function, as "name type, ...".
CREATE FUNCTION wl_test.out_columns(f regprocedure) RETURNS text
LANGUAGE sql AS $$
    SELECT string_agg(a.name || ' ' || pg_catalog.format_type(a.typ, NULL), ', ' ORDER BY a.n)
      FROM pg_catalog.pg_proc p,
           unnest(p.proargnames, p.proallargtypes, p.proargmodes) WITH ORDINALITY AS a(name, typ, mode, n)
     WHERE p.oid = f AND a.mode IN ('o', 't')
$$;

-- Outbox rows of the fixture by name, with the token their relay holds.
CREATE TABLE wl_test.fixture (name text PRIMARY KEY, outbox_id bigint, lease_token bigint);

-- A fixture with rows in every state, so the digest has something to watch:
--   delivered  u1's email row, claimed and acked
--   dead       u1's sms row, claimed and failed once with max attempts 1
--   leased     u2's email row, claimed by "fixture-relay"
--   leased2    u2's sms row, claimed by "fixture-relay"
--   failed     u4's webhook row on resource ob-2, claimed and failed once
--   unclaimed  u3's webhook row on resource ob-2, never claimed
-- plus an offer u1 has seen, a rate limit on push and a resource with waves.
DO $$
DECLARE
    r record;
BEGIN
    PERFORM waitlist_create_resource('ob', interval '10 minutes', channels => '{email,sms}');
    PERFORM waitlist_create_resource('ob-2', interval '10 minutes');
    PERFORM waitlist_create_resource('ob-waves', interval '10 minutes',
                                     wave_size => 1, wave_interval => interval '1 hour');
    PERFORM waitlist_join('ob', u) FROM unnest(ARRAY['u1', 'u2', 'u3']) u;
    PERFORM waitlist_release('ob', 2, 'ob-event-1');
    FOR r IN SELECT * FROM waitlist_outbox_claim('fixture-relay', 10) LOOP
        INSERT INTO wl_test.fixture VALUES (
            CASE r.user_id || '/' || r.channel
                WHEN 'u1/email' THEN 'delivered' WHEN 'u1/sms' THEN 'dead'
                WHEN 'u2/email' THEN 'leased' WHEN 'u2/sms' THEN 'leased2' END,
            r.outbox_id, r.lease_token);
    END LOOP;
    PERFORM waitlist_outbox_ack(outbox_id, lease_token) FROM wl_test.fixture WHERE name = 'delivered';
    PERFORM set_config('waitlist.outbox_max_attempts', '1', true);
    PERFORM waitlist_outbox_fail(outbox_id, lease_token, 'fixture failure') FROM wl_test.fixture WHERE name = 'dead';
    PERFORM set_config('waitlist.outbox_max_attempts', '10', true);
    PERFORM waitlist_join('ob-2', u) FROM unnest(ARRAY['u4', 'u3']) u;
    PERFORM waitlist_release('ob-2', 2, 'ob-2-event-1');
    -- the oldest row first: u4's
    INSERT INTO wl_test.fixture
    SELECT 'failed', outbox_id, lease_token FROM waitlist_outbox_claim('fixture-relay-2', 1);
    PERFORM waitlist_outbox_fail(outbox_id, lease_token, 'fixture failure') FROM wl_test.fixture WHERE name = 'failed';
    INSERT INTO wl_test.fixture
    SELECT 'unclaimed', outbox_id, NULL FROM waitlist.outbox WHERE resource_id = 'ob-2' AND user_id = 'u3';
    PERFORM waitlist_offer_seen(offer_id) FROM waitlist.offer o
      JOIN waitlist.entry e USING (resource_id, entry_id) WHERE e.user_id = 'u1';
    PERFORM waitlist_set_channel_rate('push', 5, 10);
END
$$;

CREATE FUNCTION wl_test.row_of(n text) RETURNS bigint
LANGUAGE sql AS $$ SELECT outbox_id FROM wl_test.fixture WHERE name = n $$;
CREATE FUNCTION wl_test.token_of(n text) RETURNS bigint
LANGUAGE sql AS $$ SELECT lease_token FROM wl_test.fixture WHERE name = n $$;

CREATE ROLE wl_test_outsider NOLOGIN;

SELECT plan(237);

SELECT results_eq(
    $$SELECT f.name, b.state FROM wl_test.fixture f JOIN waitlist.outbox b USING (outbox_id) ORDER BY f.name$$,
    $$VALUES ('dead', 'DEAD'), ('delivered', 'DELIVERED'), ('failed', 'PENDING'), ('leased', 'PENDING'),
             ('leased2', 'PENDING'), ('unclaimed', 'PENDING')$$,
    'the fixture has outbox rows in every state');

------------------------------------------------------------------------------
-- Functions: exact signatures, return types and columns
------------------------------------------------------------------------------

SELECT has_function('waitlist_outbox_claim', ARRAY['text', 'integer', 'interval', 'text[]'],
    'waitlist_outbox_claim(text, integer, interval, text[]) exists');
SELECT function_returns('waitlist_outbox_claim', ARRAY['text', 'integer', 'interval', 'text[]'], 'setof record',
    'waitlist_outbox_claim returns a set of records');
SELECT is(wl_test.out_columns('waitlist_outbox_claim(text, integer, interval, text[])'),
    'outbox_id bigint, resource_id text, user_id text, channel text, event_type text, payload jsonb, '
    'created_at timestamp with time zone, attempts integer, lease_token bigint',
    'waitlist_outbox_claim returns (outbox_id, resource_id, user_id, channel, event_type, payload, created_at, attempts, lease_token)');

SELECT has_function('waitlist_outbox_ack', ARRAY['bigint', 'bigint'],
    'waitlist_outbox_ack(bigint, bigint) exists');
SELECT function_returns('waitlist_outbox_ack', ARRAY['bigint', 'bigint'], 'boolean',
    'waitlist_outbox_ack returns boolean');

SELECT has_function('waitlist_outbox_fail', ARRAY['bigint', 'bigint', 'text'],
    'waitlist_outbox_fail(bigint, bigint, text) exists');
SELECT function_returns('waitlist_outbox_fail', ARRAY['bigint', 'bigint', 'text'], 'boolean',
    'waitlist_outbox_fail returns boolean');

SELECT has_function('waitlist_outbox_retry', ARRAY['bigint'],
    'waitlist_outbox_retry(bigint) exists');
SELECT function_returns('waitlist_outbox_retry', ARRAY['bigint'], 'boolean',
    'waitlist_outbox_retry returns boolean');

SELECT has_function('waitlist_set_channel_rate', ARRAY['text', 'double precision', 'integer'],
    'waitlist_set_channel_rate(text, double precision, integer) exists');
SELECT function_returns('waitlist_set_channel_rate', ARRAY['text', 'double precision', 'integer'], 'void',
    'waitlist_set_channel_rate returns void');

SELECT has_function('waitlist_inbox', ARRAY['text', 'interval'],
    'waitlist_inbox(text, interval) exists');
SELECT function_returns('waitlist_inbox', ARRAY['text', 'interval'], 'setof record',
    'waitlist_inbox returns a set of records');
SELECT is(wl_test.out_columns('waitlist_inbox(text, interval)'),
    'resource_id text, entry_id bigint, offer_id bigint, kind text, state text, '
    'expires_at timestamp with time zone, seen_at timestamp with time zone, '
    'at timestamp with time zone, payload jsonb',
    'waitlist_inbox returns (resource_id, entry_id, offer_id, kind, state, expires_at, seen_at, at, payload)');

SELECT has_function('waitlist_offer_seen', ARRAY['bigint'],
    'waitlist_offer_seen(bigint) exists');
SELECT function_returns('waitlist_offer_seen', ARRAY['bigint'], 'boolean',
    'waitlist_offer_seen returns boolean');

SELECT set_eq(
    $$SELECT p.oid::regprocedure::text
        FROM pg_catalog.pg_proc p
       WHERE p.proname IN ('waitlist_outbox_claim', 'waitlist_outbox_ack', 'waitlist_outbox_fail',
                           'waitlist_outbox_retry', 'waitlist_set_channel_rate', 'waitlist_inbox',
                           'waitlist_offer_seen')$$,
    $$VALUES ('waitlist_outbox_claim(text,integer,interval,text[])'),
             ('waitlist_outbox_ack(bigint,bigint)'),
             ('waitlist_outbox_fail(bigint,bigint,text)'),
             ('waitlist_outbox_retry(bigint)'),
             ('waitlist_set_channel_rate(text,double precision,integer)'),
             ('waitlist_inbox(text,interval)'),
             ('waitlist_offer_seen(bigint)')$$,
    'each notification function has exactly one signature (no stray overloads)');

-- the arguments with their names and defaults
SELECT is(pg_catalog.pg_get_function_arguments('waitlist_outbox_claim(text, integer, interval, text[])'::regprocedure),
    'consumer text, max_rows integer DEFAULT 100, lease interval DEFAULT ''00:00:30''::interval, '
    'channels text[] DEFAULT NULL::text[], OUT outbox_id bigint, OUT resource_id text, OUT user_id text, OUT channel text, '
    'OUT event_type text, OUT payload jsonb, OUT created_at timestamp with time zone, '
    'OUT attempts integer, OUT lease_token bigint',
    'waitlist_outbox_claim takes (consumer, max_rows DEFAULT 100, lease DEFAULT 30 seconds, channels DEFAULT NULL)');
SELECT is(pg_catalog.pg_get_function_arguments('waitlist_outbox_ack(bigint, bigint)'::regprocedure),
    'outbox_id bigint, lease_token bigint',
    'waitlist_outbox_ack takes (outbox_id, lease_token)');
SELECT is(pg_catalog.pg_get_function_arguments('waitlist_outbox_fail(bigint, bigint, text)'::regprocedure),
    'outbox_id bigint, lease_token bigint, error text',
    'waitlist_outbox_fail takes (outbox_id, lease_token, error)');
SELECT is(pg_catalog.pg_get_function_arguments('waitlist_outbox_retry(bigint)'::regprocedure),
    'outbox_id bigint',
    'waitlist_outbox_retry takes (outbox_id)');
SELECT is(pg_catalog.pg_get_function_arguments('waitlist_set_channel_rate(text, double precision, integer)'::regprocedure),
    'channel text, rate_per_second double precision, burst integer DEFAULT NULL::integer',
    'waitlist_set_channel_rate takes (channel, rate_per_second, burst DEFAULT NULL)');
SELECT is(pg_catalog.pg_get_function_arguments('waitlist_inbox(text, interval)'::regprocedure),
    'user_id text, since interval DEFAULT ''7 days''::interval, '
    'OUT resource_id text, OUT entry_id bigint, OUT offer_id bigint, OUT kind text, OUT state text, '
    'OUT expires_at timestamp with time zone, OUT seen_at timestamp with time zone, '
    'OUT at timestamp with time zone, OUT payload jsonb',
    'waitlist_inbox takes (user_id, since DEFAULT 7 days)');
SELECT is(pg_catalog.pg_get_function_arguments('waitlist_offer_seen(bigint)'::regprocedure),
    'offer_id bigint',
    'waitlist_offer_seen takes (offer_id)');

SELECT is(
    (SELECT array_agg(p.proname::text ORDER BY p.proname)
       FROM pg_catalog.pg_proc p
      WHERE p.proname IN ('waitlist_outbox_claim', 'waitlist_outbox_ack', 'waitlist_outbox_fail',
                          'waitlist_outbox_retry', 'waitlist_set_channel_rate', 'waitlist_inbox',
                          'waitlist_offer_seen')
        AND (p.proisstrict OR p.provolatile <> 'v')),
    NULL,
    'every notification function is VOLATILE and not STRICT (a NULL argument raises an error)');

------------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC or a plain role
------------------------------------------------------------------------------

SELECT function_privs_are('waitlist_outbox_claim', ARRAY['text', 'integer', 'interval', 'text[]'],
    'wl_test_outsider', ARRAY[]::name[], 'a plain role may not execute waitlist_outbox_claim');
SELECT function_privs_are('waitlist_outbox_ack', ARRAY['bigint', 'bigint'],
    'wl_test_outsider', ARRAY[]::name[], 'a plain role may not execute waitlist_outbox_ack');
SELECT function_privs_are('waitlist_outbox_fail', ARRAY['bigint', 'bigint', 'text'],
    'wl_test_outsider', ARRAY[]::name[], 'a plain role may not execute waitlist_outbox_fail');
SELECT function_privs_are('waitlist_outbox_retry', ARRAY['bigint'],
    'wl_test_outsider', ARRAY[]::name[], 'a plain role may not execute waitlist_outbox_retry');
SELECT function_privs_are('waitlist_set_channel_rate', ARRAY['text', 'double precision', 'integer'],
    'wl_test_outsider', ARRAY[]::name[], 'a plain role may not execute waitlist_set_channel_rate');
SELECT function_privs_are('waitlist_inbox', ARRAY['text', 'interval'],
    'wl_test_outsider', ARRAY[]::name[], 'a plain role may not execute waitlist_inbox');
SELECT function_privs_are('waitlist_offer_seen', ARRAY['bigint'],
    'wl_test_outsider', ARRAY[]::name[], 'a plain role may not execute waitlist_offer_seen');

SELECT is(wl_test.sqlstate_as('wl_test_outsider', $$SELECT count(*) FROM waitlist_outbox_claim('outsider')$$),
    '42501', 'calling waitlist_outbox_claim without EXECUTE is refused (42501)');
SELECT is(wl_test.sqlstate_as('wl_test_outsider', $$SELECT count(*) FROM waitlist.channel$$),
    '42501', 'a plain role cannot read waitlist.channel (42501)');
GRANT EXECUTE ON FUNCTION waitlist_inbox(text, interval) TO wl_test_outsider;
SELECT is(wl_test.sqlstate_as('wl_test_outsider', $$SELECT count(*) FROM waitlist_inbox('u1')$$),
    '00000', 'with EXECUTE on waitlist_inbox and no table privileges, a role can read an inbox');

------------------------------------------------------------------------------
-- Settings
------------------------------------------------------------------------------

SELECT results_eq(
    $$SELECT name, boot_val, unit, context, vartype, min_val, max_val FROM pg_catalog.pg_settings
       WHERE name IN ('waitlist.notify_channel', 'waitlist.outbox_max_attempts', 'waitlist.outbox_retry_base')
       ORDER BY name$$,
    $$VALUES ('waitlist.notify_channel'::text, ''::text, NULL::text, 'superuser'::text, 'string'::text, NULL::text, NULL::text),
             ('waitlist.outbox_max_attempts', '10', NULL, 'superuser', 'integer', '1', '1000'),
             ('waitlist.outbox_retry_base', '1000', 'ms', 'superuser', 'integer', '1', '3600000')$$,
    'waitlist.notify_channel (default empty: no NOTIFY), outbox_max_attempts (10) and outbox_retry_base (1 s) are superuser settings');

SELECT throws_ok($$SET LOCAL waitlist.outbox_max_attempts = 0$$, '22023', NULL,
    'waitlist.outbox_max_attempts = 0 is refused (22023)');
SELECT throws_ok($$SET LOCAL waitlist.outbox_max_attempts = 1001$$, '22023', NULL,
    'waitlist.outbox_max_attempts = 1001 is refused (22023)');
SELECT throws_ok($$SET LOCAL waitlist.outbox_retry_base = 0$$, '22023', NULL,
    'waitlist.outbox_retry_base = 0 is refused (22023)');
SELECT throws_ok($$SET LOCAL waitlist.outbox_retry_base = '2h'$$, '22023', NULL,
    'waitlist.outbox_retry_base over an hour is refused (22023)');
SELECT throws_ok(format('SET LOCAL waitlist.notify_channel = %L', repeat('c', 64)), '22023', NULL,
    'a waitlist.notify_channel of 64 bytes is refused (22023)');
SELECT lives_ok(format('SET LOCAL waitlist.notify_channel = %L', repeat('c', 63)),
    'a waitlist.notify_channel of 63 bytes is accepted');
RESET waitlist.notify_channel;
SELECT is(wl_test.sqlstate_as('wl_test_outsider', $$SET waitlist.notify_channel = 'relays'$$),
    '42501', 'a plain role cannot set waitlist.notify_channel (42501)');
SELECT is(wl_test.sqlstate_as('wl_test_outsider', $$SET waitlist.outbox_max_attempts = 3$$),
    '42501', 'a plain role cannot set waitlist.outbox_max_attempts (42501)');
SELECT is(wl_test.sqlstate_as('wl_test_outsider', $$SET waitlist.outbox_retry_base = 5$$),
    '42501', 'a plain role cannot set waitlist.outbox_retry_base (42501)');

------------------------------------------------------------------------------
-- Tables, columns and the view
------------------------------------------------------------------------------

SELECT has_table('waitlist', 'channel', 'table waitlist.channel exists');
SELECT col_is_pk('waitlist', 'channel', 'channel', 'channel is the primary key of waitlist.channel');
SELECT col_type_is('waitlist', 'channel', 'rate_per_second', 'double precision', 'waitlist.channel.rate_per_second is double precision');
SELECT col_type_is('waitlist', 'channel', 'burst', 'integer', 'waitlist.channel.burst is integer');
SELECT col_type_is('waitlist', 'channel', 'tokens', 'double precision', 'waitlist.channel.tokens is double precision');
SELECT col_type_is('waitlist', 'channel', 'refilled_at', 'timestamp with time zone', 'waitlist.channel.refilled_at is timestamp with time zone');
SELECT results_eq($$SELECT channel FROM waitlist.channel ORDER BY channel$$,
    $$VALUES ('booking'::text), ('email'), ('push'), ('sms'), ('webhook')$$,
    'waitlist.channel has one row per channel: booking, email, push, sms, webhook');
SELECT results_eq(
    $$SELECT channel, rate_per_second, burst FROM waitlist.channel ORDER BY channel$$,
    $$VALUES ('booking'::text, NULL::float8, NULL::integer), ('email', NULL, NULL), ('push', 5, 10), ('sms', NULL, NULL), ('webhook', NULL, NULL)$$,
    'channels are unlimited until a rate is set (push has the fixture''s 5/s, burst 10)');

SELECT col_type_is('waitlist', 'outbox', 'channel', 'text', 'waitlist.outbox.channel is text');
SELECT col_type_is('waitlist', 'outbox', 'user_id', 'text', 'waitlist.outbox.user_id is text');
SELECT col_type_is('waitlist', 'outbox', 'state', 'text', 'waitlist.outbox.state is text');
SELECT col_type_is('waitlist', 'outbox', 'attempts', 'integer', 'waitlist.outbox.attempts is integer');
SELECT col_type_is('waitlist', 'outbox', 'next_attempt_at', 'timestamp with time zone', 'waitlist.outbox.next_attempt_at is timestamp with time zone');
SELECT col_type_is('waitlist', 'outbox', 'lease_owner', 'text', 'waitlist.outbox.lease_owner is text');
SELECT col_type_is('waitlist', 'outbox', 'lease_token', 'bigint', 'waitlist.outbox.lease_token is bigint');
SELECT col_type_is('waitlist', 'outbox', 'lease_expires_at', 'timestamp with time zone', 'waitlist.outbox.lease_expires_at is timestamp with time zone');
SELECT col_type_is('waitlist', 'outbox', 'delivered_at', 'timestamp with time zone', 'waitlist.outbox.delivered_at is timestamp with time zone');
SELECT col_type_is('waitlist', 'outbox', 'last_error', 'text', 'waitlist.outbox.last_error is text');
SELECT has_sequence('waitlist', 'lease_token_seq', 'sequence waitlist.lease_token_seq exists');

SELECT col_type_is('waitlist', 'resource', 'channels', 'text[]', 'waitlist.resource.channels is text[]');
SELECT col_default_is('waitlist', 'resource', 'channels', '{webhook}', 'waitlist.resource.channels defaults to {webhook}');
SELECT col_type_is('waitlist', 'resource', 'wave_size', 'integer', 'waitlist.resource.wave_size is integer');
SELECT col_type_is('waitlist', 'resource', 'wave_interval', 'interval', 'waitlist.resource.wave_interval is interval');
SELECT col_type_is('waitlist', 'resource', 'wave_started_at', 'timestamp with time zone', 'waitlist.resource.wave_started_at is timestamp with time zone');
SELECT col_type_is('waitlist', 'resource', 'wave_offers', 'integer', 'waitlist.resource.wave_offers is integer');
SELECT col_type_is('waitlist', 'offer', 'seen_at', 'timestamp with time zone', 'waitlist.offer.seen_at is timestamp with time zone');

SELECT has_view('waitlist', 'offer_outcomes', 'view waitlist.offer_outcomes exists');
SELECT is(
    (SELECT string_agg(a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
       FROM pg_catalog.pg_attribute a
      WHERE a.attrelid = 'waitlist.offer_outcomes'::regclass AND a.attnum > 0 AND NOT a.attisdropped),
    'resource_id text, offers bigint, open bigint, accepted bigint, declined bigint, expired bigint, '
    'expired_unseen bigint, seen bigint, median_seconds_to_seen double precision',
    'waitlist.offer_outcomes has its columns');
SELECT results_eq(
    $$SELECT resource_id, offers, open, seen FROM waitlist.offer_outcomes ORDER BY resource_id$$,
    $$VALUES ('ob'::text, 2::bigint, 2::bigint, 1::bigint), ('ob-2', 2, 2, 0)$$,
    'waitlist.offer_outcomes counts the fixture''s offers and the one u1 saw');

-- the constraints hold whatever the code does
SELECT throws_ok(
    $$INSERT INTO waitlist.outbox (resource_id, channel, event_type, payload) VALUES ('ob', 'fax', 'offer_created', '{}')$$,
    '23514', NULL, 'an outbox row on an unknown channel is rejected (23514)');
SELECT throws_ok(
    $$INSERT INTO waitlist.outbox (resource_id, state, event_type, payload) VALUES ('ob', 'SENT', 'offer_created', '{}')$$,
    '23514', NULL, 'an outbox row in an unknown state is rejected (23514)');
SELECT throws_ok(
    $$UPDATE waitlist.resource SET channels = '{}' WHERE resource_id = 'ob'$$,
    '23514', NULL, 'a resource without channels is rejected (23514)');
SELECT throws_ok(
    $$UPDATE waitlist.resource SET wave_interval = NULL WHERE resource_id = 'ob-waves'$$,
    '23514', NULL, 'a wave size without a wave interval is rejected (23514)');
SELECT throws_ok(
    $$UPDATE waitlist.channel SET rate_per_second = 0 WHERE channel = 'sms'$$,
    '23514', NULL, 'a channel rate of 0 is rejected (23514)');
SELECT throws_ok(
    $$UPDATE waitlist.channel SET rate_per_second = 1e308, burst = 1 WHERE channel = 'sms'$$,
    '23514', NULL, 'a channel rate of 1e308 is rejected (23514)');
SELECT throws_ok(
    $$UPDATE waitlist.channel SET burst = 1000001 WHERE channel = 'push'$$,
    '23514', NULL, 'a burst over 1000000 is rejected (23514)');
SELECT throws_ok(
    $$UPDATE waitlist.channel SET burst = NULL WHERE channel = 'push'$$,
    '23514', NULL, 'a rate without a burst is rejected (23514)');

------------------------------------------------------------------------------
-- waitlist_outbox_claim: 22004, 22023, 22001
------------------------------------------------------------------------------

SELECT wl_test.rejects($$SELECT * FROM waitlist_outbox_claim(NULL)$$, '22004',
    'waitlist_outbox_claim with NULL consumer');
SELECT wl_test.rejects($$SELECT * FROM waitlist_outbox_claim('relay', NULL)$$, '22004',
    'waitlist_outbox_claim with NULL max_rows');
SELECT wl_test.rejects($$SELECT * FROM waitlist_outbox_claim('relay', 10, NULL)$$, '22004',
    'waitlist_outbox_claim with NULL lease');
SELECT wl_test.rejects($$SELECT * FROM waitlist_outbox_claim('relay', 10, interval '1 day 1 microsecond')$$, '22023',
    'waitlist_outbox_claim with a lease just over a day');
SELECT wl_test.rejects($$SELECT * FROM waitlist_outbox_claim('relay', 10, interval '100000000 years')$$, '22023',
    'waitlist_outbox_claim with a lease of 100000000 years');
SELECT wl_test.rejects($$SELECT * FROM waitlist_outbox_claim('')$$, '22023',
    'waitlist_outbox_claim with an empty consumer');
SELECT wl_test.rejects($$SELECT * FROM waitlist_outbox_claim(repeat('r', 201))$$, '22001',
    'waitlist_outbox_claim with a 201-byte consumer');
SELECT wl_test.rejects($$SELECT * FROM waitlist_outbox_claim('relay', 0)$$, '22023',
    'waitlist_outbox_claim with max_rows 0');
SELECT wl_test.rejects($$SELECT * FROM waitlist_outbox_claim('relay', -1)$$, '22023',
    'waitlist_outbox_claim with max_rows -1');
SELECT wl_test.rejects($$SELECT * FROM waitlist_outbox_claim('relay', 10001)$$, '22023',
    'waitlist_outbox_claim with max_rows 10001');
SELECT wl_test.rejects($$SELECT * FROM waitlist_outbox_claim('relay', 2147483647)$$, '22023',
    'waitlist_outbox_claim with max_rows 2147483647');
SELECT wl_test.rejects($$SELECT * FROM waitlist_outbox_claim('relay', 10, interval '0')$$, '22023',
    'waitlist_outbox_claim with lease 0');
SELECT wl_test.rejects($$SELECT * FROM waitlist_outbox_claim('relay', 10, interval '-1 second')$$, '22023',
    'waitlist_outbox_claim with lease -1 second');
SELECT wl_test.rejects($$SELECT * FROM waitlist_outbox_claim('relay', 10, interval '1 day -24 hours')$$, '22023',
    'waitlist_outbox_claim with lease 1 day -24 hours (zero)');
SELECT wl_test.rejects($$SELECT * FROM waitlist_outbox_claim('relay', 10, interval '-1 month')$$, '22023',
    'waitlist_outbox_claim with lease -1 month');
SELECT wl_test.rejects($$SELECT * FROM waitlist_outbox_claim('', 0, interval '0')$$, '22023',
    'waitlist_outbox_claim with everything wrong');

------------------------------------------------------------------------------
-- waitlist_outbox_ack: 22004, 42704, WL005; a repeated ack is harmless
------------------------------------------------------------------------------

SELECT wl_test.rejects($$SELECT waitlist_outbox_ack(NULL, 1)$$, '22004',
    'waitlist_outbox_ack with NULL outbox_id');
SELECT wl_test.rejects(format('SELECT waitlist_outbox_ack(%s, NULL)', wl_test.row_of('leased')), '22004',
    'waitlist_outbox_ack with NULL lease_token');
SELECT wl_test.rejects($$SELECT waitlist_outbox_ack(-1, NULL)$$, '22004',
    'waitlist_outbox_ack of an unknown row with NULL lease_token');
SELECT wl_test.rejects(
    format('SELECT waitlist_outbox_ack(%s, 1)', (SELECT max(outbox_id) + 1000 FROM waitlist.outbox)), '42704',
    'waitlist_outbox_ack of an unknown row');
SELECT wl_test.rejects($$SELECT waitlist_outbox_ack(0, 1)$$, '42704',
    'waitlist_outbox_ack of row 0');
SELECT wl_test.rejects(
    format('SELECT waitlist_outbox_ack(%s, %s)', wl_test.row_of('leased'), wl_test.token_of('leased') + 1000), 'WL005',
    'waitlist_outbox_ack of a leased row with a made-up token');
SELECT wl_test.rejects(
    format('SELECT waitlist_outbox_ack(%s, %s)', wl_test.row_of('leased'), -wl_test.token_of('leased')), 'WL005',
    'waitlist_outbox_ack of a leased row with a negative token');
SELECT wl_test.rejects(
    format('SELECT waitlist_outbox_ack(%s, %s)', wl_test.row_of('unclaimed'), wl_test.token_of('leased')), 'WL005',
    'waitlist_outbox_ack of a row nobody claimed');
SELECT wl_test.rejects(
    format('SELECT waitlist_outbox_ack(%s, %s)', wl_test.row_of('dead'), wl_test.token_of('dead')), 'WL005',
    'waitlist_outbox_ack of a dead row with the token it was claimed with');
SELECT wl_test.no_change(
    format('SELECT waitlist_outbox_ack(%s, %s)', wl_test.row_of('delivered'), wl_test.token_of('delivered')), 'true',
    'a repeated waitlist_outbox_ack with the same token');
SELECT wl_test.rejects(
    format('SELECT waitlist_outbox_ack(%s, %s)', wl_test.row_of('delivered'), wl_test.token_of('delivered') + 1), 'WL005',
    'waitlist_outbox_ack of a delivered row with another token');

------------------------------------------------------------------------------
-- waitlist_outbox_fail: 22004, 42704, WL005
------------------------------------------------------------------------------

SELECT wl_test.rejects(format('SELECT waitlist_outbox_fail(NULL, %s, %L)', wl_test.token_of('leased'), 'e'), '22004',
    'waitlist_outbox_fail with NULL outbox_id');
SELECT wl_test.rejects(format('SELECT waitlist_outbox_fail(%s, NULL, %L)', wl_test.row_of('leased'), 'e'), '22004',
    'waitlist_outbox_fail with NULL lease_token');
SELECT wl_test.rejects(format('SELECT waitlist_outbox_fail(%s, %s, NULL)', wl_test.row_of('leased'), wl_test.token_of('leased')), '22004',
    'waitlist_outbox_fail with NULL error');
SELECT wl_test.rejects(
    format('SELECT waitlist_outbox_fail(%s, 1, %L)', (SELECT max(outbox_id) + 1000 FROM waitlist.outbox), 'e'), '42704',
    'waitlist_outbox_fail of an unknown row');
SELECT wl_test.rejects(
    format('SELECT waitlist_outbox_fail(%s, %s, %L)', wl_test.row_of('leased'), wl_test.token_of('leased') + 1000, 'e'), 'WL005',
    'waitlist_outbox_fail of a leased row with a made-up token');
SELECT wl_test.rejects(
    format('SELECT waitlist_outbox_fail(%s, %s, %L)', wl_test.row_of('unclaimed'), wl_test.token_of('leased'), 'e'), 'WL005',
    'waitlist_outbox_fail of a row nobody claimed');
SELECT wl_test.rejects(
    format('SELECT waitlist_outbox_fail(%s, %s, %L)', wl_test.row_of('dead'), wl_test.token_of('dead'), 'e'), 'WL005',
    'waitlist_outbox_fail of a dead row');
SELECT wl_test.rejects(
    format('SELECT waitlist_outbox_fail(%s, %s, %L)', wl_test.row_of('delivered'), wl_test.token_of('delivered'), 'e'), 'WL005',
    'waitlist_outbox_fail of a delivered row with its token');
-- a fail ends the lease: its token can neither fail the row again (counting
-- one failure twice) nor ack it
SELECT wl_test.rejects(
    format('SELECT waitlist_outbox_fail(%s, %s, %L)', wl_test.row_of('failed'), wl_test.token_of('failed'), 'e'), 'WL005',
    'waitlist_outbox_fail again with the token of a lease a fail ended');
SELECT wl_test.rejects(
    format('SELECT waitlist_outbox_ack(%s, %s)', wl_test.row_of('failed'), wl_test.token_of('failed')), 'WL005',
    'waitlist_outbox_ack with the token of a lease a fail ended');

------------------------------------------------------------------------------
-- waitlist_outbox_retry: 22004, 42704; only a dead row is revived
------------------------------------------------------------------------------

SELECT wl_test.rejects($$SELECT waitlist_outbox_retry(NULL)$$, '22004',
    'waitlist_outbox_retry with NULL outbox_id');
SELECT wl_test.rejects(
    format('SELECT waitlist_outbox_retry(%s)', (SELECT max(outbox_id) + 1000 FROM waitlist.outbox)), '42704',
    'waitlist_outbox_retry of an unknown row');
SELECT wl_test.rejects($$SELECT waitlist_outbox_retry(-1)$$, '42704',
    'waitlist_outbox_retry of row -1');
SELECT wl_test.no_change(format('SELECT waitlist_outbox_retry(%s)', wl_test.row_of('leased')), 'false',
    'waitlist_outbox_retry of a pending, leased row');
SELECT wl_test.no_change(format('SELECT waitlist_outbox_retry(%s)', wl_test.row_of('unclaimed')), 'false',
    'waitlist_outbox_retry of a pending row nobody claimed');
SELECT wl_test.no_change(format('SELECT waitlist_outbox_retry(%s)', wl_test.row_of('delivered')), 'false',
    'waitlist_outbox_retry of a delivered row');

------------------------------------------------------------------------------
-- waitlist_set_channel_rate: 22004, 22001, 22023
------------------------------------------------------------------------------

SELECT wl_test.rejects($$SELECT waitlist_set_channel_rate(NULL, 1)$$, '22004',
    'waitlist_set_channel_rate with NULL channel');
SELECT wl_test.rejects($$SELECT waitlist_set_channel_rate('', 1)$$, '22023',
    'waitlist_set_channel_rate with an empty channel');
SELECT wl_test.rejects($$SELECT waitlist_set_channel_rate(repeat('c', 201), 1)$$, '22001',
    'waitlist_set_channel_rate with a 201-byte channel');
SELECT wl_test.rejects($$SELECT waitlist_set_channel_rate('fax', 1)$$, '22023',
    'waitlist_set_channel_rate of an unknown channel');
SELECT wl_test.rejects($$SELECT waitlist_set_channel_rate('SMS', 1)$$, '22023',
    'waitlist_set_channel_rate of a channel differing only in case');
SELECT wl_test.rejects($$SELECT waitlist_set_channel_rate('fax', NULL)$$, '22023',
    'waitlist_set_channel_rate of an unknown channel, unlimited');
SELECT wl_test.rejects($$SELECT waitlist_set_channel_rate('sms', 0)$$, '22023',
    'waitlist_set_channel_rate with rate 0');
SELECT wl_test.rejects($$SELECT waitlist_set_channel_rate('sms', -1)$$, '22023',
    'waitlist_set_channel_rate with rate -1');
SELECT wl_test.rejects($$SELECT waitlist_set_channel_rate('sms', 'NaN')$$, '22023',
    'waitlist_set_channel_rate with rate NaN');
SELECT wl_test.rejects($$SELECT waitlist_set_channel_rate('sms', 'Infinity')$$, '22023',
    'waitlist_set_channel_rate with rate Infinity');
SELECT wl_test.rejects($$SELECT waitlist_set_channel_rate('sms', '-Infinity')$$, '22023',
    'waitlist_set_channel_rate with rate -Infinity');
SELECT wl_test.rejects($$SELECT waitlist_set_channel_rate('sms', 1, 0)$$, '22023',
    'waitlist_set_channel_rate with burst 0');
SELECT wl_test.rejects($$SELECT waitlist_set_channel_rate('push', 1, -1)$$, '22023',
    'waitlist_set_channel_rate with burst -1');
SELECT wl_test.rejects($$SELECT waitlist_set_channel_rate('sms', 1e308)$$, '22023',
    'waitlist_set_channel_rate with rate 1e308');
SELECT wl_test.rejects($$SELECT waitlist_set_channel_rate('sms', 1000000.5)$$, '22023',
    'waitlist_set_channel_rate with rate just over 1000000');
SELECT wl_test.rejects($$SELECT waitlist_set_channel_rate('sms', 0.0000009)$$, '22023',
    'waitlist_set_channel_rate with rate just under 0.000001');
SELECT wl_test.rejects($$SELECT waitlist_set_channel_rate('sms', 1e-320)$$, '22023',
    'waitlist_set_channel_rate with rate 1e-320');
SELECT wl_test.rejects($$SELECT waitlist_set_channel_rate('sms', 1, 1000001)$$, '22023',
    'waitlist_set_channel_rate with burst 1000001');
SELECT lives_ok($$SELECT waitlist_set_channel_rate('sms', 1000000), waitlist_set_channel_rate('email', 0.000001, 1000000)$$,
    'the bounds themselves are accepted');
SELECT results_eq($$SELECT channel, rate_per_second, burst FROM waitlist.channel WHERE channel IN ('email', 'sms') ORDER BY channel$$,
    $$VALUES ('email'::text, 0.000001::float8, 1000000), ('sms', 1000000, 1000000)$$,
    '... and stored');
SELECT lives_ok($$SELECT waitlist_set_channel_rate('sms', NULL), waitlist_set_channel_rate('email', NULL)$$,
    'both channels unlimited again');

------------------------------------------------------------------------------
-- waitlist_inbox: 22004, 22023, 22001; reading changes nothing
------------------------------------------------------------------------------

SELECT wl_test.rejects($$SELECT * FROM waitlist_inbox(NULL)$$, '22004',
    'waitlist_inbox with NULL user_id');
SELECT wl_test.rejects($$SELECT * FROM waitlist_inbox('u1', NULL)$$, '22004',
    'waitlist_inbox with NULL since');
SELECT wl_test.rejects($$SELECT * FROM waitlist_inbox('')$$, '22023',
    'waitlist_inbox with an empty user_id');
SELECT wl_test.rejects($$SELECT * FROM waitlist_inbox(repeat('u', 201))$$, '22001',
    'waitlist_inbox with a 201-byte user_id');
SELECT wl_test.no_change($$SELECT string_agg(kind, ',' ORDER BY kind) FROM waitlist_inbox('u1')$$,
    'offer_created,open_offer', 'waitlist_inbox of a user with an open offer');
SELECT wl_test.no_change($$SELECT count(*) FROM waitlist_inbox('nobody')$$, '0',
    'waitlist_inbox of a user without rows');
SELECT wl_test.no_change($$SELECT count(*) = (SELECT count(*) FROM waitlist_inbox('u1')) FROM waitlist_inbox('u1', interval '100000000 years')$$,
    'true', 'waitlist_inbox since 100000000 years: all of the history, not an error');
SELECT wl_test.no_change($$SELECT count(*) = (SELECT count(*) FROM waitlist_inbox('u1', interval '0')) FROM waitlist_inbox('u1', interval '-100000000 years')$$,
    'true', 'waitlist_inbox since -100000000 years: as since 0, not an error');

------------------------------------------------------------------------------
-- waitlist_offer_seen: 22004, 42704; a second sighting changes nothing
------------------------------------------------------------------------------

SELECT wl_test.rejects($$SELECT waitlist_offer_seen(NULL)$$, '22004',
    'waitlist_offer_seen with NULL offer_id');
SELECT wl_test.rejects(
    format('SELECT waitlist_offer_seen(%s)', (SELECT max(offer_id) + 1000 FROM waitlist.offer)), '42704',
    'waitlist_offer_seen of an unknown offer');
SELECT wl_test.rejects($$SELECT waitlist_offer_seen(-1)$$, '42704',
    'waitlist_offer_seen of offer -1');
SELECT wl_test.no_change(
    format('SELECT waitlist_offer_seen(%s)',
           (SELECT o.offer_id FROM waitlist.offer o JOIN waitlist.entry e USING (resource_id, entry_id)
             WHERE e.user_id = 'u1')),
    'false', 'waitlist_offer_seen of an offer seen before');

------------------------------------------------------------------------------
-- After all these errors the API frames are unwound: the calls work, and a
-- change by hand is audited as manual
------------------------------------------------------------------------------

SELECT is(waitlist_outbox_ack(wl_test.row_of('leased'), wl_test.token_of('leased')), true,
    'the fixture relay acks its leased row');
SELECT is(waitlist_outbox_fail(wl_test.row_of('leased2'), wl_test.token_of('leased2'), 'HTTP 503'), false,
    'the fixture relay fails its other leased row, not dead yet');
SELECT is(waitlist_outbox_retry(wl_test.row_of('dead')), true,
    'the dead row is revived');
SELECT results_eq(
    $$SELECT f.name, b.state, b.attempts FROM wl_test.fixture f JOIN waitlist.outbox b USING (outbox_id) ORDER BY f.name$$,
    $$VALUES ('dead', 'PENDING', 0), ('delivered', 'DELIVERED', 0), ('failed', 'PENDING', 1), ('leased', 'DELIVERED', 0),
             ('leased2', 'PENDING', 1), ('unclaimed', 'PENDING', 0)$$,
    '... and the rows are where those calls put them');
UPDATE waitlist.entry SET state = 'CANCELLED' WHERE resource_id = 'ob' AND user_id = 'u3';
SELECT is(
    (SELECT reason FROM waitlist.transition
      WHERE entity = 'entry' AND to_state = 'CANCELLED'
        AND entity_id = (SELECT entry_id FROM waitlist.entry WHERE resource_id = 'ob' AND user_id = 'u3')),
    'manual',
    'a manual UPDATE after the failed calls is recorded as manual');

SELECT * FROM finish();
ROLLBACK;
