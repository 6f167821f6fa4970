-- pgTAP: duties, granted with waitlist_grant() and revoked with waitlist_revoke().
--
-- Per duty: a role holding only that duty can do its job, and every other
-- function of the extension refuses it with 42501.  A role with no duty is
-- refused by every function; nothing is granted to PUBLIC; only the owner
-- (or whom the owner lets) hands out duties; revoking one duty keeps what
-- another still needs.
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

-- every function of the extension, in both its schemas
CREATE VIEW wl_test.member_functions AS
SELECT p.oid::regprocedure AS f
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_depend d
  ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass
  AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'waitlist');

-- a call of the function with NULL for every argument: enough to meet the
-- privilege check, which comes before anything the function does (a
-- subquery rather than a constant, or the planner would fold a strict
-- function's call to NULL without checking)
CREATE FUNCTION wl_test.null_call(f regprocedure) RETURNS text
LANGUAGE sql AS $$
    SELECT format(CASE p.prokind WHEN 'p' THEN 'CALL %I.%I(%s)' ELSE 'SELECT %I.%I(%s)' END,
                  n.nspname, p.proname,
                  -- CALL takes no subqueries, and a procedure's call is never folded
                  coalesce((SELECT string_agg(format(CASE p.prokind WHEN 'p' THEN 'NULL::%s' ELSE '(SELECT NULL::%s)' END,
                                                     format_type(t, NULL)), ', ' ORDER BY i)
                            FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, i)), ''))
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE p.oid = f
$$;

-- the functions of the extension outside the duties listed that do not
-- refuse the role with 42501 (NULL when all do)
CREATE FUNCTION wl_test.not_refused(r name, duties text[]) RETURNS text[]
LANGUAGE sql AS $$
    SELECT array_agg(m.f::text || ' gave ' || wl_test.sqlstate_as(r, wl_test.null_call(m.f)) ORDER BY m.f::text)
    FROM wl_test.member_functions m
    WHERE m.f NOT IN (SELECT d.object_name::regprocedure FROM waitlist_duty_privileges() d
                      WHERE d.duty = ANY (duties) AND d.object_type IN ('FUNCTION', 'PROCEDURE'))
      AND wl_test.sqlstate_as(r, wl_test.null_call(m.f)) <> '42501'
$$;

-- what the role holds beyond the duties listed, and what of them it lacks
CREATE FUNCTION wl_test.privileges_off(r name, duties text[]) RETURNS text[]
LANGUAGE sql AS $$
    SELECT array_agg(x ORDER BY x) FROM (
        SELECT 'extra ' || m.f::text AS x
        FROM wl_test.member_functions m
        WHERE has_function_privilege(r, m.f, 'EXECUTE')
          AND m.f NOT IN (SELECT d.object_name::regprocedure FROM waitlist_duty_privileges() d
                          WHERE d.duty = ANY (duties) AND d.object_type IN ('FUNCTION', 'PROCEDURE'))
        UNION ALL
        SELECT 'extra ' || c.oid::regclass::text
        FROM pg_catalog.pg_class c
        WHERE c.relnamespace = 'waitlist'::regnamespace AND c.relkind IN ('r', 'v', 'p', 'S')
          AND (has_table_privilege(r, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
               OR (c.relkind = 'S' AND has_sequence_privilege(r, c.oid, 'USAGE, SELECT, UPDATE')))
          AND c.oid NOT IN (SELECT d.object_name::regclass FROM waitlist_duty_privileges() d
                            WHERE d.duty = ANY (duties) AND d.object_type = 'TABLE')
        UNION ALL
        SELECT 'missing ' || d.object_type || ' ' || d.object_name
        FROM waitlist_duty_privileges() d
        WHERE d.duty = ANY (duties)
          AND NOT CASE d.object_type
                      WHEN 'FUNCTION' THEN has_function_privilege(r, d.object_name::regprocedure, d.privilege)
                      WHEN 'PROCEDURE' THEN has_function_privilege(r, d.object_name::regprocedure, d.privilege)
                      WHEN 'TABLE' THEN has_table_privilege(r, d.object_name::regclass, d.privilege)
                      ELSE has_schema_privilege(r, d.object_name, d.privilege)
                  END
        UNION ALL
        SELECT 'extra schema waitlist ' || p
        FROM unnest(ARRAY['USAGE', 'CREATE']) p
        WHERE has_schema_privilege(r, 'waitlist', p)
          AND NOT EXISTS (SELECT 1 FROM waitlist_duty_privileges() d
                          WHERE d.duty = ANY (duties) AND d.object_type = 'SCHEMA' AND d.privilege = p)) o
$$;

SELECT plan(97);

------------------------------------------------------------------------------
-- Nothing for PUBLIC, nothing for a role without a duty
------------------------------------------------------------------------------

SELECT is(
    (SELECT array_agg(m.f::text ORDER BY m.f::text)
       FROM wl_test.member_functions m JOIN pg_catalog.pg_proc p ON p.oid = m.f
      WHERE p.proacl IS NULL
         OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0)),
    NULL,
    'no function of the extension, in either schema, grants anything to PUBLIC');
