--
-- messages: the error messages users see, in full
--
-- Every other regress file shows errors as their SQLSTATE only.  This one
-- shows the message, DETAIL and HINT of each user-facing error of the API
-- once, so that a change to any of them shows in the diff.  The other files
-- test when each error is raised; this one only what it says.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- a fresh install, no pg_cron, no roles left over
DROP EXTENSION IF EXISTS waitlist CASCADE;
DROP EXTENSION IF EXISTS pg_cron;
DROP SCHEMA IF EXISTS msg CASCADE;
DROP ROLE IF EXISTS regress_msg_nobody;
DROP ROLE IF EXISTS regress_msg_writer;
CREATE EXTENSION waitlist;
RESET client_min_messages;

SELECT waitlist_create_resource('msg', '10 minutes');
SELECT waitlist_create_resource('msg-capped', '10 minutes', max_waiting => 1);
SELECT waitlist_join('msg-capped', 'first') AS capped_entry \gset

--
-- identifiers and NULL arguments
--
SELECT waitlist_join(NULL, 'fan');
SELECT waitlist_join('msg', '');
SELECT waitlist_join('msg', repeat('u', 201));
SELECT waitlist_release('msg', NULL, 'ev');
SELECT waitlist_leave(NULL);

--
-- unknown objects
--
SELECT waitlist_join('nowhere', 'fan');
SELECT waitlist_alter_resource('nowhere', offer_ttl => '1 minute');
SELECT waitlist_leave(424242);
SELECT waitlist_status(424242);
SELECT * FROM waitlist_accept(424242, 'key');
SELECT waitlist_decline(424242);
SELECT waitlist_offer_seen(424242);
SELECT waitlist_retry_event('no-such-event');
SELECT waitlist_outbox_ack(424242, 1);
SELECT waitlist_outbox_retry(424242);
SELECT waitlist_create_resource('msg');

--
-- full, expired, not open
--
SELECT waitlist_join('msg-capped', 'second');

SELECT waitlist_join('msg', 'ann');
SELECT waitlist_join('msg', 'bob');
SELECT waitlist_join('msg', 'cyd');
SELECT waitlist_release('msg', 3, 'ev-1');
SELECT offer_id AS ann_offer FROM waitlist.offer o JOIN waitlist.entry e USING (entry_id)
WHERE e.user_id = 'ann' \gset
SELECT offer_id AS bob_offer FROM waitlist.offer o JOIN waitlist.entry e USING (entry_id)
WHERE e.user_id = 'bob' \gset
SELECT offer_id AS cyd_offer FROM waitlist.offer o JOIN waitlist.entry e USING (entry_id)
WHERE e.user_id = 'cyd' \gset
UPDATE waitlist.offer SET expires_at = now() - interval '1 second' WHERE offer_id = :ann_offer;
SELECT * FROM waitlist_accept(:ann_offer, 'key');
SELECT waitlist_decline(:ann_offer);
SELECT waitlist_decline(:bob_offer);
SELECT * FROM waitlist_accept(:bob_offer, 'key');
SELECT * FROM waitlist_accept(:cyd_offer, 'key');
SELECT waitlist_decline(:cyd_offer);

--
-- bad quantities and settings
--
SELECT waitlist_release('msg', 0, 'ev-2');
SELECT waitlist_release('msg', 1000001, 'ev-2');
SELECT waitlist_create_resource('msg-bad', '0 seconds');
SELECT waitlist_create_resource('msg-bad', '2 years');
SELECT waitlist_create_resource('msg-bad', max_waiting => 0);
SELECT waitlist_create_resource('msg-bad', channels => '{}');
SELECT waitlist_create_resource('msg-bad', channels => '{{email},{sms}}');
SELECT waitlist_create_resource('msg-bad', channels => '{email,pigeon}');
SELECT waitlist_create_resource('msg-bad', wave_size => 10);
SELECT waitlist_create_resource('msg-bad', wave_size => 0, wave_interval => '1 minute');
SELECT waitlist_create_resource('msg-bad', wave_size => 10, wave_interval => '0 seconds');
SELECT waitlist_alter_resource('msg', wave_size => 10);
SELECT waitlist_alter_resource('msg', max_waiting => 5, clear_max_waiting => true);
SELECT waitlist_alter_resource('msg', wave_size => 10, wave_interval => '1 minute',
                               clear_waves => true);
