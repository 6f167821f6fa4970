-- Fixtures of the stress tests (test/t/010_stress.pl, test/t/011_crash.pl):
-- a booking system with a seat table, the resources, and one wrapper per
-- operation that the pgbench scripts in this folder call.
--
-- Each wrapper catches exactly the errors the API documents for what it
-- does (and the transient errors the booking function raises on purpose),
-- records them in stress_caught, and lets anything else through: pgbench
-- then aborts the client and the run fails.
--
-- Resources (hot-3 and the odd cold ones seat parties of mixed sizes): hot-1 .. hot-3 get 70% of the joins, leaves and promotions and
-- 97% of the releases, cold-1 .. cold-200 the rest.  Offers stay open 1 to
-- 2 seconds.  hot-1, hot-2 and the even cold
-- resources book through stress_book(); the others accept without a
-- booking function.

CREATE EXTENSION waitlist;

-- the booking system's inventory: a seat is booked at most once
CREATE TABLE stress_seat (
    resource_id     text   NOT NULL,
    seat_no         bigint NOT NULL,
    offer_id        bigint,
    user_id         text,
    idempotency_key text,
    PRIMARY KEY (resource_id, seat_no)
);
CREATE SEQUENCE stress_seat_no;

-- errors the wrappers caught; outcomes of accepts and repeated releases
CREATE UNLOGGED TABLE stress_caught (
    op       text NOT NULL,
    sqlstate text NOT NULL,
    message  text
);
CREATE UNLOGGED TABLE stress_outcome (
    op      text NOT NULL,
    outcome text NOT NULL
);

/*
 * The booking function: mostly books a new seat; sometimes the booking
 * system is busy (P0001 or 40001: transient, the offer stays open), and
 * sometimes the seat is gone (a real unique_violation on the taken seat 0,
 * or WL004): the offer FAILS.
 */
CREATE FUNCTION stress_book(resource_id text, user_id text, offer_id bigint,
                            idempotency_key text)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    dice float8 := random();
    seat bigint;
BEGIN
    IF dice < 0.06 THEN
        RAISE EXCEPTION 'booking system busy, try again';
    ELSIF dice < 0.10 THEN
        RAISE EXCEPTION 'booking system could not serialize, try again'
            USING ERRCODE = 'serialization_failure';
    ELSIF dice < 0.16 THEN
        -- seat 0 of every resource is taken: unique_violation
        INSERT INTO public.stress_seat (resource_id, seat_no, offer_id)
        VALUES (stress_book.resource_id, 0, stress_book.offer_id);
    ELSIF dice < 0.20 THEN
        RAISE EXCEPTION 'seat sold elsewhere' USING ERRCODE = 'WL004';
    END IF;
    seat := nextval('public.stress_seat_no');
    INSERT INTO public.stress_seat
    VALUES (stress_book.resource_id, seat, stress_book.offer_id,
            stress_book.user_id, stress_book.idempotency_key);
    RETURN 'seat-' || seat;
END
$$;

-- pick 1..1000: 70% to the three hot resources, the rest spread over 200
CREATE FUNCTION stress_resource(pick integer)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN pick <= 700 THEN 'hot-' || (1 + pick % 3)
                ELSE 'cold-' || (1 + pick % 200) END
$$;

DO $$
BEGIN
    PERFORM waitlist_create_resource('hot-1', interval '1 second',
                                     booking_function => 'stress_book(text,text,bigint,text)');
    PERFORM waitlist_create_resource('hot-2', interval '2 seconds',
                                     booking_function => 'stress_book(text,text,bigint,text)');
    -- hot-3 seats parties of up to four, the head of the line waiting for its party
    PERFORM waitlist_create_resource('hot-3', interval '1.5 seconds', max_party_size => 4);
    FOR i IN 1 .. 200 LOOP
        IF i % 2 = 0 THEN
            PERFORM waitlist_create_resource('cold-' || i, interval '1 second' * (1 + i % 3 * 0.5),
                                             booking_function => 'stress_book(text,text,bigint,text)');
        ELSE
            -- the odd cold resources seat parties of up to three, the first that fits first
            PERFORM waitlist_create_resource('cold-' || i, interval '1 second' * (1 + i % 3 * 0.5),
                                             max_party_size => 3, party_policy => 'skip_to_fit');
        END IF;
    END LOOP;
    INSERT INTO stress_seat (resource_id, seat_no)
    SELECT resource_id, 0 FROM waitlist.resource;
END
$$;