SELECT is(
    (SELECT array_agg(c.oid::regclass::text ORDER BY 1)
       FROM pg_catalog.pg_class c
      WHERE c.relnamespace = 'waitlist'::regnamespace
        AND EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee = 0)),
    NULL,
    'no table, view or sequence of schema waitlist grants anything to PUBLIC');

CREATE ROLE wl_test_nobody NOLOGIN;
SELECT is(wl_test.not_refused('wl_test_nobody', '{}'), NULL,
    'a role with no duty gets 42501 from every function of the extension');
SELECT is(wl_test.privileges_off('wl_test_nobody', '{}'), NULL,
    'a role with no duty holds no privilege on the extension''s objects');
SELECT is(wl_test.sqlstate_as('wl_test_nobody', 'SELECT waitlist_metrics()'), '42501',
    'a role with no duty cannot read the metrics');
SELECT is(wl_test.sqlstate_as('wl_test_nobody', 'SELECT * FROM waitlist.resource_stats'), '42501',
    'a role with no duty cannot read the stats views');

------------------------------------------------------------------------------
-- Granting: arguments and who may
------------------------------------------------------------------------------

SELECT wl_test.rejects($$SELECT waitlist_grant('wl_test_nobody', 'janitor')$$, '22023', 'an unknown duty');
SELECT wl_test.rejects($$SELECT waitlist_grant('wl_test_nobody', NULL)$$, '22004', 'a NULL duty');
SELECT wl_test.rejects($$SELECT waitlist_grant(NULL, 'app')$$, '22004', 'a NULL role');
SELECT wl_test.rejects($$SELECT waitlist_revoke('wl_test_nobody', 'APP')$$, '22023', 'a duty in the wrong case');
SELECT throws_ok($$SELECT waitlist_grant(4294967295::oid::regrole, 'app')$$, '42704', NULL,
    'a role that does not exist raises 42704');
SELECT wl_test.rejects($$SELECT waitlist_revoke(current_user::regrole, 'app')$$, '22023',
    'revoking a duty from the extension owner');

CREATE ROLE wl_test_app NOLOGIN;
CREATE ROLE wl_test_booking NOLOGIN;
CREATE ROLE wl_test_relay NOLOGIN;
CREATE ROLE wl_test_admin NOLOGIN;
CREATE ROLE wl_test_monitor NOLOGIN;
CREATE ROLE wl_test_token NOLOGIN;
SELECT lives_ok($$SELECT waitlist_grant('wl_test_app', 'app')$$, 'the owner grants app');
SELECT lives_ok($$SELECT waitlist_grant('wl_test_app', 'app')$$, 'granting a duty twice is harmless');
SELECT lives_ok($$SELECT waitlist_grant('wl_test_booking', 'booking')$$, 'the owner grants booking');
SELECT lives_ok($$SELECT waitlist_grant('wl_test_relay', 'relay')$$, 'the owner grants relay');
SELECT lives_ok($$SELECT waitlist_grant('wl_test_admin', 'admin')$$, 'the owner grants admin');
SELECT lives_ok($$SELECT waitlist_grant('wl_test_monitor', 'monitor')$$, 'the owner grants monitor');
SELECT lives_ok($$SELECT waitlist_grant('wl_test_token', 'token')$$, 'the owner grants token');

