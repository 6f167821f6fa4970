--
-- archive: waitlist_archive() moves terminal entries, with their offers,
-- outbox rows, accept requests and transitions, and processed capacity
-- events to schema waitlist_archive, in bounded batches; what is still
-- alive or undelivered stays hot; the audit trail stays append-only for
-- everything else; waitlist_check() stays empty.  Time passing is
-- simulated by ageing rows by hand (updated_at and processed_at changes
-- write no transitions).
--
\set VERBOSITY sqlstate
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS waitlist CASCADE;
DROP EXTENSION IF EXISTS pg_cron;
DROP ROLE IF EXISTS regress_archive_dba;
CREATE EXTENSION waitlist;
RESET client_min_messages;

CREATE FUNCTION public.archive_book(resource_id text, user_id text, offer_id bigint, idempotency_key text)
RETURNS text LANGUAGE sql AS $$SELECT 'seat-' || offer_id$$;

-- everything there is, hot and archived, per table
CREATE TEMP VIEW everything AS
SELECT 'entry' AS tab, (SELECT count(*) FROM waitlist.entry) AS hot,
       (SELECT count(*) FROM waitlist_archive.entry) AS archived
UNION ALL SELECT 'offer', (SELECT count(*) FROM waitlist.offer), (SELECT count(*) FROM waitlist_archive.offer)
UNION ALL SELECT 'outbox', (SELECT count(*) FROM waitlist.outbox), (SELECT count(*) FROM waitlist_archive.outbox)
UNION ALL SELECT 'accept_request', (SELECT count(*) FROM waitlist.accept_request),
                 (SELECT count(*) FROM waitlist_archive.accept_request)
UNION ALL SELECT 'capacity_event', (SELECT count(*) FROM waitlist.capacity_event),
                 (SELECT count(*) FROM waitlist_archive.capacity_event)
UNION ALL SELECT 'transition', (SELECT count(*) FROM waitlist.transition),
                 (SELECT count(*) FROM waitlist_archive.transition);

CREATE TEMP VIEW where_entries_are AS
SELECT e.resource_id, e.user_id, e.state, 'hot' AS place FROM waitlist.entry e
UNION ALL
SELECT a.resource_id, a.user_id, a.state, 'archived' FROM waitlist_archive.entry a
ORDER BY 1, 2;

--
-- A waitlist with entries in every state
--
SELECT waitlist_create_resource('arch-1', '15 minutes',
    booking_function => 'public.archive_book(text, text, bigint, text)');
SELECT waitlist_create_resource('arch-2', '15 minutes');
SELECT count(waitlist_join('arch-1', u)) FROM unnest(ARRAY['ann', 'ben', 'cat', 'dan', 'eve', 'fay', 'gus']) u;
SELECT count(waitlist_join('arch-2', u)) FROM unnest(ARRAY['hal', 'ivy']) u;
SELECT waitlist_release('arch-1', 4, 'ev-1');
CREATE TEMP VIEW offer_of AS
SELECT o.user_id, o.offer_id FROM waitlist.offer o WHERE o.state = 'OPEN';
SELECT offer_id AS ann_offer FROM offer_of WHERE user_id = 'ann' \gset
SELECT offer_id AS ben_offer FROM offer_of WHERE user_id = 'ben' \gset
SELECT offer_id AS dan_offer FROM offer_of WHERE user_id = 'dan' \gset
SELECT state, reservation_ref IS NOT NULL AS booked FROM waitlist_accept(:ann_offer, 'k-ann');
SELECT waitlist_decline(:ben_offer);
SELECT waitlist_leave(entry_id) FROM waitlist.entry WHERE user_id = 'cat';
UPDATE waitlist.offer SET expires_at = now() - interval '1 minute' WHERE offer_id = :dan_offer;
SELECT waitlist_sweep();
SELECT waitlist_leave(entry_id) FROM waitlist.entry WHERE user_id = 'ivy';
SELECT waitlist_release('arch-2', 1, 'ev-2');
SELECT offer_id AS hal_offer FROM offer_of WHERE user_id = 'hal' \gset
SELECT state FROM waitlist_accept(:hal_offer, 'k-hal');

-- The relay delivers everything except ben's rows (still leased, not
-- acknowledged); dan's rows fail for good (DEAD)
SET waitlist.outbox_max_attempts = 1;
DO $$
DECLARE
    c record;
    n integer;
