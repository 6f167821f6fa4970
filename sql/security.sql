--
-- security: the API needs EXECUTE and nothing else, records the calling
-- role as the actor, never leaves the caller with the owner's rights, and
-- objects on the caller's search_path cannot change what it does
--
\set VERBOSITY sqlstate
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- a fresh install, so that this file does not depend on the files before it
DROP EXTENSION IF EXISTS waitlist CASCADE;
CREATE EXTENSION waitlist;
DROP SCHEMA IF EXISTS regress_evil CASCADE;
DROP ROLE IF EXISTS regress_waitlist_app;
DROP ROLE IF EXISTS regress_waitlist_nobody;
DROP SCHEMA IF EXISTS regress_trap CASCADE;
DROP ROLE IF EXISTS regress_attacker;
RESET client_min_messages;

CREATE TEMP VIEW audit AS
SELECT t.resource_id, t.entity, e.user_id, t.from_state, t.to_state, t.reason,
       CASE WHEN t.actor = session_user THEN '(session user)' ELSE t.actor::text END AS actor
FROM waitlist.transition t
LEFT JOIN waitlist.offer o
       ON t.entity = 'offer' AND o.resource_id = t.resource_id AND o.offer_id = t.entity_id
LEFT JOIN waitlist.entry e
       ON e.resource_id = t.resource_id
      AND e.entry_id = CASE t.entity WHEN 'entry' THEN t.entity_id ELSE o.entry_id END
ORDER BY t.transition_id;

-- EXECUTE is not granted to PUBLIC
SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
FROM pg_proc p
WHERE p.proname IN ('waitlist_create_resource', 'waitlist_alter_resource', 'waitlist_join',
                    'waitlist_leave', 'waitlist_status', 'waitlist_release', 'waitlist_promote')
  AND p.pronamespace = 'public'::regnamespace
ORDER BY 1;

--
-- A role with EXECUTE on join, status and leave only
--
CREATE ROLE regress_waitlist_app;
CREATE ROLE regress_waitlist_nobody;
GRANT EXECUTE ON FUNCTION waitlist_join(text, text, integer, integer),
                          waitlist_status(bigint),
                          waitlist_leave(bigint) TO regress_waitlist_app;

SELECT waitlist_create_resource('sec-1', '10 minutes');

SET ROLE regress_waitlist_app;
SELECT waitlist_join('sec-1', 'app-user-1') AS app1 \gset
SELECT waitlist_join('sec-1', 'app-user-2') AS app2 \gset
SELECT waitlist_join('sec-1', 'app-user-1') = :app1 AS same_entry;
SELECT state, "position" FROM waitlist_status(:app2);
SELECT waitlist_leave(:app2) AS left_line;
SELECT current_user;
-- no direct access to the tables (42501)
SELECT count(*) FROM waitlist.entry;
SELECT count(*) FROM waitlist.resource;
UPDATE waitlist.entry SET state = 'OFFERED';
INSERT INTO waitlist.transition (entity, entity_id, resource_id, to_state, reason, rule_version, actor)
VALUES ('entry', 1, 'sec-1', 'OFFERED', 'forged', 'x', 'x');
UPDATE waitlist.resource SET free_units = 100;
-- nor to the functions not granted (42501)
SELECT waitlist_release('sec-1', 1, 'ev-app');
SELECT waitlist_promote('sec-1');
SELECT waitlist_create_resource('sec-app', '1 minute');
SELECT waitlist_alter_resource('sec-1', max_waiting => 1);
-- an API call that fails leaves the caller as it was, not as the owner
SELECT waitlist_join('sec-none', 'app-user-1');
SELECT current_user;
SELECT count(*) FROM waitlist.entry;
BEGIN;
SAVEPOINT s1;
SELECT waitlist_status(-1);
ROLLBACK TO SAVEPOINT s1;
SELECT current_user;
SELECT count(*) FROM waitlist.entry;
ROLLBACK;
RESET ROLE;

-- a role without EXECUTE cannot call the API at all (42501)
SET ROLE regress_waitlist_nobody;
SELECT waitlist_join('sec-1', 'nobody');
SELECT waitlist_status(:app1);
RESET ROLE;

