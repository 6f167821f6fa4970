--
-- outbox: getting notifications out
--
-- Channels (each event written once per channel of its resource), the
-- consumer protocol (claim under a lease with a fencing token, ack, fail
-- with exponential backoff and jitter, dead letters, retry), the order of
-- one user's rows on one channel, lease expiry, the per-channel token
-- buckets, the in-app inbox with waitlist_offer_seen() and
-- waitlist.offer_outcomes, and bad input.
--
-- Nothing here prints a timestamp or a lease token: times are compared with
-- each other, tokens with each other.  NOTIFY is tested in the isolation
-- spec outbox_claim (psql would print the sender's PID here).
--
\set VERBOSITY sqlstate
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- a fresh install, so that this file does not depend on the files before it
DROP EXTENSION IF EXISTS waitlist CASCADE;
CREATE EXTENSION waitlist;
RESET client_min_messages;

-- the outbox, without times, payloads and token values
CREATE TEMP VIEW outbox AS
SELECT outbox_id, resource_id, user_id, channel, event_type, state, attempts,
       lease_owner, lease_token IS NOT NULL AS leased, last_error
FROM waitlist.outbox ORDER BY outbox_id;

-- what each relay holds: the rows it claimed, with their tokens
CREATE TEMP TABLE claims (relay text, outbox_id bigint, resource_id text, user_id text,
                          channel text, event_type text, payload jsonb,
                          created_at timestamptz, attempts integer, lease_token bigint);

-- a relay claims; returns what it got per channel, e.g. 'push=2 sms=1'
CREATE FUNCTION pg_temp.claim(relay text, max_rows integer DEFAULT 100,
                              lease interval DEFAULT '30 seconds',
                              channels text[] DEFAULT NULL) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    got text;
BEGIN
    WITH c AS (
        INSERT INTO claims
        SELECT relay, c.*
        FROM waitlist_outbox_claim(relay, max_rows, lease, channels) c
        RETURNING channel
    )
    SELECT string_agg(channel || '=' || n, ' ' ORDER BY channel) INTO got
    FROM (SELECT channel, count(*) AS n FROM c GROUP BY channel) x;
    RETURN coalesce(got, 'nothing');
END;
$$;

-- a relay acks everything it holds; returns how many acks succeeded
CREATE FUNCTION pg_temp.ack_all(relay text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    SELECT count(*) FILTER (WHERE waitlist_outbox_ack(c.outbox_id, c.lease_token)) INTO n
    FROM claims c JOIN waitlist.outbox b USING (outbox_id)
    WHERE c.relay = ack_all.relay AND b.lease_owner = ack_all.relay
      AND b.lease_token = c.lease_token AND b.state = 'PENDING';
    RETURN n;
END;
$$;

-- deliver whatever is deliverable now, round after round
CREATE FUNCTION pg_temp.drain() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    total bigint := 0;
BEGIN
    LOOP
        SELECT count(*) FILTER (WHERE waitlist_outbox_ack(outbox_id, lease_token)) INTO n
        FROM waitlist_outbox_claim('drain', 10000);
        EXIT WHEN n = 0;
        total := total + n;
    END LOOP;
    RETURN total;
END;
$$;

--
-- Channels: every event is written once per channel of its resource
--
SELECT waitlist_create_resource('gig', '10 minutes', channels => '{sms,email}');
SELECT waitlist_create_resource('talk', '20 minutes');
SELECT resource_id, ARRAY(SELECT DISTINCT c FROM unnest(channels) c ORDER BY c) AS channels
FROM waitlist.resource ORDER BY resource_id;
SELECT count(waitlist_join('gig', u)) AS joined FROM unnest(ARRAY['ann', 'bob', 'cat']) u;
SELECT waitlist_join('talk', 'ann') > 0 AS joined;
SELECT waitlist_release('gig', 2, 'gig-1');
SELECT waitlist_release('talk', 1, 'talk-1');
-- bob declines; the unit goes to cat
SELECT waitlist_decline(o.offer_id)
FROM waitlist.offer o JOIN waitlist.entry e USING (resource_id, entry_id)
WHERE e.user_id = 'bob';
SELECT * FROM outbox;
SELECT b.resource_id, b.offer_id, b.event_type,
       string_agg(b.channel, ',' ORDER BY b.channel) AS channels,
       count(DISTINCT b.payload) AS payloads
FROM waitlist.outbox b
GROUP BY b.resource_id, b.offer_id, b.event_type
ORDER BY b.offer_id, b.event_type;

--
-- Claim: oldest first, at most max_rows, and one row at a time per user and
-- channel: bob's "declined" rows wait behind his "created" rows, while ann's
-- webhook row does not wait for her email and sms rows
--
SELECT pg_temp.claim('relay-1', 3);
SELECT outbox_id, user_id, channel, event_type, attempts FROM claims ORDER BY outbox_id;
SELECT pg_temp.claim('relay-1');
SELECT outbox_id, user_id, channel, event_type, attempts FROM claims ORDER BY outbox_id;
-- the claim hands out the rows as they are, leased to relay-1 with its token
SELECT count(*) AS claimed,
       count(*) FILTER (WHERE b.lease_owner = 'relay-1' AND b.lease_token = c.lease_token) AS leased_to_relay_1,
       count(*) FILTER (WHERE b.lease_expires_at > now()
                          AND b.lease_expires_at <= clock_timestamp() + interval '30 seconds') AS lease_30s,
       count(*) FILTER (WHERE c.lease_token > 0) AS tokens_positive,
       count(*) FILTER (WHERE b.user_id = c.user_id AND b.channel = c.channel
                          AND b.event_type = c.event_type AND b.attempts = c.attempts) AS rows_match
FROM claims c JOIN waitlist.outbox b USING (outbox_id);
-- the claim's other columns are the row's
SELECT count(*) FILTER (WHERE c.payload = b.payload AND c.created_at = b.created_at
                          AND c.resource_id = b.resource_id) AS payload_time_resource_match
FROM claims c JOIN waitlist.outbox b USING (outbox_id);
-- everything left is leased or waits behind a leased row: a second relay
-- gets nothing
SELECT pg_temp.claim('relay-2');
SELECT outbox_id, user_id, channel, event_type, state, lease_owner FROM outbox
WHERE resource_id IN ('gig', 'talk');

--
-- Ack: DELIVERED; repeating it with the same token is harmless; the next
-- row of that user on that channel becomes claimable, and only that one
--
SELECT c.outbox_id AS bob_email, c.lease_token AS bob_email_token FROM claims c
WHERE c.user_id = 'bob' AND c.channel = 'email' \gset
SELECT waitlist_outbox_ack(:bob_email, :bob_email_token);
SELECT waitlist_outbox_ack(:bob_email, :bob_email_token);
SELECT state, lease_expires_at IS NULL AS lease_ended, delivered_at IS NOT NULL AS delivered,
       delivered_at <= clock_timestamp() AS delivered_in_past
FROM waitlist.outbox WHERE outbox_id = :bob_email;
SELECT pg_temp.claim('relay-2');
SELECT outbox_id, user_id, channel, event_type FROM claims WHERE relay = 'relay-2';
-- relay-2's token is newer than relay-1's
SELECT (SELECT min(lease_token) FROM claims WHERE relay = 'relay-2')
     > (SELECT max(lease_token) FROM claims WHERE relay = 'relay-1') AS newer_token;
-- a token that is not the row's is refused (WL005): a made-up one, and
-- another relay's
SELECT waitlist_outbox_ack(:bob_email, :bob_email_token + 1000);
SELECT c.outbox_id AS ann_sms FROM claims c WHERE c.user_id = 'ann' AND c.channel = 'sms' \gset
SELECT waitlist_outbox_ack(:ann_sms, (SELECT lease_token FROM claims WHERE relay = 'relay-2'));
SELECT waitlist_outbox_fail(:ann_sms, (SELECT lease_token FROM claims WHERE relay = 'relay-2'), 'not mine');
SELECT state, attempts, lease_owner FROM waitlist.outbox WHERE outbox_id = :ann_sms;
-- a delivered row cannot be failed any more (WL005)
SELECT waitlist_outbox_fail(:bob_email, :bob_email_token, 'too late');
SELECT state, attempts, last_error FROM waitlist.outbox WHERE outbox_id = :bob_email;
-- unknown rows: 42704, whatever the token
SELECT waitlist_outbox_ack(999999, 1);
SELECT waitlist_outbox_fail(999999, 1, 'nope');
-- the relays ack what they hold; bob's sms "declined" row comes out last
SELECT pg_temp.ack_all('relay-1') AS relay_1_acks, pg_temp.ack_all('relay-2') AS relay_2_acks;
SELECT pg_temp.claim('relay-2');
SELECT outbox_id, user_id, channel, event_type FROM claims WHERE relay = 'relay-2' ORDER BY outbox_id;
SELECT pg_temp.ack_all('relay-2') AS relay_2_acks;
SELECT pg_temp.drain() AS drained;
SELECT state, count(*) FROM waitlist.outbox GROUP BY state ORDER BY state;
-- delivered rows never come back
SELECT pg_temp.claim('relay-3');

--
-- Channels, continued
--
-- a channel named twice still gets each event once
SELECT waitlist_create_resource('twice', channels => '{sms,sms,push}');
SELECT waitlist_join('twice', 'tia') > 0 AS joined;
SELECT waitlist_release('twice', 1, 'twice-1');
SELECT channel, count(*) FROM waitlist.outbox WHERE resource_id = 'twice'
GROUP BY channel ORDER BY channel;
-- changing the channels applies to the events written after
SELECT waitlist_alter_resource('twice', channels => '{email}');
SELECT waitlist_decline(offer_id) FROM waitlist.offer WHERE resource_id = 'twice';
SELECT event_type, string_agg(channel, ',' ORDER BY channel) AS channels
FROM waitlist.outbox WHERE resource_id = 'twice'
GROUP BY event_type ORDER BY event_type;
-- channels must be a non-empty subset of email, sms, push, webhook (22023)
SELECT waitlist_create_resource('bad-ch', channels => '{}');
SELECT waitlist_create_resource('bad-ch', channels => '{fax}');
SELECT waitlist_create_resource('bad-ch', channels => '{SMS}');
SELECT waitlist_create_resource('bad-ch', channels => '{sms,NULL}');
SELECT waitlist_create_resource('bad-ch', channels => '{sms,""}');
SELECT waitlist_alter_resource('gig', channels => '{}');
SELECT waitlist_alter_resource('gig', channels => '{email,pager}');
SELECT resource_id, ARRAY(SELECT DISTINCT c FROM unnest(channels) c ORDER BY c) AS channels
FROM waitlist.resource ORDER BY resource_id;
SELECT pg_temp.drain() AS drained;

--
-- Lease expiry: a relay that stops answering loses its lease; another relay
-- gets the row with a newer token, and the first relay's ack and fail are
-- refused (WL005)
--
SELECT waitlist_join('talk', 'dee') > 0 AS joined;
SELECT waitlist_release('talk', 1, 'talk-2');
SELECT pg_temp.claim('relay-a', 10, '1 millisecond');
SELECT outbox_id AS dee_row, lease_token AS token_a FROM claims WHERE relay = 'relay-a' \gset
SELECT pg_sleep(0.01);
SELECT lease_expires_at < clock_timestamp() AS lease_ran_out FROM waitlist.outbox WHERE outbox_id = :dee_row;
SELECT pg_temp.claim('relay-b');
SELECT outbox_id = :dee_row AS same_row, lease_token > :token_a AS newer_token
FROM claims WHERE relay = 'relay-b';
SELECT waitlist_outbox_ack(:dee_row, :token_a);
SELECT waitlist_outbox_fail(:dee_row, :token_a, 'late');
SELECT state, attempts, lease_owner FROM waitlist.outbox WHERE outbox_id = :dee_row;
SELECT pg_temp.ack_all('relay-b') AS relay_b_acks;
SELECT state, lease_owner FROM waitlist.outbox WHERE outbox_id = :dee_row;
-- an expired lease nobody took over: the token still holds, the ack counts
SELECT waitlist_join('talk', 'dan') > 0 AS joined;
SELECT waitlist_release('talk', 1, 'talk-3');
SELECT pg_temp.claim('relay-c', 10, '1 millisecond');
SELECT pg_sleep(0.01);
SELECT pg_temp.ack_all('relay-c') AS relay_c_acks;
SELECT count(*) AS undelivered FROM waitlist.outbox WHERE state <> 'DELIVERED';

--
-- Fail: the row comes back after base * 2^(attempts - 1), with jitter of
-- 0.5x to 1.5x; meanwhile nobody gets it, nor the user's later rows on that
-- channel.  The backoff is aged by hand to claim the row again.
--
SET waitlist.outbox_retry_base = '10s';
SHOW waitlist.outbox_retry_base;
SELECT waitlist_join('talk', 'eli') > 0 AS joined;
SELECT waitlist_release('talk', 1, 'talk-4');
CREATE TEMP TABLE backoff (attempt integer, next_attempt_at timestamptz,
                           failed_after timestamptz, failed_before timestamptz);
SELECT pg_temp.claim('relay-d');
SELECT outbox_id AS eli_row, lease_token AS token FROM claims WHERE relay = 'relay-d' \gset
SELECT clock_timestamp() AS t0 \gset
SELECT waitlist_outbox_fail(:eli_row, :token, 'HTTP 503') AS dead_lettered;
SELECT clock_timestamp() AS t1 \gset
INSERT INTO backoff SELECT attempts, next_attempt_at, :'t0', :'t1' FROM waitlist.outbox WHERE outbox_id = :eli_row;
SELECT state, attempts, last_error, lease_owner, lease_expires_at IS NULL AS lease_ended
FROM waitlist.outbox WHERE outbox_id = :eli_row;
SELECT pg_temp.claim('relay-e');
-- eli declines: the "declined" row waits behind the row that is backing off
SELECT waitlist_decline(offer_id) FROM waitlist.offer o JOIN waitlist.entry e USING (resource_id, entry_id)
WHERE e.user_id = 'eli';
SELECT pg_temp.claim('relay-e');
-- second attempt
UPDATE waitlist.outbox SET next_attempt_at = clock_timestamp() WHERE outbox_id = :eli_row;
SELECT pg_temp.claim('relay-e');
SELECT outbox_id = :eli_row AS same_row, event_type, attempts, lease_token > :token AS newer_token
FROM claims WHERE relay = 'relay-e';
SELECT lease_token AS token FROM claims WHERE relay = 'relay-e' \gset
SELECT clock_timestamp() AS t0 \gset
SELECT waitlist_outbox_fail(:eli_row, :token, 'HTTP 502') AS dead_lettered;
SELECT clock_timestamp() AS t1 \gset
INSERT INTO backoff SELECT attempts, next_attempt_at, :'t0', :'t1' FROM waitlist.outbox WHERE outbox_id = :eli_row;
-- third attempt
UPDATE waitlist.outbox SET next_attempt_at = clock_timestamp() WHERE outbox_id = :eli_row;
SELECT pg_temp.claim('relay-f');
SELECT lease_token AS token FROM claims WHERE relay = 'relay-f' \gset
SELECT clock_timestamp() AS t0 \gset
SELECT waitlist_outbox_fail(:eli_row, :token, 'timeout') AS dead_lettered;
SELECT clock_timestamp() AS t1 \gset
INSERT INTO backoff SELECT attempts, next_attempt_at, :'t0', :'t1' FROM waitlist.outbox WHERE outbox_id = :eli_row;
-- each backoff within its bounds: 0.5x .. 1.5x of 10 s, 20 s, 40 s
SELECT attempt,
       next_attempt_at >= failed_after + interval '10 seconds' * 2 ^ (attempt - 1) * 0.5 AS not_too_soon,
       next_attempt_at <= failed_before + interval '10 seconds' * 2 ^ (attempt - 1) * 1.5 AS not_too_late
FROM backoff ORDER BY attempt;
-- and it grows: the third wait is longer than the first could ever be
SELECT (SELECT next_attempt_at - failed_before FROM backoff WHERE attempt = 3)
     > (SELECT next_attempt_at - failed_after FROM backoff WHERE attempt = 1) AS grows;
SELECT state, attempts, last_error FROM waitlist.outbox WHERE outbox_id = :eli_row;
-- delivered on the fourth attempt; then eli's "declined" row comes out
UPDATE waitlist.outbox SET next_attempt_at = clock_timestamp() WHERE outbox_id = :eli_row;
SELECT pg_temp.claim('relay-g');
SELECT pg_temp.ack_all('relay-g') AS relay_g_acks;
SELECT state, attempts, last_error FROM waitlist.outbox WHERE outbox_id = :eli_row;
SELECT pg_temp.claim('relay-h');
SELECT event_type, attempts FROM claims WHERE relay = 'relay-h';
SELECT pg_temp.ack_all('relay-h') AS relay_h_acks;

--
-- Dead letters: after waitlist.outbox_max_attempts failures the row is DEAD
-- with the last error, and fail returns true.  A dead row no longer holds
-- back the user's later rows.  waitlist_outbox_retry() revives it.
--
SET waitlist.outbox_max_attempts = 2;
SET waitlist.outbox_retry_base = 1;
SELECT waitlist_join('talk', 'fay') > 0 AS joined;
SELECT waitlist_release('talk', 1, 'talk-5');
SELECT pg_temp.claim('relay-i');
SELECT outbox_id AS fay_row, lease_token AS token FROM claims WHERE relay = 'relay-i' \gset
-- an overlong error is cut to its first 1000 characters
SELECT waitlist_outbox_fail(:fay_row, :token, repeat('x', 4000) || 'end') AS dead_lettered;
SELECT state, attempts, length(last_error) AS error_length, last_error = repeat('x', 1000) AS error_head
FROM waitlist.outbox WHERE outbox_id = :fay_row;
SELECT pg_sleep(0.01);
SELECT pg_temp.claim('relay-j');
SELECT lease_token AS token FROM claims WHERE relay = 'relay-j' \gset
SELECT waitlist_outbox_fail(:fay_row, :token, 'mailbox full') AS dead_lettered;
SELECT state, attempts, last_error, lease_expires_at IS NULL AS lease_ended
FROM waitlist.outbox WHERE outbox_id = :fay_row;
-- a dead row is not handed out, and its token is stale
SELECT pg_sleep(0.01);
SELECT pg_temp.claim('relay-k');
SELECT waitlist_outbox_ack(:fay_row, :token);
SELECT waitlist_outbox_fail(:fay_row, :token, 'again');
-- fay's later row on the same channel goes out
SELECT waitlist_decline(offer_id) FROM waitlist.offer o JOIN waitlist.entry e USING (resource_id, entry_id)
WHERE e.user_id = 'fay';
SELECT pg_temp.claim('relay-k');
SELECT user_id, event_type FROM claims WHERE relay = 'relay-k';
SELECT pg_temp.ack_all('relay-k') AS relay_k_acks;
-- retry: PENDING with fresh attempts, no error, no lease; claimable again
SELECT waitlist_outbox_retry(:fay_row);
SELECT state, attempts, last_error, lease_owner, lease_token, lease_expires_at
FROM waitlist.outbox WHERE outbox_id = :fay_row;
-- the old token is stale after the retry
SELECT waitlist_outbox_ack(:fay_row, :token);
-- only a dead row is revived: false otherwise; 42704 for an unknown row
SELECT waitlist_outbox_retry(:fay_row);
SELECT waitlist_outbox_retry(:eli_row);
SELECT waitlist_outbox_retry(999999);
SELECT pg_temp.claim('relay-l');
SELECT outbox_id = :fay_row AS same_row, attempts FROM claims WHERE relay = 'relay-l';
SELECT pg_temp.ack_all('relay-l') AS relay_l_acks;
SELECT state, attempts FROM waitlist.outbox WHERE outbox_id = :fay_row;
RESET waitlist.outbox_max_attempts;
RESET waitlist.outbox_retry_base;
SELECT count(*) AS undelivered FROM waitlist.outbox WHERE state <> 'DELIVERED';

--
-- Rate limits: a token bucket per channel.  A claim never hands out more
-- rows of a channel than its whole tokens; other channels are not held
-- back.  The buckets are aged by hand where a test needs time to pass.
--
SELECT channel, rate_per_second, burst FROM waitlist.channel ORDER BY channel;
SELECT waitlist_create_resource('sale', '10 minutes', channels => '{sms,push}');
SELECT count(waitlist_join('sale', 's' || i)) AS joined FROM generate_series(1, 8) i;
SELECT waitlist_release('sale', 8, 'sale-1');
SELECT channel, count(*) FROM waitlist.outbox WHERE state = 'PENDING' GROUP BY channel ORDER BY channel;
SELECT waitlist_set_channel_rate('sms', 2, 2);
SELECT channel, rate_per_second, burst, floor(tokens) AS whole_tokens FROM waitlist.channel ORDER BY channel;
-- two relays right after each other: the first gets the 2 sms the bucket
-- holds and every push row, the second no sms row
SELECT pg_temp.claim('sale-1') AS first_relay, pg_temp.claim('sale-2') AS second_relay;
SELECT floor(tokens) AS whole_tokens FROM waitlist.channel WHERE channel = 'sms';
-- an hour later the bucket holds its burst, no more
UPDATE waitlist.channel SET refilled_at = clock_timestamp() - interval '1 hour' WHERE channel = 'sms';
SELECT pg_temp.claim('sale-3');
-- at 0.1 per second, 15 seconds make 1.5 tokens: one row
SELECT waitlist_set_channel_rate('sms', 0.1, 5);
UPDATE waitlist.channel SET tokens = 0, refilled_at = clock_timestamp() - interval '15 seconds'
WHERE channel = 'sms';
SELECT pg_temp.claim('sale-4');
-- the default burst is one second's worth, at least 1
SELECT waitlist_set_channel_rate('sms', 3);
SELECT rate_per_second, burst, floor(tokens) AS whole_tokens FROM waitlist.channel WHERE channel = 'sms';
SELECT waitlist_set_channel_rate('sms', 0.5);
SELECT rate_per_second, burst, floor(tokens) AS whole_tokens FROM waitlist.channel WHERE channel = 'sms';
-- NULL: unlimited again; the remaining sms rows all go out
SELECT waitlist_set_channel_rate('sms', NULL);
SELECT rate_per_second, burst FROM waitlist.channel WHERE channel = 'sms';
SELECT pg_temp.claim('sale-5');
SELECT relay, channel, count(*) FROM claims WHERE relay LIKE 'sale-%'
GROUP BY relay, channel ORDER BY relay, channel;
SELECT pg_temp.ack_all('sale-1') + pg_temp.ack_all('sale-3') + pg_temp.ack_all('sale-4')
       + pg_temp.ack_all('sale-5') AS sale_acks;
-- unknown channel or bad rate or burst: 22023; NULL channel: 22004
SELECT waitlist_set_channel_rate('fax', 1);
SELECT waitlist_set_channel_rate('SMS', 1);
SELECT waitlist_set_channel_rate('', 1);
SELECT waitlist_set_channel_rate(NULL, 1);
SELECT waitlist_set_channel_rate('sms', 0);
SELECT waitlist_set_channel_rate('sms', -1);
SELECT waitlist_set_channel_rate('sms', 'NaN');
SELECT waitlist_set_channel_rate('sms', 'Infinity');
SELECT waitlist_set_channel_rate('sms', 1, 0);
SELECT waitlist_set_channel_rate('sms', 1, -5);
-- rates from 0.000001 to 1000000 per second, bursts up to 1000000
SELECT waitlist_set_channel_rate('sms', 1e308);
SELECT waitlist_set_channel_rate('sms', 1000000.5);
SELECT waitlist_set_channel_rate('sms', 0.0000009);
SELECT waitlist_set_channel_rate('sms', 1e-320);
SELECT waitlist_set_channel_rate('sms', 1, 1000001);
SELECT channel, rate_per_second, burst FROM waitlist.channel ORDER BY channel;
SELECT waitlist_set_channel_rate('sms', 1000000);
SELECT rate_per_second, burst FROM waitlist.channel WHERE channel = 'sms';
SELECT waitlist_set_channel_rate('sms', 0.000001, 1000000);
SELECT rate_per_second, burst FROM waitlist.channel WHERE channel = 'sms';
-- the table holds them too, for rows written by hand (23514)
UPDATE waitlist.channel SET rate_per_second = 1e308 WHERE channel = 'sms';
UPDATE waitlist.channel SET burst = 2000000 WHERE channel = 'sms';
UPDATE waitlist.channel SET burst = NULL WHERE channel = 'sms';
SELECT waitlist_set_channel_rate('sms', NULL);

--
-- Each channel is claimed within its own tokens, then the channels are
-- merged oldest first: 500 sms rows behind a bucket of one token do not
-- crowd out 10 webhook rows written after them.  Only the buckets of the
-- channels claimed are refilled.
--
SELECT waitlist_create_resource('flood', '10 minutes', channels => '{sms}');
SELECT count(waitlist_join('flood', 'f' || i)) AS joined FROM generate_series(1, 500) i;
SELECT waitlist_release('flood', 500, 'flood-1');
SELECT waitlist_create_resource('hook', '10 minutes', channels => '{webhook}');
SELECT count(waitlist_join('hook', 'h' || i)) AS joined FROM generate_series(1, 10) i;
SELECT waitlist_release('hook', 10, 'hook-1');
SELECT waitlist_set_channel_rate('sms', 0.001, 1);
SELECT waitlist_set_channel_rate('push', 0.001, 3);
UPDATE waitlist.channel SET refilled_at = clock_timestamp() - interval '1 hour'
WHERE channel IN ('sms', 'push');
SELECT pg_temp.claim('flood-1');
SELECT pg_temp.claim('flood-2');
-- the sms bucket was refilled (and spent), the push bucket, with no pending
-- row, was not touched
SELECT channel, floor(tokens) AS whole_tokens, refilled_at > clock_timestamp() - interval '1 minute' AS refilled
FROM waitlist.channel WHERE channel IN ('sms', 'push') ORDER BY channel;
-- max_rows still caps the merge, oldest first: 3 of the next webhook rows
SELECT count(waitlist_join('hook', 'k' || i)) AS joined FROM generate_series(1, 5) i;
SELECT waitlist_release('hook', 5, 'hook-2');
SELECT pg_temp.claim('flood-3', 3);
SELECT string_agg(user_id, ',' ORDER BY outbox_id) AS flood_3_got FROM claims WHERE relay = 'flood-3';
-- a relay for sms only, with a bucket big enough, takes the rest of them
SELECT waitlist_set_channel_rate('sms', 1000, 1000);
SELECT pg_temp.claim('flood-4', 1000, channels => '{sms}');
SELECT pg_temp.ack_all('flood-1') + pg_temp.ack_all('flood-2') + pg_temp.ack_all('flood-3')
       + pg_temp.ack_all('flood-4') AS flood_acks;
SELECT waitlist_set_channel_rate('sms', NULL);
SELECT waitlist_set_channel_rate('push', NULL);
SELECT pg_temp.drain() AS drained;

--
-- A relay for some channels only: a claim may name the channels it takes
--
SELECT waitlist_create_resource('multi', '10 minutes', channels => '{email,sms,push,webhook}');
SELECT count(waitlist_join('multi', 'm' || i)) AS joined FROM generate_series(1, 2) i;
SELECT waitlist_release('multi', 2, 'multi-1');
SELECT pg_temp.claim('sms-relay', channels => '{sms}');
SELECT pg_temp.claim('mail-relay', channels => '{email,push}');
SELECT pg_temp.claim('sms-relay', channels => '{sms}');
SELECT pg_temp.claim('any-relay');
SELECT relay, string_agg(DISTINCT channel, ',' ORDER BY channel) AS channels, count(*)
FROM claims WHERE relay IN ('sms-relay', 'mail-relay', 'any-relay') GROUP BY relay ORDER BY relay;
-- the rate limit of a channel holds whichever relays claim it
SELECT waitlist_decline(offer_id) FROM waitlist.offer WHERE resource_id = 'multi';
SELECT waitlist_set_channel_rate('sms', 1, 1);
SELECT pg_temp.ack_all('sms-relay') + pg_temp.ack_all('mail-relay') + pg_temp.ack_all('any-relay') AS acks;
SELECT pg_temp.claim('sms-relay-2', channels => '{sms}') AS first_sms_relay,
       pg_temp.claim('any-relay-2') AS second_relay;
SELECT pg_temp.ack_all('sms-relay-2') + pg_temp.ack_all('any-relay-2') AS acks;
SELECT waitlist_set_channel_rate('sms', NULL);
SELECT pg_temp.drain() AS drained;

--
-- The in-app inbox: ivy's open offers first (soonest deadline first), then
-- her recent events, newest first, each once however many channels it went
-- to
--
SELECT waitlist_create_resource('tour', '30 minutes', channels => '{email,sms,push}');
SELECT waitlist_create_resource('club', '10 minutes');
SELECT waitlist_join('tour', 'ivy') > 0 AS joined;
SELECT waitlist_release('tour', 1, 'tour-1');
SELECT offer_id AS offer_a FROM waitlist.offer WHERE resource_id = 'tour' \gset
SELECT waitlist_decline(:offer_a);
SELECT waitlist_join('club', 'ivy') > 0 AS joined;
SELECT waitlist_release('club', 1, 'club-1');
SELECT offer_id AS offer_b FROM waitlist.offer WHERE resource_id = 'club' \gset
SELECT waitlist_join('tour', 'ivy') > 0 AS joined;
SELECT waitlist_release('tour', 1, 'tour-2');
SELECT offer_id AS offer_c FROM waitlist.offer WHERE resource_id = 'tour' AND state = 'OPEN' \gset
SELECT :offer_a < :offer_b AND :offer_b < :offer_c AS offers_in_order;
CREATE TEMP VIEW ivy AS
SELECT i.n, i.resource_id,
       CASE i.offer_id WHEN :offer_a THEN 'A' WHEN :offer_b THEN 'B' WHEN :offer_c THEN 'C' END AS offer,
       i.kind, i.state, i.seen_at IS NOT NULL AS seen,
       (i.entry_id, i.expires_at, i.seen_at) IS NOT DISTINCT FROM (o.entry_id, o.expires_at, o.seen_at) AS offer_matches,
       CASE WHEN i.kind = 'open_offer' THEN i.at = o.created_at AND i.payload IS NULL
            ELSE (i.payload->>'offer_id')::bigint = i.offer_id END AS at_and_payload_ok
FROM waitlist_inbox('ivy') WITH ORDINALITY
         AS i(resource_id, entry_id, offer_id, kind, state, expires_at, seen_at, at, payload, n)
LEFT JOIN waitlist.offer o ON o.resource_id = i.resource_id AND o.offer_id = i.offer_id
ORDER BY i.n;
SELECT * FROM ivy;
-- the events come newest first
SELECT bool_and(at_desc) AS newest_first FROM (
    SELECT at >= lead(at) OVER (ORDER BY n) OR lead(at) OVER (ORDER BY n) IS NULL AS at_desc
    FROM waitlist_inbox('ivy') WITH ORDINALITY
             AS i(resource_id, entry_id, offer_id, kind, state, expires_at, seen_at, at, payload, n)
    WHERE kind <> 'open_offer') x;
-- other users see only their own; a user without rows has an empty inbox
SELECT kind, count(*) FROM waitlist_inbox('ann') GROUP BY kind ORDER BY kind;
SELECT count(*) AS nobody FROM waitlist_inbox('nobody');
-- events older than "since" (7 days by default) drop out; open offers stay
UPDATE waitlist.outbox SET created_at = created_at - interval '8 days' WHERE offer_id = :offer_a;
SELECT offer, kind, state FROM ivy;
SELECT kind, count(*) FROM waitlist_inbox('ivy', '30 days') GROUP BY kind ORDER BY kind;
SELECT kind, count(*) FROM waitlist_inbox('ivy', '1 microsecond') GROUP BY kind ORDER BY kind;

-- ivy sees offer B: true the first time, false after; the inbox shows it
SELECT waitlist_offer_seen(:offer_b);
SELECT waitlist_offer_seen(:offer_b);
SELECT seen_at IS NOT NULL AS seen, seen_at >= created_at AS after_offer
FROM waitlist.offer WHERE offer_id = :offer_b;
SELECT offer, kind, seen, offer_matches FROM ivy;
-- 42704 for an unknown offer, 22004 for NULL
SELECT waitlist_offer_seen(999999);
SELECT waitlist_offer_seen(NULL);
-- both open offers run out, B (seen) first, then C (never seen)
UPDATE waitlist.offer SET expires_at = now() - interval '1 second' WHERE offer_id = :offer_b;
SELECT waitlist_sweep();
UPDATE waitlist.offer SET expires_at = now() - interval '1 second' WHERE offer_id = :offer_c;
SELECT waitlist_sweep();
SELECT offer, kind, state FROM ivy;
SELECT resource_id, offers, open, accepted, declined, expired, expired_unseen, seen,
       median_seconds_to_seen >= 0 AS median_known
FROM waitlist.offer_outcomes WHERE resource_id IN ('club', 'tour') ORDER BY resource_id;

--
-- Bad input
--
SELECT pg_temp.drain() AS drained;
-- claim: 22004 for NULLs, 22023 for an empty consumer, max_rows outside
-- 1..10000 or a lease that is not positive or over a day, 22001 for an
-- overlong consumer
SELECT * FROM waitlist_outbox_claim(NULL);
SELECT * FROM waitlist_outbox_claim('');
SELECT * FROM waitlist_outbox_claim(repeat('r', 201));
SELECT * FROM waitlist_outbox_claim('relay', NULL);
SELECT * FROM waitlist_outbox_claim('relay', 0);
SELECT * FROM waitlist_outbox_claim('relay', -1);
SELECT * FROM waitlist_outbox_claim('relay', 10001);
SELECT * FROM waitlist_outbox_claim('relay', 10, NULL);
SELECT * FROM waitlist_outbox_claim('relay', 10, '0');
SELECT * FROM waitlist_outbox_claim('relay', 10, '-1 second');
SELECT * FROM waitlist_outbox_claim('relay', 10, '1 day -24 hours');
SELECT * FROM waitlist_outbox_claim('relay', 10, '1 day 1 microsecond');
SELECT * FROM waitlist_outbox_claim('relay', 10, '100000000 years');
-- the limits themselves are fine
SELECT count(*) FROM waitlist_outbox_claim('relay', 10000, '1 microsecond');
SELECT count(*) FROM waitlist_outbox_claim('relay', 1, '1 day');
-- ack, fail, retry: 22004 for NULLs, 42704 for unknown rows
SELECT waitlist_outbox_ack(NULL, 1);
SELECT waitlist_outbox_ack(1, NULL);
SELECT waitlist_outbox_fail(NULL, 1, 'e');
SELECT waitlist_outbox_fail(1, NULL, 'e');
SELECT waitlist_outbox_fail(1, 1, NULL);
SELECT waitlist_outbox_retry(NULL);
SELECT waitlist_outbox_ack(-1, 1);
SELECT waitlist_outbox_fail(0, 1, 'e');
SELECT waitlist_outbox_retry(-1);
-- inbox: 22004 for NULLs, 22023 empty user, 22001 overlong user
SELECT * FROM waitlist_inbox(NULL);
SELECT * FROM waitlist_inbox('ivy', NULL);
SELECT * FROM waitlist_inbox('');
SELECT * FROM waitlist_inbox(repeat('u', 201));
-- a window longer than any history is all of it, not an error
SELECT count(*) AS ivy_events FROM waitlist_inbox('ivy', '100000000 years');
-- settings: the NOTIFY channel must fit in a name
SHOW waitlist.notify_channel;
SET waitlist.notify_channel = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
SET waitlist.outbox_max_attempts = 0;
SET waitlist.outbox_retry_base = 0;
SHOW waitlist.outbox_max_attempts;
SHOW waitlist.outbox_retry_base;
-- none of it changed anything
SELECT state, count(*) FROM waitlist.outbox GROUP BY state ORDER BY state;

--
-- A relay that failed a row has given up its lease: the same token can
-- neither fail the row a second time (counting one failure twice) nor ack
-- it (WL005)
--
SELECT waitlist_join('club', 'gus') > 0 AS joined;
SELECT waitlist_release('club', 1, 'club-2');
SELECT pg_temp.claim('relay-m');
SELECT outbox_id AS gus_row, lease_token AS token FROM claims WHERE relay = 'relay-m' \gset
SELECT waitlist_outbox_fail(:gus_row, :token, 'HTTP 500') AS dead_lettered;
SELECT waitlist_outbox_fail(:gus_row, :token, 'HTTP 500') AS dead_lettered;
SELECT waitlist_outbox_ack(:gus_row, :token);
SELECT state, attempts, last_error FROM waitlist.outbox WHERE outbox_id = :gus_row;

-- the guarantees hold
SELECT * FROM waitlist_check();