SELECT waitlist_promote('msg', -1);
SELECT waitlist_sweep(0);
SELECT * FROM waitlist_outbox_claim('relay', 0);
SELECT * FROM waitlist_outbox_claim('relay', 10, '0 seconds');
SELECT waitlist_set_channel_rate('email', NULL, 5);
SELECT waitlist_set_channel_rate('email', 0);
SELECT waitlist_set_channel_rate('email', 10, 0);
SELECT waitlist_set_channel_rate('pigeon', 10);

-- server settings: bounded, typed, and some not for sessions
SET waitlist.outbox_max_attempts = 0;
SET waitlist.outbox_retry_base = '2h';
SET waitlist.promotion_mode = 'sometimes';
SET waitlist.notify_channel = 'a_channel_name_that_is_much_too_long_for_a_postgresql_identifier';
SET waitlist.naptime = '5s';
SET waitlist.no_such_setting = 1;
SELECT * FROM waitlist_worker_status();

--
-- outbox leases
--
SELECT outbox_id AS row_id, lease_token AS token
FROM waitlist_outbox_claim('relay', 1) \gset
SELECT waitlist_outbox_ack(:row_id, :token + 1000);
SELECT waitlist_outbox_ack(:row_id, :token);
SELECT waitlist_outbox_fail(:row_id, :token, 'late');

