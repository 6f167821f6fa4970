-- pgTAP: signed offer tokens, their contract and their bad input.
--
-- The functions' signatures, return types and privileges; the key table
-- readable by no one but the owner; the offer_created payload's token that
-- accepts its offer; and every kind of bad token refused with its SQLSTATE
-- (WL011 malformed, WL012 not verified, WL013 expired, WL014 no such offer)
-- without changing any table, the keys included.
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

-- the token of an offer with one character at pos replaced by another
CREATE FUNCTION wl_test.flip(t text, pos integer) RETURNS text
LANGUAGE sql AS $$
    SELECT overlay(t PLACING CASE substr(t, pos, 1) WHEN 'A' THEN 'B' ELSE 'A' END FROM pos FOR 1)
$$;

-- resource "tok" with three offered fans and a waiting one; the tokens of
-- the first two offers as the outbox carries them
DO $$
BEGIN
    PERFORM waitlist_create_resource('tok', interval '10 minutes', channels => '{webhook,sms}');
    PERFORM waitlist_join('tok', 'fan-' || i) FROM generate_series(1, 4) i;
    PERFORM waitlist_release('tok', 3, 'tok-event-1');
END
$$;
CREATE TABLE wl_test.tokens AS
SELECT DISTINCT ON (o.offer_id) e.user_id, o.offer_id, b.payload->>'token' AS token
FROM waitlist.offer o
JOIN waitlist.entry e ON e.resource_id = o.resource_id AND e.entry_id = o.entry_id
JOIN waitlist.outbox b ON b.resource_id = o.resource_id AND b.offer_id = o.offer_id
                      AND b.event_type = 'offer_created'
ORDER BY o.offer_id;
SELECT token AS t1 FROM wl_test.tokens WHERE user_id = 'fan-1' \gset
SELECT token AS t2 FROM wl_test.tokens WHERE user_id = 'fan-2' \gset

SELECT plan(85);

------------------------------------------------------------------------------
-- Contract
------------------------------------------------------------------------------

SELECT has_function('waitlist_offer_token', ARRAY['bigint'], 'waitlist_offer_token(bigint) exists');
SELECT function_returns('waitlist_offer_token', ARRAY['bigint'], 'text', 'waitlist_offer_token returns text');
SELECT has_function('waitlist_accept_token', ARRAY['text', 'text'], 'waitlist_accept_token(text, text) exists');
SELECT function_returns('waitlist_accept_token', ARRAY['text', 'text'], 'record', 'waitlist_accept_token returns a record');
SELECT is(
    (SELECT pg_catalog.array_to_string(p.proargnames, ',') FROM pg_catalog.pg_proc p
      WHERE p.oid = 'waitlist_accept_token(text, text)'::regprocedure),
    'token,idempotency_key,state,reservation_ref',
    'waitlist_accept_token takes (token, idempotency_key) and returns (state, reservation_ref), as waitlist_accept');
SELECT has_function('waitlist_decline_token', ARRAY['text'], 'waitlist_decline_token(text) exists');
SELECT function_returns('waitlist_decline_token', ARRAY['text'], 'boolean', 'waitlist_decline_token returns boolean');
SELECT has_function('waitlist_rotate_token_key', ARRAY[]::name[], 'waitlist_rotate_token_key() exists');
SELECT function_returns('waitlist_rotate_token_key', ARRAY[]::name[], 'integer', 'waitlist_rotate_token_key returns integer');
SELECT has_table('waitlist', 'token_key', 'waitlist.token_key exists');
SELECT columns_are('waitlist', 'token_key', ARRAY['key_id', 'secret', 'created_at', 'verifies_until'],
    'waitlist.token_key has (key_id, secret, created_at, verifies_until)');
SELECT is((SELECT count(*)::integer FROM waitlist.token_key WHERE verifies_until IS NULL), 1,
    'the install made one signing key');
