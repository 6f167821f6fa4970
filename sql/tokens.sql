--
-- tokens: signed offer tokens
--
-- waitlist_offer_token() and the offer_created payload give the same token,
-- which verifies; accept and decline by token do what accept and decline by
-- id do; every refusal class has its SQLSTATE and changes nothing:
--   WL011 malformed (not our format, bad base64, truncated, unknown version)
--   WL012 does not verify (a byte flipped in the payload or in the mac,
--         another offer's mac spliced in, a retired or erased key)
--   WL013 expired (past the expires_at the token carries)
--   WL014 names no such offer (no such id, another resource, a deadline
--         that no longer matches)
-- and the keys rotate: the old key verifies until the offers that existed
-- at rotation have expired, then nothing.
--
\set VERBOSITY sqlstate
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- a fresh install, so that this file does not depend on the files before it
DROP EXTENSION IF EXISTS waitlist CASCADE;
CREATE EXTENSION waitlist;
RESET client_min_messages;

-- base64url without padding, as the tokens spell it
CREATE FUNCTION pg_temp.b64url_decode(t text) RETURNS bytea
LANGUAGE sql AS $$
    SELECT decode(translate(t, '-_', '+/') || repeat('=', (4 - length(t) % 4) % 4), 'base64')
$$;
CREATE FUNCTION pg_temp.b64url_encode(b bytea) RETURNS text
LANGUAGE sql AS $$
    SELECT rtrim(translate(encode(b, 'base64'), E'+/\n', '-_'), '=')
$$;
-- the token with the character at position pos (from 1) replaced by another
CREATE FUNCTION pg_temp.flip(t text, pos integer) RETURNS text
LANGUAGE sql AS $$
    SELECT overlay(t PLACING CASE substr(t, pos, 1) WHEN 'A' THEN 'B' ELSE 'A' END FROM pos FOR 1)
$$;

-- what a step changed: the audit trail, the outbox, the offers' states, the keys
CREATE TEMP VIEW changes AS
SELECT (SELECT count(*) FROM waitlist.transition) AS transitions,
       (SELECT count(*) FROM waitlist.outbox) AS outbox_rows,
       (SELECT count(*) FROM waitlist.accept_request) AS requests,
       (SELECT string_agg(offer_id || ':' || state, ' ' ORDER BY offer_id) FROM waitlist.offer) AS offers,
       (SELECT string_agg(key_id || ':' || (verifies_until IS NULL), ' ' ORDER BY key_id) FROM waitlist.token_key) AS keys;

--
-- The install made one signing key of 32 random bytes
--
SELECT key_id, length(secret) AS secret_bytes, verifies_until IS NULL AS signs
FROM waitlist.token_key;

--
-- Five fans, two units: alice and bob get offers, each with its token
--
SELECT waitlist_create_resource('tok-1', '10 minutes');
SELECT waitlist_create_resource('tok-2', '10 minutes');
SELECT count(waitlist_join('tok-1', u)) AS joined
FROM unnest(ARRAY['alice', 'bob', 'carol', 'dave', 'erin']) u;
SELECT waitlist_release('tok-1', 2, 'tok-release-1');
SELECT offer_id AS alice_offer FROM waitlist.offer WHERE user_id = 'alice' \gset
SELECT offer_id AS bob_offer FROM waitlist.offer WHERE user_id = 'bob' \gset
SELECT waitlist_offer_token(:alice_offer) AS alice_token \gset
SELECT waitlist_offer_token(:bob_offer) AS bob_token \gset

-- URL-safe: two parts of base64url, the second a 32-byte HMAC-SHA256
SELECT :'alice_token' ~ '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$' AS url_safe,
       length(pg_temp.b64url_decode(split_part(:'alice_token', '.', 2))) AS mac_bytes;
-- the payload: version 1, key 1, the offer, its deadline, its resource
SELECT get_byte(p, 0) AS version,
       ('x' || encode(substr(p, 2, 4), 'hex'))::bit(32)::integer AS key_id,
       ('x' || encode(substr(p, 6, 8), 'hex'))::bit(64)::bigint = :alice_offer AS names_offer,
       ('x' || encode(substr(p, 14, 8), 'hex'))::bit(64)::bigint
         = (SELECT extract(epoch FROM expires_at) * 1000000 FROM waitlist.offer WHERE offer_id = :alice_offer)
         AS carries_deadline,
       ('x' || encode(substr(p, 22, 2), 'hex'))::bit(16)::integer AS resource_id_bytes,
       convert_from(substr(p, 24), 'UTF8') AS resource_id
FROM (SELECT pg_temp.b64url_decode(split_part(:'alice_token', '.', 1)) AS p) d;
-- the same offer, the same key: the same token
SELECT waitlist_offer_token(:alice_offer) = :'alice_token' AS stable;
-- the offer_created rows carry the token, one per offer on every channel
SELECT b.offer_id = :alice_offer AS alice, b.channel,
       b.payload->>'token' = waitlist_offer_token(b.offer_id) AS token_matches
FROM waitlist.outbox b WHERE b.event_type = 'offer_created' ORDER BY b.offer_id, b.channel;
-- and no other event carries one
SELECT count(*) AS other_events_with_token
FROM waitlist.outbox WHERE event_type <> 'offer_created' AND payload ? 'token';

--
-- Refusals: each its SQLSTATE, and none changes anything
--
SELECT * FROM changes \gset before_
\set VERBOSITY default
SELECT * FROM waitlist_accept_token('not a token', 'k');
SELECT waitlist_decline_token(pg_temp.flip(:'alice_token', 10));
SELECT * FROM waitlist_accept_token(:'alice_token', NULL);
\set VERBOSITY sqlstate

-- WL011: not our format
SELECT waitlist_decline_token('');
SELECT waitlist_decline_token('.');
SELECT waitlist_decline_token(split_part(:'alice_token', '.', 1));
SELECT waitlist_decline_token(:'alice_token' || '.' || split_part(:'alice_token', '.', 2));
SELECT waitlist_decline_token(replace(:'alice_token', '.', '!'));
SELECT waitlist_decline_token(' ' || :'alice_token');
SELECT waitlist_decline_token(:'alice_token' || '=');
SELECT waitlist_decline_token(repeat('A', 500) || '.' || split_part(:'alice_token', '.', 2));
-- truncated: the mac, the payload, both by one character
SELECT waitlist_decline_token(left(:'alice_token', -1));
SELECT waitlist_decline_token(substr(:'alice_token', 2));
SELECT waitlist_decline_token(regexp_replace(:'alice_token', '.\.', '.'));
SELECT waitlist_decline_token(regexp_replace(:'alice_token', '^(.{20}).{4}', '\1'));
-- an unknown version, however well the rest is formed
SELECT waitlist_decline_token(
    pg_temp.b64url_encode(set_byte(pg_temp.b64url_decode(split_part(:'alice_token', '.', 1)), 0, 2))
    || '.' || split_part(:'alice_token', '.', 2));

-- WL012: one character flipped in the payload (offer id, deadline,
-- resource), one in the mac, another offer's mac spliced in
SELECT waitlist_decline_token(pg_temp.flip(:'alice_token', 10));
SELECT waitlist_decline_token(pg_temp.flip(:'alice_token', 20));
SELECT waitlist_decline_token(pg_temp.flip(:'alice_token', 34));
SELECT waitlist_decline_token(pg_temp.flip(:'alice_token', length(:'alice_token') - 20));
SELECT * FROM waitlist_accept_token(split_part(:'alice_token', '.', 1) || '.' || split_part(:'bob_token', '.', 2), 'k');
-- the key id changed to one that does not exist
SELECT waitlist_decline_token(
    pg_temp.b64url_encode(set_byte(pg_temp.b64url_decode(split_part(:'alice_token', '.', 1)), 4, 9))
    || '.' || split_part(:'alice_token', '.', 2));

-- WL014: signed right, but for an offer that does not exist, for another
-- resource, or with a deadline the offer no longer has
SELECT waitlist.offer_token_for('tok-1', 999999, now() + interval '1 hour') AS no_offer_token \gset
SELECT waitlist_decline_token(:'no_offer_token');
SELECT waitlist.offer_token_for('tok-2', :alice_offer, expires_at) AS other_resource_token
FROM waitlist.offer WHERE offer_id = :alice_offer \gset
SELECT waitlist_decline_token(:'other_resource_token');
SELECT waitlist.offer_token_for('tok-1', :alice_offer, expires_at + interval '1 microsecond') AS moved_token
FROM waitlist.offer WHERE offer_id = :alice_offer \gset
SELECT * FROM waitlist_accept_token(:'moved_token', 'k');

-- WL013: past the deadline it carries
SELECT waitlist.offer_token_for('tok-1', :alice_offer, now() - interval '1 second') AS expired_token \gset
SELECT waitlist_decline_token(:'expired_token');
SELECT * FROM waitlist_accept_token(:'expired_token', 'k');

-- NULLs
SELECT waitlist_decline_token(NULL);
SELECT * FROM waitlist_accept_token(NULL, 'k');
SELECT waitlist_offer_token(NULL);
SELECT waitlist_offer_token(-1);

SELECT * FROM changes \gset after_
SELECT :'before_transitions' = :'after_transitions' AS no_transition,
       :'before_outbox_rows' = :'after_outbox_rows' AS no_outbox_row,
       :'before_requests' = :'after_requests' AS no_request,
       :'before_offers' = :'after_offers' AS no_offer_moved,
       :'before_keys' = :'after_keys' AS no_key_changed;

--
-- Accept by token: what waitlist_accept does, idempotent per key across both
--
SELECT * FROM waitlist_accept_token(:'alice_token', 'alice-tap-1');
SELECT * FROM waitlist_accept_token(:'alice_token', 'alice-tap-1');
SELECT * FROM waitlist_accept(:alice_offer, 'alice-tap-1');
SELECT offer_id = :alice_offer AS alice, idempotency_key, state FROM waitlist.accept_request;
SELECT state, idempotency_key FROM waitlist.offer WHERE offer_id = :alice_offer;
SELECT entity, from_state, to_state, reason FROM waitlist.transition
WHERE entity_id IN (:alice_offer, (SELECT entry_id FROM waitlist.offer WHERE offer_id = :alice_offer))
  AND reason = 'accepted' ORDER BY transition_id;

--
-- Decline by token: the unit goes to carol, whose offer comes with a token
--
SELECT waitlist_decline_token(:'bob_token');
SELECT waitlist_decline_token(:'bob_token');
SELECT user_id, state FROM waitlist.offer ORDER BY offer_id;
SELECT offer_id AS carol_offer FROM waitlist.offer WHERE user_id = 'carol' \gset
SELECT payload->>'token' AS carol_token FROM waitlist.outbox
WHERE event_type = 'offer_created' AND offer_id = :carol_offer LIMIT 1 \gset
-- a settled offer's token verifies, and the offer answers as by id
SELECT * FROM waitlist_accept_token(:'bob_token', 'bob-tap-1');
SELECT * FROM waitlist_accept(:bob_offer, 'bob-tap-1');
-- one more unit: dave's offer
SELECT waitlist_release('tok-1', 1, 'tok-release-2');
SELECT offer_id AS dave_offer FROM waitlist.offer WHERE user_id = 'dave' \gset
SELECT waitlist_offer_token(:dave_offer) AS dave_token \gset

--
-- Rotation: key 2 signs, key 1 verifies until the offers of now expire
--
SELECT waitlist_rotate_token_key() AS new_key;
SELECT key_id, verifies_until IS NULL AS signs,
       verifies_until = (SELECT max(expires_at) FROM waitlist.offer WHERE expires_at > now()) AS until_last_deadline
FROM waitlist.token_key ORDER BY key_id;
SELECT waitlist_offer_token(:dave_offer) AS dave_token_2 \gset
SELECT :'dave_token_2' <> :'dave_token' AS signed_anew;
-- key 1's tokens still verify
SELECT * FROM waitlist_accept_token(:'carol_token', 'carol-tap-1');

-- key 1's time is up (made to pass here): its tokens verify no more
UPDATE waitlist.token_key SET verifies_until = now() WHERE key_id = 1;
SELECT * FROM waitlist_accept_token(:'dave_token', 'dave-tap-1');
SELECT waitlist_decline_token(:'dave_token');
SELECT state FROM waitlist.offer WHERE offer_id = :dave_offer;
-- key 2's token of the same offer does
SELECT waitlist_decline_token(:'dave_token_2');
-- erin gets the unit, with a token of key 2
SELECT offer_id AS erin_offer FROM waitlist.offer WHERE user_id = 'erin' \gset
SELECT payload->>'token' AS erin_token FROM waitlist.outbox
WHERE event_type = 'offer_created' AND offer_id = :erin_offer LIMIT 1 \gset
SELECT ('x' || encode(substr(pg_temp.b64url_decode(split_part(:'erin_token', '.', 1)), 2, 4), 'hex'))::bit(32)::integer AS key_id;

-- the next rotation erases key 1; key 2 verifies while erin's offer is open
SELECT waitlist_rotate_token_key() AS new_key;
SELECT key_id, verifies_until IS NULL AS signs FROM waitlist.token_key ORDER BY key_id;
SELECT waitlist_decline_token(:'dave_token');
SELECT * FROM waitlist_accept_token(:'erin_token', 'erin-tap-1');

-- with no offer before its deadline, the old key is retired at once
UPDATE waitlist.offer SET expires_at = now() - interval '1 second' WHERE expires_at > now();
SELECT waitlist_rotate_token_key() AS new_key;
SELECT key_id, verifies_until IS NULL AS signs, verifies_until <= now() AS retired
FROM waitlist.token_key ORDER BY key_id;

-- a rotation needs a snapshot that sees every offer made before it
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT waitlist_rotate_token_key();
ROLLBACK;
-- a rotation rolled back, to a savepoint too, leaves the signing key as it
-- was, for the rest of the transaction as well
CREATE FUNCTION pg_temp.key_of(t text) RETURNS integer
LANGUAGE sql AS $$
    SELECT ('x' || encode(substr(pg_temp.b64url_decode(split_part(t, '.', 1)), 2, 4), 'hex'))::bit(32)::integer
$$;
BEGIN;
SELECT pg_temp.key_of(waitlist_offer_token(:alice_offer)) AS signed_by;
SAVEPOINT before_rotation;
SELECT waitlist_rotate_token_key() AS new_key;
SELECT pg_temp.key_of(waitlist_offer_token(:alice_offer)) AS signed_by;
ROLLBACK TO SAVEPOINT before_rotation;
SELECT pg_temp.key_of(waitlist_offer_token(:alice_offer)) AS signed_by;
COMMIT;
SELECT key_id, verifies_until IS NULL AS signs FROM waitlist.token_key ORDER BY key_id;

SELECT * FROM waitlist_check();