SELECT is(wl_test.sqlstate_as('wl_test_admin', $$SELECT waitlist_grant('wl_test_admin', 'app')$$), '42501',
    'an admin cannot grant duties (not even to itself)');
SELECT is(wl_test.sqlstate_as('wl_test_app', $$SELECT waitlist_revoke('wl_test_nobody', 'app')$$), '42501',
    'an app role cannot revoke duties');
SELECT is(wl_test.sqlstate_as('wl_test_nobody', $$SELECT * FROM waitlist_duty_privileges()$$), '42501',
    'a role with no duty cannot read the list of duties');

------------------------------------------------------------------------------
-- Each duty holds exactly its privileges and nothing else answers
------------------------------------------------------------------------------

SELECT is(wl_test.privileges_off('wl_test_app', '{app}'), NULL, 'app holds exactly its privileges');
SELECT is(wl_test.privileges_off('wl_test_booking', '{booking}'), NULL, 'booking holds exactly its privileges');
SELECT is(wl_test.privileges_off('wl_test_relay', '{relay}'), NULL, 'relay holds exactly its privileges');
SELECT is(wl_test.privileges_off('wl_test_admin', '{admin}'), NULL, 'admin holds exactly its privileges');
SELECT is(wl_test.privileges_off('wl_test_monitor', '{monitor}'), NULL, 'monitor holds exactly its privileges');
SELECT is(wl_test.privileges_off('wl_test_token', '{token}'), NULL, 'token holds exactly its privileges');
SELECT is((SELECT array_agg(d.object_name ORDER BY d.object_name) FROM waitlist_duty_privileges() d WHERE d.duty = 'token'),
    ARRAY[format('%s.waitlist_accept_token(text, text)', current_schema), format('%s.waitlist_decline_token(text)', current_schema),
          format('%s.waitlist_token_offer(text)', current_schema)],
    'token is accept, decline and the offer page by token, nothing id-based');

SELECT is(wl_test.not_refused('wl_test_app', '{app}'), NULL, 'app gets 42501 from every function outside its duty');
SELECT is(wl_test.not_refused('wl_test_booking', '{booking}'), NULL, 'booking gets 42501 from every function outside its duty');
SELECT is(wl_test.not_refused('wl_test_relay', '{relay}'), NULL, 'relay gets 42501 from every function outside its duty');
SELECT is(wl_test.not_refused('wl_test_admin', '{admin}'), NULL, 'admin gets 42501 from every function outside its duty');
SELECT is(wl_test.not_refused('wl_test_monitor', '{monitor}'), NULL, 'monitor gets 42501 from every function outside its duty');
SELECT is(wl_test.not_refused('wl_test_token', '{token}'), NULL, 'token gets 42501 from every function outside its duty');

SELECT is(wl_test.sqlstate_as(r, 'SELECT count(*) FROM waitlist.entry'), '42501',
    format('%s cannot read the tables', r))
FROM unnest(ARRAY['wl_test_app', 'wl_test_booking', 'wl_test_relay', 'wl_test_admin', 'wl_test_monitor']::name[]) r;

------------------------------------------------------------------------------
-- Each duty can do its job
------------------------------------------------------------------------------

-- admin: resources, rates, promotion, sweeps, retries
SELECT is(wl_test.sqlstate_as('wl_test_admin', $$SELECT waitlist_create_resource('duty-1', '10 minutes', channels => '{webhook,sms}')$$),
    '00000', 'admin creates a resource');
SELECT is(wl_test.sqlstate_as('wl_test_admin', $$SELECT waitlist_alter_resource('duty-1', offer_ttl => '20 minutes')$$),
    '00000', 'admin alters a resource');
