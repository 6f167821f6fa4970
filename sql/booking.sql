--
-- booking: waitlist_accept() with a booking function
--
-- A small booking system (schema shop: seats, bookings with one row per
-- seat, the fans' carts) books through shop.book().  Its three outcomes:
--
--   success     offer and entry ACCEPTED, the reference stored
--   conflict    unique_violation or WL004: accept returns FAILED, the unit
--               is retired and the fan is back in line at their old place
--   transient   any other error: the accept fails, the offer stays OPEN,
--               and a retry succeeds
--
-- The function runs as the caller (role and search_path), is checked when
-- it is configured (42P13), and runs at most once per accepted offer
-- whatever keys are used.  More offers are accepted than there are seats:
-- no seat is ever booked twice, the extra accepts end FAILED, and
--
--   units_released = free_units + OPEN + ACCEPTED + FAILED offers
--
\set VERBOSITY sqlstate
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- a fresh install, so that this file does not depend on the files before it
DROP EXTENSION IF EXISTS waitlist CASCADE;
CREATE EXTENSION waitlist;
DROP SCHEMA IF EXISTS shop CASCADE;
DROP ROLE IF EXISTS regress_booking_app;
DROP ROLE IF EXISTS regress_booking_other;
RESET client_min_messages;

CREATE TEMP VIEW capacity AS
SELECT r.resource_id, r.units_released, r.free_units,
       count(*) FILTER (WHERE o.state = 'OPEN') AS open,
       count(*) FILTER (WHERE o.state = 'ACCEPTED') AS accepted,
       count(*) FILTER (WHERE o.state = 'FAILED') AS failed,
       r.units_released = r.free_units
           + count(*) FILTER (WHERE o.state IN ('OPEN', 'ACCEPTED', 'FAILED')) AS conserved
FROM waitlist.resource r
LEFT JOIN waitlist.offer o ON o.resource_id = r.resource_id
GROUP BY r.resource_id ORDER BY r.resource_id;

CREATE TEMP VIEW offers AS
SELECT o.offer_id, e.user_id, o.state AS offer_state, e.state AS entry_state,
       o.reservation_ref, o.idempotency_key
FROM waitlist.offer o
JOIN waitlist.entry e ON e.resource_id = o.resource_id AND e.entry_id = o.entry_id
ORDER BY o.offer_id;

-- the line as waitlist_status() tells it
CREATE TEMP VIEW line AS
SELECT e.user_id, s.state, s."position"
FROM waitlist.entry e CROSS JOIN LATERAL waitlist_status(e.entry_id) s
ORDER BY e.entry_id;

-- the actor is the role that called the API (the session's own shown as such)
CREATE TEMP VIEW audit AS
SELECT t.transition_id, t.entity, e.user_id, t.from_state, t.to_state, t.reason,
       CASE WHEN t.actor = session_user THEN '(session user)' ELSE t.actor END AS actor
FROM waitlist.transition t
LEFT JOIN waitlist.offer o
       ON t.entity = 'offer' AND o.resource_id = t.resource_id AND o.offer_id = t.entity_id
LEFT JOIN waitlist.entry e
       ON e.resource_id = t.resource_id
      AND e.entry_id = CASE t.entity WHEN 'entry' THEN t.entity_id ELSE o.entry_id END
ORDER BY t.transition_id;

CREATE TEMP VIEW notifications AS
SELECT b.outbox_id, b.event_type, e.user_id, b.payload->>'reservation_ref' AS reservation_ref,
       b.payload->>'detail' AS detail
FROM waitlist.outbox b
JOIN waitlist.entry e ON e.resource_id = b.resource_id AND e.entry_id = b.entry_id
ORDER BY b.outbox_id;

--
-- The booking system
--
CREATE SCHEMA shop;
CREATE TABLE shop.seats (seat_no integer PRIMARY KEY);
CREATE TABLE shop.bookings (
    booking_no serial PRIMARY KEY,
    seat_no    integer NOT NULL UNIQUE REFERENCES shop.seats,
    offer_id   bigint NOT NULL,
    fan        text NOT NULL
);
-- the seat each fan picked on the seat map, if any
CREATE TABLE shop.carts (fan text PRIMARY KEY, seat_no integer);
CREATE TABLE shop.service (down boolean NOT NULL);
-- every call that returned, with who made it and under which search_path
CREATE TABLE shop.calls (
    call_no  serial PRIMARY KEY,
    offer_id bigint, fan text, idempotency_key text, who name, path text
);
-- every call, even those whose work was rolled back
CREATE SEQUENCE shop.attempts;
CREATE VIEW shop.attempt_count AS
SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS attempts FROM shop.attempts;
INSERT INTO shop.seats VALUES (1), (2);
INSERT INTO shop.service VALUES (false);
INSERT INTO shop.carts VALUES ('alice', 1), ('bob', 1), ('carol', 2);

-- The tables are named without their schema: they are found through the
-- caller's search_path, not the extension's.
CREATE FUNCTION shop.book(p_resource text, p_fan text, p_offer bigint, p_key text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    wanted integer;
BEGIN
    PERFORM nextval('attempts');
    INSERT INTO calls (offer_id, fan, idempotency_key, who, path)
    VALUES (p_offer, p_fan, p_key, current_user, current_setting('search_path'));
    IF (SELECT down FROM service) THEN
        RAISE EXCEPTION 'booking service is down' USING ERRCODE = 'connection_failure';
    END IF;
    SELECT seat_no INTO wanted FROM carts WHERE fan = p_fan;
    IF wanted IS NULL THEN
        SELECT min(s.seat_no) INTO wanted FROM seats s
        WHERE NOT EXISTS (SELECT 1 FROM bookings b WHERE b.seat_no = s.seat_no);
        IF wanted IS NULL THEN
            RAISE EXCEPTION 'sold out' USING ERRCODE = 'WL004';
        END IF;
    END IF;
    -- the unique seat_no refuses a seat that is booked already (23505)
    INSERT INTO bookings (seat_no, offer_id, fan) VALUES (wanted, p_offer, p_fan);
    RETURN 'seat-' || wanted;
END;
$$;

-- the application's role: EXECUTE on the API and on the booking function,
-- its own tables, and no privilege on the waitlist tables
CREATE ROLE regress_booking_app;
GRANT EXECUTE ON FUNCTION waitlist_accept(bigint, text), waitlist_decline(bigint),
    waitlist_status(bigint) TO regress_booking_app;
REVOKE EXECUTE ON FUNCTION shop.book(text, text, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shop.book(text, text, bigint, text) TO regress_booking_app;
GRANT USAGE ON SCHEMA shop TO regress_booking_app;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA shop TO regress_booking_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA shop TO regress_booking_app;
-- a role that may accept but not book
CREATE ROLE regress_booking_other;
GRANT EXECUTE ON FUNCTION waitlist_accept(bigint, text) TO regress_booking_other;
GRANT USAGE ON SCHEMA shop TO regress_booking_other;

--
-- Configuration: the signature is checked when the function is set (42P13)
--
CREATE FUNCTION shop.book_int(text, text, integer, text) RETURNS text
LANGUAGE sql AS $$ SELECT 'x' $$;
CREATE FUNCTION shop.book_returns_int(text, text, bigint, text) RETURNS integer
LANGUAGE sql AS $$ SELECT 1 $$;
CREATE FUNCTION shop.book_set(text, text, bigint, text) RETURNS SETOF text
LANGUAGE sql AS $$ SELECT 'x' $$;
CREATE FUNCTION shop.book_three(text, text, bigint) RETURNS text
LANGUAGE sql AS $$ SELECT 'x' $$;
CREATE PROCEDURE shop.book_proc(text, text, bigint, text)
LANGUAGE sql AS $$ SELECT 1 $$;
SELECT waitlist_create_resource('hall', booking_function => 'shop.book_int(text,text,integer,text)');
SELECT waitlist_create_resource('hall', booking_function => 'shop.book_returns_int(text,text,bigint,text)');
SELECT waitlist_create_resource('hall', booking_function => 'shop.book_set(text,text,bigint,text)');
SELECT waitlist_create_resource('hall', booking_function => 'shop.book_three(text,text,bigint)');
SELECT waitlist_create_resource('hall', booking_function => 'shop.book_proc(text,text,bigint,text)');
SELECT count(*) AS resources FROM waitlist.resource;
SELECT waitlist_create_resource('hall', '10 minutes',
                                booking_function => 'shop.book(text,text,bigint,text)');
SELECT waitlist_alter_resource('hall', booking_function => 'shop.book_int(text,text,integer,text)');
SELECT waitlist_alter_resource('hall', booking_function => 'shop.book_returns_int(text,text,bigint,text)');
SELECT resource_id, booking_function FROM waitlist.resource;

--
-- Five fans in line; four units come back for a hall of two seats (more
-- capacity was released than the booking system has seats)
--
SELECT waitlist_join('hall', 'alice') AS alice, waitlist_join('hall', 'bob') AS bob,
       waitlist_join('hall', 'carol') AS carol, waitlist_join('hall', 'dave') AS dave,
       waitlist_join('hall', 'erin') AS erin \gset
SELECT waitlist_release('hall', 4, 'cancellations-1');
SELECT * FROM offers;
SELECT offer_id AS alice_offer FROM waitlist.offer WHERE entry_id = :alice \gset
SELECT offer_id AS bob_offer FROM waitlist.offer WHERE entry_id = :bob \gset
SELECT offer_id AS carol_offer FROM waitlist.offer WHERE entry_id = :carol \gset
SELECT offer_id AS dave_offer FROM waitlist.offer WHERE entry_id = :dave \gset
SELECT max(transition_id) AS seen FROM waitlist.transition \gset
SELECT count(*) AS outbox_rows FROM waitlist.outbox \gset

--
-- Success: alice books seat 1.  The booking function ran as the caller's
-- role with the caller's search_path, and both are the caller's again
-- afterwards.
--
SET ROLE regress_booking_app;
SET search_path = shop, public;
SELECT * FROM waitlist_accept(:alice_offer, 'alice-1');
SELECT current_user, current_setting('search_path') AS search_path;
SELECT offer_id, fan, idempotency_key, who, path FROM shop.calls ORDER BY call_no;
SELECT * FROM shop.attempt_count;
RESET ROLE;
RESET search_path;
SELECT * FROM offers WHERE offer_id = :alice_offer;
-- the transitions name the caller as the actor
SELECT * FROM audit WHERE transition_id > :seen;
SELECT * FROM notifications WHERE outbox_id > :outbox_rows;
SELECT * FROM capacity;

--
-- Conflict (unique_violation): bob picked seat 1 too.  Accept returns
-- FAILED without an error, the unit is retired, bob is back in line ahead
-- of erin, who joined after him, and the booking's work is rolled back.
--
SELECT max(transition_id) AS seen FROM waitlist.transition \gset
SELECT count(*) AS outbox_rows FROM waitlist.outbox \gset
SET ROLE regress_booking_app;
SET search_path = shop, public;
SELECT * FROM waitlist_accept(:bob_offer, 'bob-1');
RESET ROLE;
RESET search_path;
SELECT * FROM offers WHERE offer_id = :bob_offer;
SELECT * FROM line;
SELECT * FROM audit WHERE transition_id > :seen;
SELECT * FROM notifications WHERE outbox_id > :outbox_rows;
SELECT * FROM shop.attempt_count;
SELECT count(*) AS bob_calls_kept FROM shop.calls WHERE fan = 'bob';
SELECT * FROM capacity;
-- the same key again: FAILED again, without calling the booking function;
-- another key: the offer is not open any more (WL003)
SET ROLE regress_booking_app;
SELECT * FROM waitlist_accept(:bob_offer, 'bob-1');
SELECT * FROM waitlist_accept(:bob_offer, 'bob-1b');
RESET ROLE;
SELECT * FROM shop.attempt_count;
SELECT offer_id, idempotency_key, state, reservation_ref FROM waitlist.accept_request
WHERE offer_id = :bob_offer;

-- carol gets seat 2
SELECT max(transition_id) AS seen FROM waitlist.transition \gset
SET ROLE regress_booking_app;
SET search_path = shop, public;
SELECT * FROM waitlist_accept(:carol_offer, 'carol-1');
-- the application works through the API only: no access to the tables
SELECT count(*) FROM waitlist.offer;

--
-- Conflict (WL004): dave wants any seat and none is left.  He too is back
-- at his old place: after bob, before erin.
--
SELECT * FROM waitlist_accept(:dave_offer, 'dave-1');
RESET ROLE;
RESET search_path;
SELECT * FROM offers;
SELECT * FROM line;
SELECT * FROM audit WHERE transition_id > :seen;
SELECT * FROM notifications WHERE event_type = 'offer_failed';
-- four units: two seats booked, two retired; every seat booked once
SELECT * FROM capacity;
SELECT seat_no, fan, offer_id FROM shop.bookings ORDER BY seat_no;

--
-- Transient errors: the box office adds seat 3 and releases it; bob, first
-- in line, gets the offer and picks seat 3.  While the booking service is
-- down his accept fails with the service's error, and nothing changes: the
-- offer stays OPEN and the key is not used up.
--
INSERT INTO shop.seats VALUES (3);
UPDATE shop.carts SET seat_no = 3 WHERE fan = 'bob';
SELECT waitlist_release('hall', 1, 'seat-3-added');
SELECT offer_id AS bob_offer2 FROM waitlist.offer WHERE entry_id = :bob AND state = 'OPEN' \gset
UPDATE shop.service SET down = true;
SELECT max(transition_id) AS seen FROM waitlist.transition \gset
SELECT count(*) AS outbox_rows FROM waitlist.outbox \gset
SELECT * FROM shop.attempt_count;
SET ROLE regress_booking_app;
SET search_path = shop, public;
SELECT * FROM waitlist_accept(:bob_offer2, 'bob-2');
RESET ROLE;
RESET search_path;
SELECT * FROM shop.attempt_count;
SELECT * FROM offers WHERE offer_id = :bob_offer2;
SELECT count(*) AS requests FROM waitlist.accept_request WHERE offer_id = :bob_offer2;
SELECT count(*) AS new_transitions FROM waitlist.transition WHERE transition_id > :seen;
SELECT count(*) - :outbox_rows AS new_outbox_rows FROM waitlist.outbox;
SELECT * FROM capacity;
-- the service is back: the retry with the same key books seat 3
UPDATE shop.service SET down = false;
SET ROLE regress_booking_app;
SET search_path = shop, public;
SELECT * FROM waitlist_accept(:bob_offer2, 'bob-2');
RESET ROLE;
RESET search_path;
SELECT * FROM shop.attempt_count;
SELECT * FROM offers WHERE offer_id = :bob_offer2;
SELECT * FROM audit WHERE transition_id > :seen;

--
-- Idempotency: the same key returns the same reservation without booking
-- again; another key returns the reservation the offer has
--
SET ROLE regress_booking_app;
SELECT * FROM waitlist_accept(:bob_offer2, 'bob-2');
SELECT * FROM waitlist_accept(:bob_offer2, 'bob-3');
RESET ROLE;
SELECT * FROM shop.attempt_count;
SELECT count(*) AS bookings FROM shop.bookings;
SELECT offer_id, idempotency_key, state, reservation_ref FROM waitlist.accept_request
WHERE offer_id = :bob_offer2 ORDER BY idempotency_key;
-- one booking call kept per accepted offer
SELECT offer_id, count(*) AS calls FROM shop.calls GROUP BY offer_id ORDER BY offer_id;

--
-- The booking function is called with the caller's privileges: a role
-- without EXECUTE on it cannot accept (42501), and the offer stays open
--
INSERT INTO shop.seats VALUES (4);
SELECT waitlist_release('hall', 1, 'seat-4-added');
SELECT offer_id AS dave_offer2 FROM waitlist.offer WHERE entry_id = :dave AND state = 'OPEN' \gset
SET ROLE regress_booking_other;
SELECT * FROM waitlist_accept(:dave_offer2, 'dave-2');
RESET ROLE;
SELECT * FROM offers WHERE offer_id = :dave_offer2;
SET ROLE regress_booking_app;
SET search_path = shop, public;
SELECT * FROM waitlist_accept(:dave_offer2, 'dave-2');
RESET ROLE;
RESET search_path;
SELECT who, count(*) FROM shop.calls GROUP BY who;
SELECT DISTINCT path FROM shop.calls;

--
-- Booking functions that misbehave are errors too, and leave the offer OPEN:
-- one that returns NULL (22004), one dropped after it was set (42883)
--
CREATE FUNCTION shop.book_null(text, text, bigint, text) RETURNS text
LANGUAGE sql AS $$ SELECT NULL::text $$;
SELECT waitlist_alter_resource('hall', booking_function => 'shop.book_null(text,text,bigint,text)');
INSERT INTO shop.seats VALUES (5);
SELECT waitlist_release('hall', 1, 'seat-5-added');
SELECT offer_id AS erin_offer FROM waitlist.offer WHERE entry_id = :erin AND state = 'OPEN' \gset
SELECT * FROM waitlist_accept(:erin_offer, 'erin-1');
SELECT * FROM offers WHERE offer_id = :erin_offer;
CREATE FUNCTION shop.book_gone(text, text, bigint, text) RETURNS text
LANGUAGE sql AS $$ SELECT 'gone' $$;
SELECT waitlist_alter_resource('hall', booking_function => 'shop.book_gone(text,text,bigint,text)');
DROP FUNCTION shop.book_gone(text, text, bigint, text);
SELECT * FROM waitlist_accept(:erin_offer, 'erin-1');
SELECT * FROM offers WHERE offer_id = :erin_offer;
-- setting and clearing at once is refused (22023)
SELECT waitlist_alter_resource('hall', booking_function => 'shop.book(text,text,bigint,text)',
                               clear_booking_function => true);

--
-- Without a booking function: ACCEPTED with no reference, and the outbox
-- row asks the booking system to book
--
SELECT waitlist_alter_resource('hall', clear_booking_function => true);
SELECT resource_id, booking_function FROM waitlist.resource;
SELECT * FROM waitlist_accept(:erin_offer, 'erin-1');
SELECT * FROM offers WHERE offer_id = :erin_offer;
SELECT * FROM notifications WHERE event_type = 'offer_accepted';

--
-- A failed accept while units are free: the fan is back at the head of the
-- line and is offered one of them at once
--
CREATE FUNCTION shop.book_taken(text, text, bigint, text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    RAISE unique_violation USING MESSAGE = 'seat taken';
END;
$$;
SELECT waitlist_create_resource('hall-2', '10 minutes',
                                booking_function => 'shop.book_taken(text,text,bigint,text)');
SELECT waitlist_join('hall-2', 'zoe') AS zoe \gset
SELECT waitlist_release('hall-2', 2, 'cancellations-1');
SELECT offer_id AS zoe_offer FROM waitlist.offer WHERE entry_id = :zoe AND state = 'OPEN' \gset
SELECT max(transition_id) AS seen FROM waitlist.transition \gset
SELECT * FROM waitlist_accept(:zoe_offer, 'zoe-1');
SELECT * FROM audit WHERE transition_id > :seen;
SELECT o.offer_id, o.state FROM waitlist.offer o WHERE o.resource_id = 'hall-2' ORDER BY o.offer_id;
SELECT state, "position", offer_id FROM waitlist_status(:zoe);

--
-- In the end: every seat booked once, each ACCEPTED offer's reference is
-- its booking, and every unit released is accounted for
--
SELECT * FROM offers;
SELECT seat_no, fan, offer_id FROM shop.bookings ORDER BY seat_no;
SELECT count(*) AS refs_without_booking
FROM waitlist.offer o
WHERE o.state = 'ACCEPTED' AND o.reservation_ref IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM shop.bookings b
                  WHERE b.offer_id = o.offer_id AND 'seat-' || b.seat_no = o.reservation_ref);
SELECT count(*) AS bookings_without_accepted_offer
FROM shop.bookings b
WHERE NOT EXISTS (SELECT 1 FROM waitlist.offer o
                  WHERE o.offer_id = b.offer_id AND o.state = 'ACCEPTED');
SELECT * FROM line;
SELECT * FROM capacity;

-- clean up what lives outside this database
SET client_min_messages = warning;
DROP SCHEMA shop CASCADE;
DROP OWNED BY regress_booking_app, regress_booking_other;
DROP ROLE regress_booking_app;
DROP ROLE regress_booking_other;
RESET client_min_messages;