-- the actor is the calling role; the release is the session user's
SELECT waitlist_release('sec-1', 1, 'ev-1') AS released;
SELECT entity, user_id, from_state, to_state, reason, actor
FROM audit WHERE resource_id = 'sec-1';
SET ROLE regress_waitlist_app;
SELECT state, offer_id IS NOT NULL AS has_offer FROM waitlist_status(:app1);
SELECT waitlist_leave(:app1) AS left_while_offered;
RESET ROLE;
SELECT entity, user_id, from_state, to_state, reason, actor
FROM audit WHERE resource_id = 'sec-1';
SELECT free_units FROM waitlist.resource WHERE resource_id = 'sec-1';

--
-- A hostile search_path: now(), and the operators the API's SQL uses, are
-- redefined in a schema searched before pg_catalog
--
CREATE SCHEMA regress_evil;
CREATE FUNCTION regress_evil.now() RETURNS timestamptz
    LANGUAGE sql AS $$ SELECT '2000-01-01 00:00:00+00'::timestamptz $$;
CREATE FUNCTION regress_evil.always_true(text, text) RETURNS boolean
    LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR regress_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = regress_evil.always_true);
CREATE OPERATOR regress_evil.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = regress_evil.always_true);
CREATE FUNCTION regress_evil.int_true(integer, integer) RETURNS boolean
    LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR regress_evil.> (LEFTARG = integer, RIGHTARG = integer, FUNCTION = regress_evil.int_true);
CREATE FUNCTION regress_evil.bigint_true(bigint, bigint) RETURNS boolean
    LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR regress_evil.< (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = regress_evil.bigint_true);
CREATE FUNCTION regress_evil.plus(timestamptz, interval) RETURNS timestamptz
    LANGUAGE sql AS $$ SELECT '2000-01-01 00:00:00+00'::timestamptz $$;
CREATE OPERATOR regress_evil.+ (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = regress_evil.plus);
GRANT USAGE ON SCHEMA regress_evil TO regress_waitlist_app;

SELECT waitlist_create_resource('sec-evil', '7 minutes');

SET ROLE regress_waitlist_app;
SET search_path = regress_evil, pg_catalog, public;
-- the hostile objects are what the caller's own SQL gets
SELECT now() = '2000-01-01 00:00:00+00' AS now_is_fake, 'a' = 'b' AS a_equals_b,
       2 > 3 AS two_gt_three, 3::bigint < 2::bigint AS three_lt_two;
-- distinct users get distinct entries, a double tap its own
SELECT waitlist_join('sec-evil', 'e1') AS e1 \gset
SELECT waitlist_join('sec-evil', 'e2') AS e2 \gset
SELECT waitlist_join('sec-evil', 'e3', 2) AS e3 \gset
SELECT waitlist_join('sec-evil', 'e4') AS e4 \gset
SELECT :e1 <> :e2 AS e1_e2_distinct, :e2 <> :e3 AS e2_e3_distinct, :e3 <> :e4 AS e3_e4_distinct;
SELECT waitlist_join('sec-evil', 'e2') = :e2 AS e2_same_entry,
       waitlist_join('sec-evil', 'e4') = :e4 AS e4_same_entry;
-- positions count only the entries ahead
SELECT (SELECT "position" FROM waitlist_status(:e3)) AS e3_position,
       (SELECT "position" FROM waitlist_status(:e1)) AS e1_position,
       (SELECT "position" FROM waitlist_status(:e2)) AS e2_position,
       (SELECT "position" FROM waitlist_status(:e4)) AS e4_position;
SELECT waitlist_leave(:e1) AS e1_left;
SELECT (SELECT state FROM waitlist_status(:e1)) AS e1_state,
       (SELECT state FROM waitlist_status(:e2)) AS e2_state,
       (SELECT "position" FROM waitlist_status(:e2)) AS e2_position;
-- the caller's settings are untouched
SELECT current_user, current_setting('search_path') AS search_path;
RESET ROLE;

-- a release under the hostile search_path: a real deadline, one offer, to
-- the head of the line
BEGIN;
SELECT waitlist_release('sec-evil', 1, 'ev-1') AS released;
SELECT pg_catalog.count(*) OPERATOR(pg_catalog.=) 1 AS one_offer,
       pg_catalog.bool_and(o.created_at OPERATOR(pg_catalog.=) pg_catalog.now()) AS created_now,
       pg_catalog.bool_and(o.expires_at OPERATOR(pg_catalog.-) o.created_at
                           OPERATOR(pg_catalog.=) '7 minutes'::interval) AS ttl_kept
FROM waitlist.offer o WHERE o.resource_id OPERATOR(pg_catalog.=) 'sec-evil';
COMMIT;
SET ROLE regress_waitlist_app;
SELECT state, offer_id IS NOT NULL AS has_offer,
       offer_expires_at OPERATOR(pg_catalog.>) pg_catalog.now() AS expires_in_future
