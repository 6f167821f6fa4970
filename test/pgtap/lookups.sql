-- pgTAP: the look-ups for front ends (waitlist_entry_owner,
-- waitlist_offer_owner, waitlist_token_offer), their contract and their
-- bad input: signatures and duties, NULL and unknown ids, and every kind of
-- bad token, each refused with its SQLSTATE without changing any table.
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

SELECT plan(29);

SELECT function_returns('waitlist_entry_owner', ARRAY['bigint'], 'record', 'waitlist_entry_owner(bigint) returns a record');
SELECT function_returns('waitlist_offer_owner', ARRAY['bigint'], 'record', 'waitlist_offer_owner(bigint) returns a record');
SELECT function_returns('waitlist_token_offer', ARRAY['text'], 'record', 'waitlist_token_offer(text) returns a record');
SELECT is((SELECT pg_get_function_arguments('waitlist_entry_owner(bigint)'::regprocedure)),
    'entry_id bigint, OUT user_id text, OUT resource_id text, OUT joined_in_transaction boolean',
    'waitlist_entry_owner''s columns');
SELECT is((SELECT pg_get_function_arguments('waitlist_offer_owner(bigint)'::regprocedure)),
    'offer_id bigint, OUT user_id text, OUT resource_id text, OUT entry_id bigint',
    'waitlist_offer_owner''s columns');
SELECT is((SELECT pg_get_function_arguments('waitlist_token_offer(text)'::regprocedure)),
    'token text, OUT offer_id bigint, OUT resource_id text, OUT state text, OUT expires_at timestamp with time zone, OUT reservation_ref text',
    'waitlist_token_offer''s columns');

SELECT waitlist_create_resource('look', '10 minutes');
SELECT waitlist_join('look', 'ann'), waitlist_join('look', 'bob');
SELECT waitlist_release('look', 1, 'look-1');
SELECT waitlist_offer_token(wl_test.offer_of('look', 'ann')) AS ann_token \gset

SELECT is((SELECT row(user_id, resource_id)::text FROM waitlist_entry_owner(wl_test.entry_of('look', 'bob'))),
    '(bob,look)', 'an entry''s owner and resource');
SELECT is((SELECT row(user_id, resource_id, entry_id = wl_test.entry_of('look', 'ann'))::text
             FROM waitlist_offer_owner(wl_test.offer_of('look', 'ann'))),
    '(ann,look,t)', 'an offer''s owner, resource and entry');
SELECT is((SELECT row(offer_id = wl_test.offer_of('look', 'ann'), resource_id, state, reservation_ref IS NULL)::text
             FROM waitlist_token_offer(:'ann_token')),
    '(t,look,OPEN,t)', 'the offer a token names');
SELECT is((SELECT expires_at FROM waitlist_token_offer(:'ann_token')),
    (SELECT expires_at FROM waitlist.offer WHERE offer_id = wl_test.offer_of('look', 'ann')),
    'with its deadline');

SELECT wl_test.rejects('SELECT * FROM waitlist_entry_owner(NULL)', '22004', 'a NULL entry id');
SELECT wl_test.rejects('SELECT * FROM waitlist_entry_owner(424242)', '42704', 'an unknown entry');
SELECT wl_test.rejects('SELECT * FROM waitlist_offer_owner(NULL)', '22004', 'a NULL offer id');
SELECT wl_test.rejects('SELECT * FROM waitlist_offer_owner(424242)', '42704', 'an unknown offer');
SELECT wl_test.rejects('SELECT * FROM waitlist_token_offer(NULL)', '22004', 'a NULL token');
SELECT wl_test.rejects($$SELECT * FROM waitlist_token_offer('nonsense')$$, 'WL011', 'a malformed token');
SELECT wl_test.rejects(format('SELECT * FROM waitlist_token_offer(%L)',
                              overlay(:'ann_token' PLACING CASE right(:'ann_token', 1) WHEN 'A' THEN 'B' ELSE 'A' END
                                      FROM length(:'ann_token') FOR 1)),
    'WL012', 'a tampered token');

-- duties: app finds owners, token reads the offer of its link, neither more
CREATE ROLE wl_test_app NOLOGIN;
CREATE ROLE wl_test_token NOLOGIN;
SELECT waitlist_grant('wl_test_app', 'app'), waitlist_grant('wl_test_token', 'token');
SELECT is(wl_test.sqlstate_as('wl_test_app', format('SELECT * FROM waitlist_entry_owner(%s)', wl_test.entry_of('look', 'bob'))),
    '00000', 'app finds an entry''s owner');
SELECT is(wl_test.sqlstate_as('wl_test_app', format('SELECT * FROM waitlist_offer_owner(%s)', wl_test.offer_of('look', 'ann'))),
    '00000', 'app finds an offer''s owner');
SELECT is(wl_test.sqlstate_as('wl_test_token', format('SELECT * FROM waitlist_token_offer(%L)', :'ann_token')),
    '00000', 'token reads the offer of its link');
SELECT is(wl_test.sqlstate_as('wl_test_token', format('SELECT * FROM waitlist_offer_owner(%s)', wl_test.offer_of('look', 'ann'))),
    '42501', 'token finds no owner by id');
SELECT is(wl_test.sqlstate_as('wl_test_app', format('SELECT * FROM waitlist_token_offer(%L)', :'ann_token')),
    '42501', 'app does not read offers by token');

SELECT * FROM finish();
ROLLBACK;