SELECT is((SELECT length(secret) FROM waitlist.token_key), 32, 'its secret is 32 bytes');
SELECT is(
    (SELECT array_agg(p.oid::regprocedure::text ORDER BY 1) FROM pg_catalog.pg_proc p
      WHERE p.oid IN ('waitlist_offer_token(bigint)'::regprocedure, 'waitlist_accept_token(text, text)'::regprocedure,
                      'waitlist_decline_token(text)'::regprocedure, 'waitlist_rotate_token_key()'::regprocedure,
                      'waitlist.offer_token_for(text, bigint, timestamptz)'::regprocedure,
                      'waitlist.token_key_material()'::regprocedure)
        AND (p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0))),
    NULL, 'no token function grants anything to PUBLIC');
SELECT ok(NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e, unnest(e.extconfig) c
                       WHERE e.extname = 'waitlist' AND c = 'waitlist.token_key'::regclass),
    'the keys are not dumped');

CREATE ROLE wl_test_snoop NOLOGIN;
GRANT USAGE ON SCHEMA waitlist TO wl_test_snoop;
SELECT is(wl_test.sqlstate_as('wl_test_snoop', 'SELECT secret FROM waitlist.token_key'), '42501',
    'a role with USAGE on the schema still cannot read the keys');
SELECT is(wl_test.sqlstate_as('wl_test_snoop', $$SELECT waitlist.offer_token_for('tok', 1, now())$$), '42501',
    'nor sign a token with the internal function');
SELECT is(wl_test.sqlstate_as('wl_test_snoop', 'SELECT waitlist.token_key_material()'), '42501',
    'nor call the key generator');
SELECT is(wl_test.sqlstate_as('wl_test_snoop', 'SELECT waitlist_rotate_token_key()'), '42501',
    'nor rotate the keys');

------------------------------------------------------------------------------
-- The offer_created payload's token is the offer's, and accepts it
------------------------------------------------------------------------------

SELECT is((SELECT count(*)::integer FROM wl_test.tokens WHERE token ~ '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$'), 3,
    'every offer_created payload carries a URL-safe token');
SELECT is((SELECT count(DISTINCT b.payload->>'token')::integer FROM waitlist.outbox b
            WHERE b.event_type = 'offer_created' AND b.offer_id = (SELECT offer_id FROM wl_test.tokens WHERE user_id = 'fan-1')),
    1, 'the rows of one offer on two channels carry the same token');
SELECT is((SELECT count(*)::integer FROM wl_test.tokens WHERE token = waitlist_offer_token(offer_id)), 3,
    'the payload''s token is what waitlist_offer_token() gives');
SELECT is((SELECT count(DISTINCT token)::integer FROM wl_test.tokens), 3, 'each offer has a token of its own');

------------------------------------------------------------------------------
-- Bad input: refused, nothing changed
------------------------------------------------------------------------------

SELECT wl_test.rejects($$SELECT waitlist_offer_token(NULL)$$, '22004', 'waitlist_offer_token with NULL offer_id');
SELECT wl_test.rejects($$SELECT waitlist_offer_token(0)$$, '42704', 'waitlist_offer_token of no offer');
SELECT wl_test.rejects($$SELECT * FROM waitlist_accept_token(NULL, 'k')$$, '22004', 'waitlist_accept_token with NULL token');
SELECT wl_test.rejects(format($$SELECT * FROM waitlist_accept_token(%L, NULL)$$, :'t1'), '22004',
    'waitlist_accept_token with NULL idempotency_key');
SELECT wl_test.rejects(format($$SELECT * FROM waitlist_accept_token(%L, repeat('k', 201))$$, :'t1'), '22001',
    'waitlist_accept_token with an idempotency_key over 200 bytes');
SELECT wl_test.rejects($$SELECT waitlist_decline_token(NULL)$$, '22004', 'waitlist_decline_token with NULL token');