FROM waitlist_status(:e3);
SELECT state, "position" FROM waitlist_status(:e2);
SELECT waitlist_leave(:e3) AS e3_left_while_offered;
SELECT state, offer_id IS NOT NULL AS has_offer FROM waitlist_status(:e2);
RESET ROLE;
-- a change by hand under the hostile search_path writes exactly its row
UPDATE waitlist.entry SET state = 'CANCELLED'
WHERE resource_id OPERATOR(pg_catalog.=) 'sec-evil' AND user_id OPERATOR(pg_catalog.=) 'e4';
RESET search_path;

SELECT user_id, state FROM waitlist.entry WHERE resource_id = 'sec-evil' ORDER BY entry_id;
SELECT entity, user_id, from_state, to_state, reason, actor
FROM audit WHERE resource_id = 'sec-evil';
SELECT resource_id, free_units, units_released FROM waitlist.resource ORDER BY 1;
-- no row was stamped with the fake clock
SELECT (SELECT count(*) FROM waitlist.transition WHERE at < '2001-01-01') AS fake_transition_times,
       (SELECT count(*) FROM waitlist.entry WHERE joined_at < '2001-01-01' OR updated_at < '2001-01-01') AS fake_entry_times,
       (SELECT count(*) FROM waitlist.offer WHERE created_at < '2001-01-01' OR expires_at < '2001-01-01'
                                               OR decided_at < '2001-01-01') AS fake_offer_times;

--
-- Temporary tables named like the extension's tables, CTEs and transition
-- tables change nothing: pg_temp is searched last, and every relation the
-- extension's SQL names is schema-qualified or its own
--
CREATE TEMP TABLE resource (resource_id text, free_units bigint);
CREATE TEMP TABLE entry (resource_id text, entry_id bigint, state text);
CREATE TEMP TABLE offer (resource_id text, offer_id bigint, state text);
CREATE TEMP TABLE accept_request (resource_id text, offer_id bigint, state text);
CREATE TEMP TABLE transition (resource_id text);
CREATE TEMP TABLE new_rows (resource_id text);
CREATE TEMP TABLE settled (offer_id bigint);
INSERT INTO resource VALUES ('sec-temp', 1000);
INSERT INTO offer VALUES ('sec-temp', 1, 'ACCEPTED');
SELECT waitlist_create_resource('sec-temp', '5 minutes');
SELECT waitlist_join('sec-temp', 't1') AS t1 \gset
SELECT waitlist_release('sec-temp', 1, 'ev-1') AS released;
SELECT state, offer_id IS NOT NULL AS has_offer FROM waitlist_status(:t1);
SELECT state FROM waitlist_accept((SELECT offer_id FROM waitlist_status(:t1)), 'k');
SELECT (SELECT count(*) FROM waitlist.transition WHERE resource_id = 'sec-temp') AS transitions,
       (SELECT count(*) FROM pg_temp.transition) AS temp_transitions,
       (SELECT count(*) FROM pg_temp.offer) AS temp_offers,
       (SELECT free_units FROM waitlist.resource WHERE resource_id = 'sec-temp') AS free_units;
DROP TABLE pg_temp.resource, pg_temp.entry, pg_temp.offer, pg_temp.accept_request,
    pg_temp.transition, pg_temp.new_rows, pg_temp.settled;