BEGIN
    LOOP
        n := 0;
        FOR c IN SELECT * FROM waitlist_outbox_claim('relay', 100, '1 hour') LOOP
            n := n + 1;
            IF c.user_id = 'dan' THEN
                PERFORM waitlist_outbox_fail(c.outbox_id, c.lease_token, 'no such address');
            ELSIF c.user_id <> 'ben' THEN
                PERFORM waitlist_outbox_ack(c.outbox_id, c.lease_token);
            END IF;
        END LOOP;
        EXIT WHEN n = 0;
    END LOOP;
END
$$;
RESET waitlist.outbox_max_attempts;
SELECT o.user_id, b.event_type, b.state
FROM waitlist.outbox b JOIN waitlist.offer o USING (resource_id, offer_id)
WHERE b.state <> 'DELIVERED' ORDER BY b.outbox_id;
SELECT * FROM where_entries_are;

-- a month and more passes; then jon joins and leaves at once
UPDATE waitlist.entry SET updated_at = updated_at - interval '40 days';
UPDATE waitlist.capacity_event SET processed_at = processed_at - interval '40 days';
SELECT waitlist_join('arch-2', 'jon') AS jon \gset
SELECT waitlist_leave(:jon);
SELECT count(*) AS invariants_violated FROM waitlist_check();
CREATE TEMP TABLE before AS SELECT tab, hot + archived AS total FROM everything;
CREATE TEMP TABLE transitions_before AS
SELECT resource_id, transition_id, entity, entity_id, from_state, to_state, reason, actor, at
FROM waitlist.transition;

--
-- Bad arguments: 22004, 22023
--
SELECT waitlist_archive(NULL);
SELECT waitlist_archive('30 days', NULL);
SELECT waitlist_archive('59 minutes');
SELECT waitlist_archive('-1 day');
SELECT waitlist_archive('30 days', 0);
SELECT waitlist_archive('30 days', 100001);
\set VERBOSITY default
SELECT waitlist_archive('10 minutes');
SELECT waitlist_archive('30 days', -1);
\set VERBOSITY sqlstate
-- nothing is older than 41 days
\set VERBOSITY default
SELECT waitlist_archive('41 days');
\set VERBOSITY sqlstate

--
-- Batches: at most 2 entries and 2 events per call; 0 when nothing is left
--
SELECT waitlist_archive('30 days', 2) AS moved;
SELECT * FROM everything;
SELECT waitlist_archive('30 days', 2) AS moved;
SELECT waitlist_archive('30 days', 2) AS moved;
SELECT waitlist_archive('30 days', 2) AS moved;
-- the procedure loops, committing each batch; nothing is left for it
CALL waitlist_archive_all('30 days', 1);

-- What moved: the terminal entries whose every outbox row was delivered or
-- dead.  What stayed: ben (an undelivered row), the open offers' entries,
-- the waiting and jon (ended just now).
SELECT * FROM where_entries_are;
SELECT o.user_id, o.state, a.archived_at IS NOT NULL AS archived
FROM waitlist_archive.offer_all o
LEFT JOIN waitlist_archive.offer a USING (resource_id, offer_id)
ORDER BY o.offer_id;
SELECT state, count(*) FROM waitlist.outbox GROUP BY state ORDER BY state;
SELECT state, count(*) FROM waitlist_archive.outbox GROUP BY state ORDER BY state;
SELECT event_id, state FROM waitlist_archive.capacity_event ORDER BY event_id;
SELECT offer_id = :ann_offer AS ann, idempotency_key, state FROM waitlist_archive.accept_request
ORDER BY offer_id;
SELECT resource_id, entries, offers_accepted, offers_failed, events, units_released
FROM waitlist_archive.resource_totals ORDER BY resource_id;
-- nothing lost: every row is hot or archived, once
SELECT e.tab, b.total = e.hot + e.archived AS all_there FROM everything e JOIN before b USING (tab);
-- the trail moved as it was, row for row
SELECT count(*) AS transitions_changed FROM (
    SELECT resource_id, transition_id, entity, entity_id, from_state, to_state, reason, actor, at
    FROM waitlist_archive.transition_all
    EXCEPT
    SELECT * FROM transitions_before) x;