--
-- booking functions
--
CREATE SCHEMA msg;
CREATE FUNCTION msg.book(p_resource text, p_fan text, p_offer bigint, p_key text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    CASE p_key
    WHEN 'null' THEN RETURN NULL;
    WHEN 'reenter' THEN PERFORM waitlist_decline(p_offer);
    WHEN 'by hand' THEN
        UPDATE waitlist.offer SET state = 'DECLINED', decided_at = now() WHERE offer_id = p_offer;
    WHEN 'set role' THEN SET ROLE regress_msg_nobody;
    ELSE NULL;
    END CASE;
    RETURN 'ref-' || p_offer;
END;
$$;
CREATE FUNCTION msg.book_gone(text, text, bigint, text) RETURNS text
LANGUAGE sql AS $$ SELECT 'never' $$;
CREATE FUNCTION msg.book_three(text, text, bigint) RETURNS text
LANGUAGE sql AS $$ SELECT 'never' $$;
CREATE ROLE regress_msg_nobody;

SELECT waitlist_create_resource('msg-bad', booking_function => 'msg.book_three(text,text,bigint)');
SELECT waitlist_alter_resource('msg', booking_function => 'msg.book(text,text,bigint,text)',
                               clear_booking_function => true);
SELECT waitlist_create_resource('msg-bad', booking_function => 424242::regprocedure);

SELECT waitlist_create_resource('msg-book', booking_function => 'msg.book(text,text,bigint,text)');
SELECT waitlist_create_resource('msg-gone', booking_function => 'msg.book_gone(text,text,bigint,text)');
SELECT count(waitlist_join(r, 'fan')) FROM unnest(ARRAY['msg-book', 'msg-gone']) r;
SELECT waitlist_release(r, 1, 'ev-1') FROM unnest(ARRAY['msg-book', 'msg-gone']) r;
SELECT offer_id AS book_offer FROM waitlist.offer WHERE resource_id = 'msg-book' \gset
SELECT offer_id AS gone_offer FROM waitlist.offer WHERE resource_id = 'msg-gone' \gset
SELECT * FROM waitlist_accept(:book_offer, 'null');
SELECT * FROM waitlist_accept(:book_offer, 'reenter');
SELECT * FROM waitlist_accept(:book_offer, 'set role');
SELECT * FROM waitlist_accept(:book_offer, 'by hand');
DROP FUNCTION msg.book_gone(text, text, bigint, text);
SELECT * FROM waitlist_accept(:gone_offer, 'key');

--
-- privileges and the audit trail
--
SET ROLE regress_msg_nobody;
SELECT waitlist_join('msg', 'eve');
SELECT * FROM waitlist.entry;
RESET ROLE;

UPDATE waitlist.transition SET reason = 'rewritten';
DELETE FROM waitlist.transition;
TRUNCATE waitlist.transition;
CREATE ROLE regress_msg_writer;
GRANT USAGE ON SCHEMA waitlist TO regress_msg_writer;
GRANT INSERT ON waitlist.transition TO regress_msg_writer;
SET ROLE regress_msg_writer;
INSERT INTO waitlist.transition (entity, entity_id, resource_id, to_state, reason, rule_version, actor)
VALUES ('entry', 1, 'msg', 'WAITING', 'forged', 1, 'someone');
RESET ROLE;
ALTER TABLE waitlist.transition DISABLE TRIGGER ALL;

--
-- the capacity trigger attached wrongly, and rows it cannot release
--
CREATE TABLE msg.seats (id int PRIMARY KEY, show text, qty numeric, status text);
INSERT INTO msg.seats VALUES (1, 'msg', 1.5, 'booked'), (2, 'msg', 2000000, 'booked'),
                             (3, 'msg', 1, 'booked');
CREATE TABLE msg.no_key (show text, qty int, status text);
INSERT INTO msg.no_key VALUES ('msg', 1, 'booked');
CREATE TABLE msg.flags (id int PRIMARY KEY, show text, cancelled boolean);
INSERT INTO msg.flags VALUES (1, 'msg', false);

CREATE TRIGGER wrong_timing BEFORE DELETE ON msg.seats
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('show', 'qty', 'status', 'cancelled');
DELETE FROM msg.seats WHERE id = 3;
DROP TRIGGER wrong_timing ON msg.seats;

CREATE TRIGGER three_args AFTER DELETE ON msg.seats
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('show', 'qty', 'status');
DELETE FROM msg.seats WHERE id = 3;
DROP TRIGGER three_args ON msg.seats;

CREATE TRIGGER no_column AFTER DELETE ON msg.seats
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('concert', 'qty', 'status', 'cancelled');
DELETE FROM msg.seats WHERE id = 3;
DROP TRIGGER no_column ON msg.seats;

CREATE TRIGGER no_key AFTER DELETE ON msg.no_key
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('show', 'qty', 'status', 'cancelled');
DELETE FROM msg.no_key;

CREATE TRIGGER bad_value AFTER UPDATE ON msg.flags
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('show', '1', 'cancelled', 'maybe');
UPDATE msg.flags SET cancelled = true;

CREATE TRIGGER release_seats AFTER UPDATE OR DELETE ON msg.seats
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('show', 'qty', 'status', 'cancelled');
UPDATE msg.seats SET status = 'cancelled' WHERE id = 1;
DELETE FROM msg.seats WHERE id = 2;

--
-- signed offer tokens
--
SELECT waitlist_join('msg', 'tia');
SELECT waitlist_release('msg', 1, 'ev-tokens');
SELECT waitlist_offer_token(offer_id) AS tia_token FROM waitlist.offer o JOIN waitlist.entry e USING (entry_id)
WHERE e.user_id = 'tia' \gset
SELECT waitlist_offer_token(424242);
SELECT waitlist_decline_token(NULL);
SELECT waitlist_decline_token('no dot');
SELECT waitlist_decline_token('a!.b');
SELECT waitlist_decline_token(repeat('A', 401));
SELECT waitlist_decline_token('AA.' || split_part(:'tia_token', '.', 2));
SELECT waitlist_decline_token('AQ.' || split_part(:'tia_token', '.', 2));
SELECT waitlist_decline_token(regexp_replace(:'tia_token', '^(.{20}).{4}', '\1'));
SELECT waitlist_decline_token(split_part(:'tia_token', '.', 1) || '.' || repeat('A', 43));
SELECT waitlist_decline_token(overlay(:'tia_token' PLACING 'AQAAAAk' FROM 1 FOR 7));
SELECT waitlist_decline_token(waitlist.offer_token_for('msg', 424242, now() - interval '1 second'));
SELECT waitlist_decline_token(waitlist.offer_token_for('msg', 424242, now() + interval '1 hour'));
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT waitlist_rotate_token_key();
ROLLBACK;
BEGIN;
DELETE FROM waitlist.token_key;
SELECT waitlist_offer_token(:ann_offer);
ROLLBACK;

--
-- the accept saga and offer extensions
--
SELECT waitlist_create_resource('msg-bad', booking => 'pigeon');
SELECT waitlist_create_resource('msg-bad', booking => 'function');
SELECT waitlist_create_resource('msg-bad', booking => 'none',
                                booking_function => 'pg_catalog.concat_ws(text, "any")'::regprocedure);
SELECT waitlist_create_resource('msg-bad', booking_timeout => '0');
SELECT waitlist_create_resource('msg-bad', booking_max_attempts => 0);
SELECT waitlist_create_resource('msg-bad', max_offer_extension => '-1 second');
SELECT waitlist_alter_resource('msg', max_offer_extension => '1 minute', clear_max_offer_extension => true);
SELECT waitlist_create_resource('msg-ext', '10 minutes', booking => 'external');
SELECT waitlist_join('msg-ext', u) FROM unnest(ARRAY['x1', 'x2']) u;
SELECT waitlist_release('msg-ext', 2, 'msg-ext-1');
SELECT max(offer_id) AS x1_offer FROM waitlist.offer WHERE user_id = 'x1' \gset
SELECT max(offer_id) AS x2_offer FROM waitlist.offer WHERE user_id = 'x2' \gset
SELECT waitlist_booking_confirmed(:x1_offer, 'R-x1');
SELECT state FROM waitlist_accept(:x1_offer, 'k');
SELECT waitlist_leave((SELECT entry_id FROM waitlist.entry WHERE user_id = 'x1'));
SELECT waitlist_booking_confirmed(:x1_offer, 'R-x1');
SELECT waitlist_booking_confirmed(:x1_offer, 'R-x1-again');
SELECT state FROM waitlist_accept(:x2_offer, 'k');
SELECT waitlist_booking_failed(:x2_offer, 'HTTP 409', false);
SELECT waitlist_booking_confirmed(:x2_offer, 'R-x2');
SELECT waitlist_create_resource('msg-extend', '10 minutes', max_offer_extension => '5 minutes');
SELECT waitlist_join('msg-extend', 'y1');
SELECT waitlist_release('msg-extend', 1, 'msg-extend-1');
SELECT max(offer_id) AS y1_offer FROM waitlist.offer WHERE user_id = 'y1' \gset
SELECT waitlist_extend_offer(:y1_offer, '6 minutes', 'slow bank', 'e-1');
SELECT waitlist_extend_offer(:y1_offer, '0', 'slow bank', 'e-1');
SELECT waitlist_create_resource('msg-bad', join_burst => 5);
SELECT waitlist_create_resource('msg-bad', join_rate_per_second => 1e9);
SELECT waitlist_create_resource('msg-bad', join_rate_per_second => 10);
SELECT waitlist_create_resource('msg-bad', aging_interval => '0');
SELECT waitlist_create_resource('msg-bad', confirm_place_from => 'lunch');
SELECT waitlist_create_resource('msg-bad', position_visibility => 'blurred');
SELECT waitlist_create_resource('msg-bad', position_bands => '{10,5}');
SELECT waitlist_create_resource('msg-bad', position_bands => '{}');
SELECT waitlist_create_resource('msg-confirm', '10 minutes', confirm_within => '1 second');
SELECT waitlist_join('msg-confirm', 'z1') AS z1_entry \gset
SELECT waitlist_leave(:z1_entry);
SELECT waitlist_confirm(:z1_entry);

--
-- pg_cron
--
SELECT waitlist_schedule_sweep();
SET client_min_messages = warning;
CREATE EXTENSION pg_cron;
RESET client_min_messages;
SELECT cron.schedule('waitlist-sweep', '0 5 * * *', 'SELECT 1') > 0 AS other_job;
SELECT waitlist_schedule_sweep();
SELECT cron.unschedule('waitlist-sweep');

-- clean up
SET client_min_messages = warning;
DROP EXTENSION pg_cron;
DROP SCHEMA msg CASCADE;
DROP EXTENSION waitlist CASCADE;
DROP OWNED BY regress_msg_writer;
DROP ROLE regress_msg_nobody;
DROP ROLE regress_msg_writer;
CREATE EXTENSION waitlist;
RESET client_min_messages;