--
-- The booking function cannot escalate: a non-superuser's booking function
-- changes search_path (a plain SET, set_config(..., false), or a trigger on
-- its own table), so that the rest of waitlist_accept, which runs as the
-- owner (here a superuser), would resolve "=" to the attacker's operator.
-- The operator tries ALTER ROLE ... SUPERUSER and logs who runs it.  The
-- settings are thrown away when the function returns: the operator only
-- ever runs as the attacker, who gains nothing.
--
CREATE ROLE regress_attacker;
CREATE SCHEMA regress_trap AUTHORIZATION regress_attacker;
GRANT EXECUTE ON FUNCTION waitlist_accept(bigint, text) TO regress_attacker;
SET ROLE regress_attacker;
CREATE TABLE regress_trap.log (who name, path text);
CREATE TABLE regress_trap.bookings (offer_id bigint);
CREATE FUNCTION regress_trap.eq(a text, b text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO regress_trap.log VALUES (current_user, pg_catalog.current_setting('search_path'));
    BEGIN
        EXECUTE 'ALTER ROLE regress_attacker SUPERUSER';
    EXCEPTION WHEN insufficient_privilege THEN NULL;
    END;
    RETURN pg_catalog.texteq(a, b);
END;
$$;
CREATE OPERATOR regress_trap.= (LEFTARG = text, RIGHTARG = text, FUNCTION = regress_trap.eq);
-- (a) a plain SET
CREATE FUNCTION regress_trap.book_set(text, text, bigint, text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    SET search_path = regress_trap, pg_catalog;
    RETURN 'set';
END;
$$;
-- (b) set_config(..., false)
CREATE FUNCTION regress_trap.book_set_config(text, text, bigint, text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'regress_trap, pg_catalog', false);
    RETURN 'set_config';
END;
$$;
-- (c) from a trigger its INSERT fires
CREATE FUNCTION regress_trap.bookings_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    SET search_path = regress_trap, pg_catalog;
    RETURN NEW;
END;
$$;
CREATE TRIGGER bookings_trigger BEFORE INSERT ON regress_trap.bookings
    FOR EACH ROW EXECUTE FUNCTION regress_trap.bookings_trigger();
CREATE FUNCTION regress_trap.book_trigger(text, text, p_offer bigint, text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO regress_trap.bookings VALUES (p_offer);
    RETURN 'trigger';
END;
$$;
-- SET ROLE and SET SESSION AUTHORIZATION are refused inside it (42501)
CREATE FUNCTION regress_trap.book_set_role(text, text, bigint, text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    SET ROLE regress_attacker;
    RETURN 'set role';
END;
$$;
CREATE FUNCTION regress_trap.book_session_auth(text, text, bigint, text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE 'SET SESSION AUTHORIZATION ' || pg_catalog.quote_ident(session_user);
    RETURN 'session authorization';
END;
$$;
RESET ROLE;

CREATE FUNCTION pg_temp.attack(p_resource text, p_booking regprocedure) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM waitlist_create_resource(p_resource, booking_function => p_booking);
    PERFORM waitlist_join(p_resource, 'fan-' || p_resource);
    PERFORM waitlist_release(p_resource, 1, 'ev-' || p_resource);
    RETURN (SELECT o.offer_id FROM waitlist.offer o WHERE o.resource_id = p_resource);
END;
$$;
SELECT pg_temp.attack('trap-set', 'regress_trap.book_set(text,text,bigint,text)') AS offer_set,
       pg_temp.attack('trap-set-config', 'regress_trap.book_set_config(text,text,bigint,text)') AS offer_set_config,
       pg_temp.attack('trap-trigger', 'regress_trap.book_trigger(text,text,bigint,text)') AS offer_trigger,
       pg_temp.attack('trap-set-role', 'regress_trap.book_set_role(text,text,bigint,text)') AS offer_set_role,
       pg_temp.attack('trap-session-auth', 'regress_trap.book_session_auth(text,text,bigint,text)') AS offer_session_auth
\gset

SET ROLE regress_attacker;
SET search_path = public;
SELECT * FROM waitlist_accept(:offer_set, 'k');
SELECT current_user, current_setting('search_path') AS search_path;
SELECT * FROM waitlist_accept(:offer_set_config, 'k');
SELECT current_user, current_setting('search_path') AS search_path;
SELECT * FROM waitlist_accept(:offer_trigger, 'k');
SELECT current_user, current_setting('search_path') AS search_path;
-- 42501, and the offers stay open
SELECT * FROM waitlist_accept(:offer_set_role, 'k');
SELECT * FROM waitlist_accept(:offer_session_auth, 'k');
SELECT current_user, session_user = current_user AS session_user_changed,
       current_setting('search_path') AS search_path;
RESET ROLE;
RESET search_path;
-- the attacker gained nothing, and the operator never ran as anyone else
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_attacker';
SELECT count(*) AS operator_runs_not_as_attacker FROM regress_trap.log
WHERE who <> 'regress_attacker';
SELECT resource_id, state, reservation_ref FROM waitlist.offer
WHERE resource_id LIKE 'trap-%' ORDER BY resource_id;
SELECT count(*) AS violations FROM waitlist_check();

SET client_min_messages = warning;
DROP SCHEMA regress_trap CASCADE;
DROP OWNED BY regress_attacker;
DROP ROLE regress_attacker;
DROP SCHEMA regress_evil CASCADE;
DROP OWNED BY regress_waitlist_app;
DROP OWNED BY regress_waitlist_nobody;
DROP ROLE regress_waitlist_app;
DROP ROLE regress_waitlist_nobody;