SELECT count(*) = (SELECT count(*) FROM transitions_before) AS same_count
FROM waitlist_archive.transition_all;
-- the archived log tells ann's story
SELECT t.entity, t.from_state, t.to_state, t.reason, t.archived_at IS NOT NULL AS archived
FROM waitlist_archive.transition_all t
WHERE t.resource_id = 'arch-1'
  AND ((t.entity = 'offer' AND t.entity_id = :ann_offer)
    OR (t.entity = 'entry' AND t.entity_id = (SELECT entry_id FROM waitlist_archive.entry WHERE user_id = 'ann')))
ORDER BY t.transition_id;
-- the invariants hold with the archive's counts
SELECT * FROM waitlist_check();

-- once ben's rows are delivered, ben goes too
SELECT count(waitlist_outbox_ack(b.outbox_id, b.lease_token))
FROM waitlist.outbox b WHERE b.user_id = 'ben' AND b.state = 'PENDING' AND b.lease_token IS NOT NULL;
SELECT count(waitlist_outbox_ack(c.outbox_id, c.lease_token))
FROM waitlist_outbox_claim('relay', 100, '1 hour') c;
SELECT waitlist_archive('30 days') AS moved;
SELECT * FROM where_entries_are;
SELECT * FROM waitlist_check();

-- and it still sees what is wrong: units out of balance with the archive's
-- counts, a state changed by hand without its audit row (replica mode)
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE waitlist.resource SET free_units = free_units + 1 WHERE resource_id = 'arch-2';
UPDATE waitlist.resource SET units_released = units_released + 5 WHERE resource_id = 'arch-1';
UPDATE waitlist.entry SET state = 'WAITING' WHERE user_id = 'fay';
SELECT invariant, resource_id, entity, detail FROM waitlist_check() ORDER BY 1, 2, 3;
ROLLBACK;

--
-- A capacity event counts once also after it was archived
--
SELECT waitlist_release('arch-1', 1, 'ev-1') AS counted_again;
SELECT units_released, free_units FROM waitlist.resource WHERE resource_id = 'arch-1';
SELECT count(*) AS hot_copies FROM waitlist.capacity_event WHERE event_id = 'ev-1';

-- and the waitlist goes on: a new fan, a new release, an accept
SELECT waitlist_join('arch-1', 'kim') > 0 AS joined;
SELECT waitlist_accept(offer_id, 'k-eve') FROM offer_of WHERE user_id = 'eve';
SELECT waitlist_release('arch-1', 2, 'ev-3');
SELECT user_id, state FROM waitlist.entry WHERE resource_id = 'arch-1' ORDER BY entry_id;
SELECT * FROM waitlist_check();

--
-- The audit trail is append-only for everything but waitlist_archive()
-- (42501), the archived one included, even for a superuser
--
DELETE FROM waitlist.transition WHERE resource_id = 'arch-1';
BEGIN;
-- not even right after an archiving call in the same transaction
UPDATE waitlist.entry SET updated_at = updated_at - interval '40 days' WHERE user_id = 'jon';
SELECT waitlist_archive('30 days') AS moved;
DELETE FROM waitlist.transition WHERE resource_id = 'arch-2';
ROLLBACK;
DELETE FROM waitlist_archive.transition;
UPDATE waitlist_archive.transition SET reason = 'rewritten';
TRUNCATE waitlist_archive.transition;
\set VERBOSITY default
DELETE FROM waitlist_archive.transition;
\set VERBOSITY sqlstate
-- the guards cannot be switched off, nor a trigger added to the archived log
ALTER TABLE waitlist_archive.transition DISABLE TRIGGER transition_no_update_delete;
ALTER TABLE waitlist_archive.transition DISABLE TRIGGER ALL;
CREATE FUNCTION public.archive_forget() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
CREATE TRIGGER forget BEFORE INSERT ON waitlist_archive.transition
    FOR EACH ROW EXECUTE FUNCTION public.archive_forget();