SELECT wl_test.rejects(format('SELECT waitlist_decline_token(%L)', t), 'WL011', what)
FROM (VALUES ('', 'an empty token'),
             ('abc', 'a token without a signature part'),
             (repeat('x', 10000), 'a long string'),
             (repeat('A', 300) || '.' || repeat('A', 43), 'a payload longer than any token''s'),
             (E'\u00e9t\u00e9.abc', 'non-ASCII characters'),
             ('+' || substr(:'t1', 2), 'a character of standard base64, not base64url'),
             (:'t1' || '==', 'padding'),
             (left(:'t1', -2), 'a truncated mac'),
             (split_part(:'t1', '.', 1) || '.', 'no mac'),
             ('.' || split_part(:'t1', '.', 2), 'no payload'),
             ('AA.' || split_part(:'t1', '.', 2), 'a one-byte payload'),
             (substr(split_part(:'t1', '.', 1), 1, 28) || '.' || split_part(:'t1', '.', 2), 'a payload cut short')) AS x(t, what);

SELECT wl_test.rejects(format('SELECT waitlist_decline_token(%L)', t), 'WL012', what)
FROM (VALUES (wl_test.flip(:'t1', 3), 'a payload with its key id changed'),
             (wl_test.flip(:'t1', 12), 'a payload with its offer id changed'),
             (wl_test.flip(:'t1', 22), 'a payload with its deadline changed'),
             (wl_test.flip(:'t1', length(split_part(:'t1', '.', 1)) - 2), 'a payload with its resource changed'),
             (wl_test.flip(:'t1', length(:'t1') - 5), 'a mac with a character changed'),
             (split_part(:'t1', '.', 1) || '.' || split_part(:'t2', '.', 2), 'another offer''s mac')) AS x(t, what);

SELECT wl_test.rejects(format($$SELECT waitlist_decline_token(waitlist.offer_token_for('tok', %s, now() - interval '1 microsecond'))$$,
                              (SELECT offer_id FROM wl_test.tokens WHERE user_id = 'fan-1')),
    'WL013', 'a token past its deadline');
SELECT wl_test.rejects(format($$SELECT waitlist_decline_token(waitlist.offer_token_for('tok', %s, now() + interval '1 hour'))$$,
                              (SELECT offer_id FROM wl_test.tokens WHERE user_id = 'fan-1')),
    'WL014', 'a token with a deadline its offer does not have');
SELECT wl_test.rejects($$SELECT waitlist_decline_token(waitlist.offer_token_for('tok', 0, now() + interval '1 hour'))$$,
    'WL014', 'a token of an offer that does not exist');
SELECT wl_test.rejects(format($$SELECT waitlist_decline_token(waitlist.offer_token_for('tok-other', o.offer_id, o.expires_at))
                                FROM waitlist.offer o WHERE o.offer_id = %s$$,
                              (SELECT offer_id FROM wl_test.tokens WHERE user_id = 'fan-1')),
    'WL014', 'a token naming another resource');

------------------------------------------------------------------------------
-- Accept and decline by token
------------------------------------------------------------------------------

SELECT is((SELECT state FROM waitlist_accept_token(:'t1', 'fan-1-tap')), 'ACCEPTED', 'the payload''s token accepts its offer');
SELECT is((SELECT state FROM waitlist.offer WHERE offer_id = (SELECT offer_id FROM wl_test.tokens WHERE user_id = 'fan-1')),
    'ACCEPTED', 'the offer is accepted');
SELECT is(waitlist_decline_token(:'t2'), true, 'the payload''s token declines its offer');
SELECT is((SELECT state FROM waitlist.offer WHERE offer_id = wl_test.offer_of('tok', 'fan-4')), 'OPEN',
    'the unit went to the next fan');
SELECT wl_test.rejects(format('SELECT waitlist_decline_token(%L)', :'t1'), 'WL003',
    'declining an accepted offer by token (as by id)');

SELECT * FROM finish();
ROLLBACK;
