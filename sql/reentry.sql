--
-- reentry: a booking function cannot call the waitlist API
--
-- waitlist_accept holds the offer, its accept request and the resource's
-- gate while the booking function runs.  Any API call from inside it is
-- refused (WL006) before it does anything: an accept of the same offer
-- (with the same key it crashed the server in 1.0), a decline or leave of
-- it (in 1.0: ACCEPTED while the unit went to the next fan too), a
-- release, a promotion, a join, a read, and the capacity trigger fired by
-- the function's own writes.  The refusal is the booking function's error,
-- so the accept fails and the offer stays OPEN; after it, the API works as
-- before.  And an accept reports ACCEPTED only if its own UPDATE moved the
-- offer there.
--
\set VERBOSITY sqlstate
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- a fresh install, so that this file does not depend on the files before it
DROP EXTENSION IF EXISTS waitlist CASCADE;
CREATE EXTENSION waitlist;
DROP SCHEMA IF EXISTS reenter CASCADE;
RESET client_min_messages;

CREATE SCHEMA reenter;
-- what the booking function does, per resource
CREATE TABLE reenter.plan (resource_id text PRIMARY KEY, action text NOT NULL);
CREATE TABLE reenter.holds (hold_id int PRIMARY KEY, resource_id text, status text);
CREATE TRIGGER holds_release AFTER UPDATE OR DELETE ON reenter.holds
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('resource_id', '1', 'status', 'cancelled');
CREATE FUNCTION reenter.book(p_resource text, p_fan text, p_offer bigint, p_key text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    act text := (SELECT action FROM reenter.plan WHERE resource_id = p_resource);
    entry bigint := (SELECT entry_id FROM waitlist.offer WHERE offer_id = p_offer);
BEGIN
    CASE act
    WHEN 'accept same key' THEN PERFORM waitlist_accept(p_offer, p_key);
    WHEN 'accept other key' THEN PERFORM waitlist_accept(p_offer, p_key || '-2');
    WHEN 'decline' THEN PERFORM waitlist_decline(p_offer);
    WHEN 'leave' THEN PERFORM waitlist_leave(entry);
    WHEN 'release' THEN PERFORM waitlist_release(p_resource, 1, 'ev-inner');
    WHEN 'promote' THEN PERFORM waitlist_promote(p_resource);
    WHEN 'join' THEN PERFORM waitlist_join(p_resource, 'newcomer');
    WHEN 'status' THEN PERFORM waitlist_status(entry);
    WHEN 'sweep' THEN PERFORM waitlist_sweep();
    WHEN 'capacity trigger' THEN DELETE FROM reenter.holds WHERE resource_id = p_resource;
    WHEN 'catch' THEN
        BEGIN
            PERFORM waitlist_decline(p_offer);
        EXCEPTION WHEN SQLSTATE 'WL006' THEN NULL;
        END;
    WHEN 'settle by hand' THEN
        UPDATE waitlist.offer SET state = 'DECLINED', decided_at = now() WHERE offer_id = p_offer;
    ELSE NULL;
    END CASE;
    RETURN 'ref-' || p_offer;
END;
$$;

-- one resource per case: two fans in line, one unit released to the first
CREATE FUNCTION pg_temp.offer_for(p_resource text, p_action text) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO reenter.plan VALUES (p_resource, p_action);
    PERFORM waitlist_create_resource(p_resource,
        booking_function => 'reenter.book(text,text,bigint,text)');
    PERFORM waitlist_join(p_resource, 'first');
    PERFORM waitlist_join(p_resource, 'second');
    PERFORM waitlist_release(p_resource, 1, 'ev-1');
    RETURN (SELECT offer_id FROM waitlist.offer WHERE resource_id = p_resource);
END;
$$;

SELECT pg_temp.offer_for('r-accept-same', 'accept same key') AS o_accept_same,
       pg_temp.offer_for('r-accept-other', 'accept other key') AS o_accept_other,
       pg_temp.offer_for('r-decline', 'decline') AS o_decline,
       pg_temp.offer_for('r-leave', 'leave') AS o_leave,
       pg_temp.offer_for('r-release', 'release') AS o_release,
       pg_temp.offer_for('r-promote', 'promote') AS o_promote,
       pg_temp.offer_for('r-join', 'join') AS o_join,
       pg_temp.offer_for('r-status', 'status') AS o_status,
       pg_temp.offer_for('r-sweep', 'sweep') AS o_sweep,
       pg_temp.offer_for('r-capacity', 'capacity trigger') AS o_capacity,
       pg_temp.offer_for('r-catch', 'catch') AS o_catch,
       pg_temp.offer_for('r-by-hand', 'settle by hand') AS o_by_hand
\gset
INSERT INTO reenter.holds VALUES (1, 'r-capacity', 'held');

-- every re-entry is refused (WL006)
\set VERBOSITY terse
SELECT * FROM waitlist_accept(:o_accept_other, 'k');
\set VERBOSITY sqlstate
SELECT * FROM waitlist_accept(:o_decline, 'k');
SELECT * FROM waitlist_accept(:o_leave, 'k');
SELECT * FROM waitlist_accept(:o_release, 'k');
SELECT * FROM waitlist_accept(:o_promote, 'k');
SELECT * FROM waitlist_accept(:o_join, 'k');
SELECT * FROM waitlist_accept(:o_status, 'k');
SELECT * FROM waitlist_accept(:o_sweep, 'k');
SELECT * FROM waitlist_accept(:o_capacity, 'k');
-- (the one that crashed the server in 1.0: last, so the others show first)
SELECT * FROM waitlist_accept(:o_accept_same, 'k');
-- inside a transaction and a savepoint too; the API works after it
BEGIN;
SAVEPOINT s1;
SELECT * FROM waitlist_accept(:o_decline, 'k');
ROLLBACK TO SAVEPOINT s1;
SELECT state FROM waitlist_status((SELECT entry_id FROM waitlist.offer WHERE offer_id = :o_decline));
COMMIT;
-- a booking function that catches the refusal books; nothing else moved
SELECT * FROM waitlist_accept(:o_catch, 'k');
-- an offer settled by hand while it was being accepted: not ACCEPTED (WL003)
\set VERBOSITY terse
SELECT * FROM waitlist_accept(:o_by_hand, 'k');
\set VERBOSITY sqlstate

-- nothing moved: each offer is still OPEN, one unit per resource, held once
SELECT o.resource_id, o.state, o.reservation_ref,
       (SELECT count(*) FROM waitlist.offer o2 WHERE o2.resource_id = o.resource_id) AS offers,
       r.free_units
FROM waitlist.offer o JOIN waitlist.resource r USING (resource_id)
ORDER BY o.resource_id, o.offer_id;
SELECT resource_id, count(*) AS capacity_events FROM waitlist.capacity_event
GROUP BY resource_id ORDER BY 1;
SELECT count(*) AS holds_left FROM reenter.holds;
SELECT count(*) AS violations FROM waitlist_check();

-- and once the functions stop re-entering, the same offers are accepted
UPDATE reenter.plan SET action = 'none';
SELECT * FROM waitlist_accept(:o_accept_same, 'k');
SELECT * FROM waitlist_accept(:o_decline, 'k');
SELECT * FROM waitlist_accept(:o_by_hand, 'k');
SELECT count(*) AS violations FROM waitlist_check();

SET client_min_messages = warning;
DROP SCHEMA reenter CASCADE;