DROP TRIGGER transition_insert_guard ON waitlist_archive.transition;
ALTER TABLE waitlist_archive.transition RENAME TO old_transition;
-- storage settings may change
ALTER TABLE waitlist_archive.transition SET (fillfactor = 100);
-- a role allowed to INSERT into the archived log cannot forge rows in it
CREATE ROLE regress_archive_dba;
GRANT USAGE ON SCHEMA waitlist_archive TO regress_archive_dba;
GRANT SELECT, INSERT ON waitlist_archive.transition TO regress_archive_dba;
SET ROLE regress_archive_dba;
INSERT INTO waitlist_archive.transition
SELECT transition_id + 1000, entity, entity_id, resource_id, from_state, 'ACCEPTED', 'forged',
       rule_version, 'someone', at, transaction_id, now()
FROM waitlist_archive.transition LIMIT 1;
RESET ROLE;
-- a superuser may (a restore COPYs the archived log back)
BEGIN;
INSERT INTO waitlist_archive.transition
SELECT transition_id + 1000, entity, entity_id, resource_id, from_state, to_state, reason,
       rule_version, actor, at, transaction_id, archived_at
FROM waitlist_archive.transition LIMIT 1;
ROLLBACK;
SELECT count(*) = (SELECT count(*) FROM transitions_before) AS archived_trail_intact
FROM waitlist_archive.transition_all WHERE transition_id IN (SELECT transition_id FROM transitions_before);

-- API rights: nothing for PUBLIC
SELECT p.oid::regprocedure AS routine, has_function_privilege('regress_archive_dba', p.oid, 'EXECUTE') AS public_may
FROM pg_proc p
WHERE p.proname IN ('waitlist_archive', 'waitlist_archive_all', 'waitlist_schedule_archive',
                    'waitlist_unschedule_archive')
ORDER BY p.oid::regprocedure::text;
SELECT has_schema_privilege('regress_archive_dba', 'waitlist', 'USAGE') AS hot_schema,
       has_table_privilege('regress_archive_dba', 'waitlist_archive.entry', 'SELECT') AS archived_entries;

--
-- Scheduling with pg_cron: the job "waitlist-archive" runs the procedure
-- through the extension's schema, with its age; the sweep's ownership rules
--
SELECT waitlist_schedule_archive();
CREATE EXTENSION pg_cron;
CREATE TEMP VIEW archive_job AS
SELECT j.jobname, j.schedule, j.command, j.database = current_database() AS this_database,
       j.username = (SELECT pg_get_userbyid(n.nspowner) FROM pg_namespace n
                     WHERE n.nspname = 'waitlist') AS as_owner
FROM cron.job j ORDER BY j.jobid;
SELECT waitlist_unschedule_archive();
SELECT waitlist_schedule_archive() AS jobid \gset
SELECT * FROM archive_job;
-- again: the same job, with the new schedule and age
SELECT waitlist_schedule_archive('0 4 * * 0', '90 days') = :jobid AS same_job;
SELECT * FROM archive_job;
-- the age is bounded when the job is scheduled, the arguments not null
SELECT waitlist_schedule_archive('0 4 * * *', '5 minutes');
SELECT waitlist_schedule_archive(NULL);
SELECT waitlist_schedule_archive('0 4 * * *', NULL);
-- the job's command runs (here in psql, as pg_cron would)
SELECT command AS archive_command FROM cron.job WHERE jobname = 'waitlist-archive' \gset
:archive_command;
-- the sweep's job is another job
SELECT waitlist_schedule_sweep() <> :jobid AS other_job;
SELECT waitlist_unschedule_sweep();
-- the owner's job of that name running something else is not ours
SELECT cron.alter_job(:jobid, command := 'CALL public.waitlist_archive_all(''1 day''); SELECT 1');
SELECT waitlist_schedule_archive();
SELECT waitlist_unschedule_archive();
SELECT cron.alter_job(:jobid, command := 'CALL public.waitlist_archive_all(''30 days''::pg_catalog.interval)');
SELECT waitlist_unschedule_archive();
SELECT waitlist_unschedule_archive();
SELECT * FROM archive_job;

-- leave no pg_cron and no role behind, and waitlist as the other files expect it
SET client_min_messages = warning;
DROP VIEW archive_job;
DROP EXTENSION pg_cron;
DROP FUNCTION public.archive_forget();
DROP EXTENSION waitlist CASCADE;
DROP FUNCTION public.archive_book(text, text, bigint, text);
DROP OWNED BY regress_archive_dba;
DROP ROLE regress_archive_dba;
CREATE EXTENSION waitlist;
RESET client_min_messages;