SELECT is(wl_test.sqlstate_as('wl_test_admin', $$SELECT waitlist_set_channel_rate('sms', 50, 100)$$),
    '00000', 'admin sets a channel rate');
SELECT is(wl_test.sqlstate_as('wl_test_admin', $$SELECT waitlist_promote('duty-1')$$),
    '00000', 'admin promotes');
SELECT is(wl_test.sqlstate_as('wl_test_admin', $$SELECT waitlist_sweep()$$),
    '00000', 'admin sweeps');
SELECT is(wl_test.sqlstate_as('wl_test_admin', $$SELECT waitlist_rotate_token_key()$$),
    '00000', 'admin rotates the token keys');
SELECT is(wl_test.sqlstate_as('wl_test_admin', $$SELECT waitlist_retry_event('no-such-event', 'duty-1')$$),
    '42704', 'admin may retry events (an unknown one is 42704, not 42501)');
SELECT ok(has_function_privilege('wl_test_admin', 'waitlist_schedule_sweep(text)', 'EXECUTE')
          AND has_function_privilege('wl_test_admin', 'waitlist_unschedule_sweep()', 'EXECUTE'),
    'admin may schedule and unschedule the sweep');

-- app: join, status, accept, decline, leave, inbox, seen
SELECT is(wl_test.sqlstate_as('wl_test_app', $$SELECT waitlist_join('duty-1', 'fan-' || g) FROM generate_series(1, 4) g$$),
    '00000', 'app joins fans');
SELECT is(wl_test.sqlstate_as('wl_test_app', format('SELECT * FROM waitlist_status(%s)', wl_test.entry_of('duty-1', 'fan-1'))),
    '00000', 'app reads an entry''s status');

-- booking: releases, and attaches the capacity trigger to its own table
SELECT is(wl_test.sqlstate_as('wl_test_booking', $$SELECT waitlist_release('duty-1', 3, 'cancel-1')$$),
    '00000', 'booking releases capacity');
SELECT is((SELECT count(*)::int FROM waitlist.offer WHERE resource_id = 'duty-1' AND state = 'OPEN'), 3,
    'the release made three offers');
CREATE TABLE wl_test.reservation (id integer PRIMARY KEY, resource_id text, seats integer, status text);
ALTER TABLE wl_test.reservation OWNER TO wl_test_booking;
GRANT USAGE ON SCHEMA wl_test TO wl_test_booking;
SELECT is(wl_test.sqlstate_as('wl_test_booking',
    $$CREATE TRIGGER reservation_release AFTER UPDATE OR DELETE ON wl_test.reservation
      FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('resource_id', 'seats', 'status', 'cancelled')$$),
    '00000', 'booking attaches the capacity trigger to its reservations table');
SELECT is(wl_test.sqlstate_as('wl_test_app',
    $$CREATE TRIGGER reservation_release_2 AFTER DELETE ON wl_test.reservation
      FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('resource_id', 'seats', 'status', 'cancelled')$$),
    '42501', 'app cannot attach the capacity trigger');

SELECT is(wl_test.sqlstate_as('wl_test_app', format('SELECT waitlist_offer_seen(%s)', wl_test.offer_of('duty-1', 'fan-1'))),
    '00000', 'app records an offer as seen');
SELECT is(wl_test.sqlstate_as('wl_test_app', format($$SELECT * FROM waitlist_accept(%s, 'k-1')$$, wl_test.offer_of('duty-1', 'fan-1'))),
    '00000', 'app accepts an offer');
SELECT is((SELECT state FROM waitlist.offer WHERE offer_id = wl_test.offer_of('duty-1', 'fan-1')), 'ACCEPTED',
    'the offer is accepted');
SELECT is(wl_test.sqlstate_as('wl_test_app', format('SELECT waitlist_decline(%s)', wl_test.offer_of('duty-1', 'fan-2'))),
    '00000', 'app declines an offer');
SELECT is(wl_test.sqlstate_as('wl_test_app', format('SELECT waitlist_leave(%s)', wl_test.entry_of('duty-1', 'fan-3'))),
    '00000', 'app takes a fan out of line');