CREATE FUNCTION stress_join(pick integer, usr integer, prio integer)
RETURNS bigint
LANGUAGE sql AS $$
    -- parties of mixed sizes where the resource seats them
    SELECT waitlist_join(r.resource_id, 'u' || usr, CASE WHEN prio = 1 THEN 1 ELSE 0 END,
                         1 + usr % r.max_party_size)
    FROM waitlist.resource r WHERE r.resource_id = stress_resource(pick)
$$;

-- the user's active entry leaves, if there is one
CREATE FUNCTION stress_leave(pick integer, usr integer)
RETURNS boolean
LANGUAGE sql AS $$
    SELECT coalesce(bool_or(waitlist_leave(e.entry_id)), false)
    FROM waitlist.entry e
    WHERE e.resource_id = stress_resource(pick) AND e.user_id = 'u' || usr
      AND e.state IN ('WAITING', 'OFFERED')
$$;

-- any entry id, also ones that do not exist (yet)
CREATE FUNCTION stress_leave_id(entry_id bigint)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RETURN waitlist_leave(entry_id);
EXCEPTION WHEN undefined_object THEN
    INSERT INTO stress_caught VALUES ('leave', SQLSTATE, SQLERRM);
    RETURN NULL;
END
$$;

/*
 * The booking system returns capacity mostly of the hot resources (hot
 * 1..100: 97 of 100 releases go to hot-1 .. hot-3, the rest to cold-<cold>).
 * Event ids come from a small range each second (ev of the current second),
 * so that a hot resource gets a steady supply of capacity while most of its
 * releases, many of them concurrent, are repeated deliveries.
 */
CREATE FUNCTION stress_release(hot integer, cold integer, quantity integer, ev integer)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    counted boolean;
BEGIN
    counted := waitlist_release(
        CASE WHEN hot <= 97 THEN 'hot-' || (1 + hot % 3) ELSE 'cold-' || cold END,
        quantity, 'ev-' || floor(extract(epoch FROM clock_timestamp())) || '-' || ev);
    IF NOT counted THEN
        INSERT INTO stress_outcome VALUES ('release', 'repeated');
    END IF;
    RETURN counted;
END
$$;

CREATE FUNCTION stress_promote(pick integer, max_offers integer)
RETURNS integer
LANGUAGE sql AS $$
    SELECT waitlist_promote(stress_resource(pick), nullif(max_offers, 0))
$$;

/*
 * An open offer to answer, 0 when there is none: for k < 4 one of the four
 * closest to their deadline (many clients pick the same few, so answers
 * collide; some are just past the deadline), else one of the newest.
 * Every third offer is never answered: it expires.
 */
CREATE FUNCTION stress_pick_offer(k integer)
RETURNS bigint
LANGUAGE sql AS $$
    SELECT coalesce(CASE WHEN k < 4 THEN
        (SELECT o.offer_id FROM waitlist.offer o
         WHERE o.state = 'OPEN' AND o.offer_id % 3 <> 0
           AND o.expires_at > clock_timestamp() - interval '100 milliseconds'
         ORDER BY o.expires_at OFFSET k LIMIT 1)
    ELSE
        (SELECT o.offer_id FROM waitlist.offer o
         WHERE o.state = 'OPEN' AND o.offer_id % 3 <> 0
         ORDER BY o.expires_at DESC OFFSET k - 4 LIMIT 1)
    END, 0)
$$;

-- accept with key 'k<key>' of the offer: repeated taps use the same key
CREATE FUNCTION stress_accept(offer bigint, key integer)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    outcome text;
BEGIN
    IF offer = 0 THEN
        RETURN NULL;
    END IF;
    SELECT a.state INTO outcome FROM waitlist_accept(offer, 'k' || key) a;
    INSERT INTO stress_outcome VALUES ('accept', outcome);
    RETURN outcome;
EXCEPTION
    WHEN SQLSTATE 'WL002' OR SQLSTATE 'WL003' OR serialization_failure OR deadlock_detected THEN
        INSERT INTO stress_caught VALUES ('accept', SQLSTATE, SQLERRM);
        RETURN SQLSTATE;
    WHEN raise_exception THEN
        IF SQLERRM <> 'booking system busy, try again' THEN
            RAISE;
        END IF;
        INSERT INTO stress_caught VALUES ('accept', SQLSTATE, SQLERRM);
        RETURN SQLSTATE;
END
$$;

CREATE FUNCTION stress_decline(offer bigint)
RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    IF offer = 0 THEN
        RETURN NULL;
    END IF;
    RETURN waitlist_decline(offer)::text;
EXCEPTION
    WHEN SQLSTATE 'WL002' OR SQLSTATE 'WL003' OR deadlock_detected THEN
        INSERT INTO stress_caught VALUES ('decline', SQLSTATE, SQLERRM);
        RETURN SQLSTATE;
END
$$;