SELECT is(wl_test.sqlstate_as('wl_test_app', $$SELECT * FROM waitlist_inbox('fan-1')$$),
    '00000', 'app reads a fan''s inbox');
SELECT is(wl_test.sqlstate_as('wl_test_app', format('SELECT waitlist_offer_token(%s)', wl_test.offer_of('duty-1', 'fan-4'))),
    '00000', 'app makes the token of an offer, for a link');

-- token: accept and decline by token, and nothing by id (on a resource of
-- its own, whose audit trail is not the one checked below)
SELECT waitlist_create_resource('duty-2', '10 minutes');
SELECT waitlist_join('duty-2', 'fan-' || g) FROM generate_series(1, 3) g;
SELECT waitlist_release('duty-2', 2, 'release-for-tokens');
SELECT is(wl_test.sqlstate_as('wl_test_token', format('SELECT waitlist_decline(%s)', wl_test.offer_of('duty-2', 'fan-1'))),
    '42501', 'token cannot decline by id');
SELECT is(wl_test.sqlstate_as('wl_test_token', format($$SELECT waitlist_decline_token(%L)$$,
                                                      waitlist_offer_token(wl_test.offer_of('duty-2', 'fan-1')))),
    '00000', 'token declines by token');
SELECT is(wl_test.sqlstate_as('wl_test_token', format($$SELECT * FROM waitlist_accept_token(%L, 'k-t')$$,
                                                      waitlist_offer_token(wl_test.offer_of('duty-2', 'fan-2')))),
    '00000', 'token accepts by token');
SELECT is((SELECT array_agg(o.state ORDER BY o.offer_id) FROM waitlist.offer o WHERE o.resource_id = 'duty-2'),
    ARRAY['DECLINED', 'ACCEPTED', 'OPEN'], 'the offers were declined and accepted, the unit went on');

-- relay: claim, ack, fail, retry
SET LOCAL waitlist.outbox_max_attempts = 1;
CREATE TEMP TABLE claimed (outbox_id bigint, lease_token bigint);
GRANT INSERT ON claimed TO wl_test_relay;
SELECT is(wl_test.sqlstate_as('wl_test_relay',
    $$INSERT INTO claimed SELECT outbox_id, lease_token FROM waitlist_outbox_claim('relay-1', 2, '1 hour')$$),
    '00000', 'relay claims outbox rows');
SELECT is((SELECT count(*)::int FROM claimed), 2, 'two rows were claimed');
SELECT is(wl_test.sqlstate_as('wl_test_relay',
    (SELECT format('SELECT waitlist_outbox_ack(%s, %s)', outbox_id, lease_token) FROM claimed ORDER BY outbox_id LIMIT 1)),
    '00000', 'relay acks a delivery');
SELECT is(wl_test.sqlstate_as('wl_test_relay',
    (SELECT format($$SELECT waitlist_outbox_fail(%s, %s, 'gone')$$, outbox_id, lease_token) FROM claimed ORDER BY outbox_id DESC LIMIT 1)),
    '00000', 'relay records a failed delivery');
SELECT is(wl_test.sqlstate_as('wl_test_relay',
    (SELECT format('SELECT waitlist_outbox_retry(%s)', outbox_id) FROM claimed ORDER BY outbox_id DESC LIMIT 1)),
    '00000', 'relay puts a dead-lettered row back');
SELECT is(wl_test.sqlstate_as('wl_test_admin',
    (SELECT format('SELECT waitlist_outbox_retry(%s)', outbox_id) FROM claimed ORDER BY outbox_id DESC LIMIT 1)),
    '00000', 'so does admin');

-- monitor: status, check, metrics, the stats views; workers need preloading
SELECT is(wl_test.sqlstate_as('wl_test_monitor', $$SELECT count(*) FROM waitlist_check()$$),
    '00000', 'monitor runs waitlist_check()');
SELECT is(wl_test.sqlstate_as('wl_test_monitor', $$SELECT waitlist_metrics()$$),
    '00000', 'monitor reads the metrics');
SELECT is(wl_test.sqlstate_as('wl_test_monitor',
    $$SELECT (SELECT count(*) FROM waitlist.resource_stats) + (SELECT count(*) FROM waitlist.outbox_stats)
           + (SELECT count(*) FROM waitlist.lag_stats) + (SELECT count(*) FROM waitlist.offer_outcomes)$$),
    '00000', 'monitor reads the stats views');
SELECT is(wl_test.sqlstate_as('wl_test_monitor', format('SELECT * FROM waitlist_status(%s)', wl_test.entry_of('duty-1', 'fan-4'))),
    '00000', 'monitor reads an entry''s status');
SELECT isnt(wl_test.sqlstate_as('wl_test_monitor', $$SELECT * FROM waitlist_worker_status()$$),
    '42501', 'monitor may call waitlist_worker_status()');
SELECT is(wl_test.sqlstate_as('wl_test_monitor', $$SELECT waitlist_join('duty-1', 'sneaky')$$),
    '42501', 'monitor cannot join');
SELECT is(wl_test.sqlstate_as('wl_test_monitor', $$SELECT count(*) FROM waitlist.outbox$$),
    '42501', 'monitor cannot read the outbox itself (payloads)');

SELECT is((SELECT count(*)::int FROM waitlist_check()), 0, 'the duties'' work left no violated invariant');
SELECT is((SELECT array_agg(DISTINCT actor::text ORDER BY actor::text) FROM waitlist.transition WHERE resource_id = 'duty-1'),
    ARRAY['wl_test_app', 'wl_test_booking'],
    'the audit trail names the duty roles that moved entries and offers');

------------------------------------------------------------------------------
-- Revoking
------------------------------------------------------------------------------

CREATE ROLE wl_test_both NOLOGIN;
SELECT waitlist_grant('wl_test_both', 'app');
SELECT waitlist_grant('wl_test_both', 'monitor');
SELECT is(wl_test.privileges_off('wl_test_both', '{app,monitor}'), NULL, 'a role may hold two duties');
SELECT waitlist_revoke('wl_test_both', 'monitor');
SELECT is(wl_test.privileges_off('wl_test_both', '{app}'), NULL,
    'revoking monitor keeps waitlist_status, which app needs too');
SELECT waitlist_revoke('wl_test_both', 'app');
SELECT is(wl_test.privileges_off('wl_test_both', '{}'), NULL, 'revoking app then leaves nothing');

-- privileges carry no label: a duty's go with it, however they were granted,
-- except those another duty the role holds needs
GRANT EXECUTE ON FUNCTION waitlist_check(text, interval) TO wl_test_app;
SELECT waitlist_revoke('wl_test_app', 'monitor');
SELECT ok(NOT has_function_privilege('wl_test_app', 'waitlist_check(text, interval)', 'EXECUTE'),
    'revoking monitor takes waitlist_check, even granted by hand');
SELECT is(wl_test.privileges_off('wl_test_app', '{app}'), NULL,
    'and leaves the app duty whole (waitlist_status included)');
SELECT waitlist_revoke('wl_test_app', 'app');
SELECT is(wl_test.sqlstate_as('wl_test_app', $$SELECT waitlist_join('duty-1', 'fan-9')$$), '42501',
    'a revoked app role can no longer join');

SELECT waitlist_revoke(r, d)
FROM unnest(ARRAY['wl_test_booking', 'wl_test_relay', 'wl_test_admin', 'wl_test_monitor', 'wl_test_token']::regrole[],
            ARRAY['booking', 'relay', 'admin', 'monitor', 'token']) AS x(r, d);
SELECT is(wl_test.not_refused(r, '{}'), NULL, format('after revoking its duty, %s gets 42501 everywhere', r))
FROM unnest(ARRAY['wl_test_app', 'wl_test_booking', 'wl_test_relay', 'wl_test_admin', 'wl_test_monitor', 'wl_test_token']::name[]) r;

SELECT * FROM finish();
ROLLBACK;
