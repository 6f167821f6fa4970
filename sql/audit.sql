--
-- audit: waitlist.transition is append-only, and every state change of an
-- entry or offer, through the API or by hand, writes its row in the same
-- transaction
--
\set VERBOSITY sqlstate
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- a fresh install, so that this file does not depend on the files before it
DROP EXTENSION IF EXISTS waitlist CASCADE;
CREATE EXTENSION waitlist;
DROP ROLE IF EXISTS regress_waitlist_dba;
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

SELECT waitlist_create_resource('audit-1', '15 minutes');
SELECT waitlist_join('audit-1', 'ann') AS ann \gset
SELECT waitlist_join('audit-1', 'ben') AS ben \gset
SELECT waitlist_join('audit-1', 'cat') AS cat \gset
SELECT waitlist_join('audit-1', 'dan') AS dan \gset

--
-- The rows of one API call belong to its transaction and carry its time
--
BEGIN;
SELECT pg_current_xact_id() AS release_xid \gset
SELECT waitlist_release('audit-1', 1, 'ev-1') AS released;
SELECT entity, from_state, to_state, reason,
       transaction_id = :'release_xid'::xid8 AS same_transaction,
       at = now() AS same_time
FROM waitlist.transition
WHERE resource_id = 'audit-1' AND reason = 'promoted'
ORDER BY transition_id;
COMMIT;
SELECT count(*) AS transitions FROM waitlist.transition \gset

--
-- The log cannot be rewritten: UPDATE, DELETE and TRUNCATE fail (42501),
-- even for a superuser, and nothing changes
--
UPDATE waitlist.transition SET reason = 'rewritten' WHERE resource_id = 'audit-1';
UPDATE waitlist.transition SET actor = 'someone_else';
DELETE FROM waitlist.transition WHERE resource_id = 'audit-1';
DELETE FROM waitlist.transition;
TRUNCATE waitlist.transition;
TRUNCATE waitlist.transition, waitlist.entry, waitlist.offer;
SELECT count(*) = :transitions AS nothing_removed,
       count(*) FILTER (WHERE reason = 'rewritten' OR actor = 'someone_else') AS rewritten
FROM waitlist.transition;

--
-- A state changed by hand is recorded as 'manual', by whoever changed it,
-- if the state machine has that move (waitlist.state_machine())
--
UPDATE waitlist.entry SET state = 'CANCELLED' WHERE resource_id = 'audit-1' AND user_id = 'ben';
-- two rows in one statement: one transition each
UPDATE waitlist.entry SET state = 'CANCELLED', updated_at = now()
WHERE resource_id = 'audit-1' AND user_id IN ('cat', 'dan');
-- an offer changed by hand
UPDATE waitlist.offer SET state = 'EXPIRED', decided_at = now() WHERE resource_id = 'audit-1';
-- a row inserted by hand
INSERT INTO waitlist.entry (resource_id, user_id) VALUES ('audit-1', 'eve');
-- changes that leave the state as it is write nothing
UPDATE waitlist.entry SET priority = 7 WHERE resource_id = 'audit-1';
UPDATE waitlist.entry SET state = state WHERE resource_id = 'audit-1';
SELECT entity, user_id, from_state, to_state, reason, actor
FROM audit WHERE resource_id = 'audit-1';

-- a change rolled back takes its transition row with it
SELECT count(*) AS transitions FROM waitlist.transition \gset
BEGIN;
UPDATE waitlist.entry SET state = 'CANCELLED' WHERE resource_id = 'audit-1' AND user_id = 'eve';
SELECT count(*) - :transitions AS new_rows_inside FROM waitlist.transition;
ROLLBACK;
SELECT count(*) - :transitions AS new_rows_after_rollback FROM waitlist.transition;
SELECT state AS eve_state FROM waitlist.entry WHERE resource_id = 'audit-1' AND user_id = 'eve';

--
-- After an API call fails, even inside a savepoint, a change by hand in the
-- same transaction is still recorded as 'manual' by the session's role: the
-- failed call leaves nothing behind
--
SELECT waitlist_create_resource('audit-cap', '15 minutes', max_waiting => 1);
SELECT waitlist_join('audit-cap', 'fay') AS fay \gset
BEGIN;
SAVEPOINT s1;
-- expect WL001
SELECT waitlist_join('audit-cap', 'gus');
ROLLBACK TO SAVEPOINT s1;
SELECT current_user = session_user AS role_restored,
       current_setting('search_path') AS search_path;
UPDATE waitlist.entry SET state = 'CANCELLED' WHERE resource_id = 'audit-cap' AND user_id = 'fay';
COMMIT;
-- expect 42704, outside any savepoint
SELECT waitlist_release('audit-none', 1, 'ev-1');
SELECT current_user = session_user AS role_restored;
-- and an API call that succeeded does not lend its reason to what follows
SELECT waitlist_join('audit-cap', 'fay') <> :fay AS fay_new_entry;
UPDATE waitlist.entry SET state = 'CANCELLED'
WHERE resource_id = 'audit-cap' AND user_id = 'fay' AND state = 'WAITING';
SELECT entity, user_id, from_state, to_state, reason, actor
FROM audit WHERE resource_id = 'audit-cap';

--
-- Whoever changes a state by hand must be able to write its audit row: a
-- role that may UPDATE entries but not INSERT transitions changes nothing
--
CREATE ROLE regress_waitlist_dba;
GRANT USAGE ON SCHEMA waitlist TO regress_waitlist_dba;
GRANT SELECT, UPDATE ON waitlist.entry TO regress_waitlist_dba;
SET ROLE regress_waitlist_dba;
-- expect 42501
UPDATE waitlist.entry SET state = 'CANCELLED' WHERE resource_id = 'audit-1' AND user_id = 'eve';
RESET ROLE;
SELECT state FROM waitlist.entry WHERE resource_id = 'audit-1' AND user_id = 'eve';
GRANT INSERT ON waitlist.transition TO regress_waitlist_dba;
SET ROLE regress_waitlist_dba;
UPDATE waitlist.entry SET state = 'CANCELLED' WHERE resource_id = 'audit-1' AND user_id = 'eve';
-- and still cannot rewrite the log
UPDATE waitlist.transition SET reason = 'rewritten';
RESET ROLE;
SELECT entity, user_id, from_state, to_state, reason, actor
FROM audit WHERE resource_id = 'audit-1' AND user_id = 'eve';

-- the trail matches the tables
SELECT count(*) AS entries_out_of_step
FROM waitlist.entry e
WHERE e.state IS DISTINCT FROM (SELECT t.to_state FROM waitlist.transition t
                                WHERE t.resource_id = e.resource_id AND t.entity = 'entry'
                                  AND t.entity_id = e.entry_id
                                ORDER BY t.transition_id DESC LIMIT 1);
SELECT count(*) AS offers_out_of_step
FROM waitlist.offer o
WHERE o.state IS DISTINCT FROM (SELECT t.to_state FROM waitlist.transition t
                                WHERE t.resource_id = o.resource_id AND t.entity = 'offer'
                                  AND t.entity_id = o.offer_id
                                ORDER BY t.transition_id DESC LIMIT 1);

--
-- Rows of the log come only from the audit trigger: a role that may INSERT
-- into it (as one that changes states by hand must) cannot forge a row,
-- with any actor or time (42501).  A superuser may: that is how a restore
-- brings the trail back.
--
SELECT count(*) AS transitions FROM waitlist.transition \gset
SET ROLE regress_waitlist_dba;
INSERT INTO waitlist.transition (entity, entity_id, resource_id, to_state, reason, rule_version, actor, at)
VALUES ('entry', 1, 'audit-1', 'ACCEPTED', 'forged', 'x', 'someone_else', '2000-01-01');
INSERT INTO waitlist.transition (entity, entity_id, resource_id, to_state, reason, rule_version, actor)
SELECT entity, entity_id, resource_id, to_state, reason, rule_version, actor
FROM waitlist.transition WHERE resource_id = 'audit-1' LIMIT 1;
RESET ROLE;
BEGIN;
INSERT INTO waitlist.transition (entity, entity_id, resource_id, to_state, reason, rule_version, actor)
VALUES ('entry', 1, 'audit-1', 'ACCEPTED', 'restored', 'x', 'someone_else');
SELECT count(*) - :transitions AS superuser_rows FROM waitlist.transition;
ROLLBACK;
SELECT count(*) - :transitions AS new_rows FROM waitlist.transition;

--
-- session_replication_role = replica does not silence the guards: the log
-- stays append-only, and API calls write their rows.  A superuser's change
-- by hand in replica mode (a restore, a replication apply) writes none, its
-- rows come with their trail; anyone else's change is recorded as usual.
--
SET session_replication_role = replica;
UPDATE waitlist.transition SET reason = 'rewritten' WHERE resource_id = 'audit-1';
DELETE FROM waitlist.transition WHERE resource_id = 'audit-1';
TRUNCATE waitlist.transition;
SELECT waitlist_join('audit-1', 'zoe') AS zoe \gset
SELECT waitlist_join('audit-1', 'zed') AS zed \gset
UPDATE waitlist.entry SET state = 'CANCELLED' WHERE entry_id = :zoe;
RESET session_replication_role;
GRANT SET ON PARAMETER session_replication_role TO regress_waitlist_dba;
SET ROLE regress_waitlist_dba;
SET session_replication_role = replica;
UPDATE waitlist.entry SET state = 'CANCELLED' WHERE entry_id = :zed;
RESET session_replication_role;
RESET ROLE;
REVOKE SET ON PARAMETER session_replication_role FROM regress_waitlist_dba;
SELECT count(*) - :transitions AS new_rows,
       count(*) FILTER (WHERE reason = 'rewritten') AS rewritten
FROM waitlist.transition;
SELECT entity, user_id, from_state, to_state, reason, actor
FROM audit WHERE resource_id = 'audit-1' AND user_id IN ('zoe', 'zed');

--
-- DDL that would switch the guards off or rewrite the log is refused, even
-- for a superuser (42501): disabling or re-enabling triggers, changing or
-- dropping columns, dropping the guards' triggers, triggers or rules on the
-- log, renames, inheriting from the audited tables, taking the tables out
-- of the extension
--
ALTER TABLE waitlist.transition DISABLE TRIGGER ALL;
ALTER TABLE waitlist.transition DISABLE TRIGGER transition_no_update_delete;
ALTER TABLE waitlist.entry DISABLE TRIGGER USER;
ALTER TABLE waitlist.offer DISABLE TRIGGER offer_update_guard;
ALTER TABLE waitlist.entry ENABLE REPLICA TRIGGER entry_update_guard;
ALTER TABLE waitlist.transition ALTER COLUMN actor TYPE name USING 'someone_else';
ALTER TABLE waitlist.transition ALTER COLUMN at SET DEFAULT '2000-01-01';
ALTER TABLE waitlist.transition DROP COLUMN reason;
ALTER TABLE waitlist.transition SET UNLOGGED;
ALTER TABLE waitlist.transition RENAME COLUMN actor TO actor_was;
ALTER TABLE waitlist.transition RENAME TO transition_was;
DROP TRIGGER transition_no_truncate ON waitlist.transition;
DROP TRIGGER transition_insert_guard ON waitlist.transition;
DROP TRIGGER entry_update_guard ON waitlist.entry;
CREATE FUNCTION pg_temp.keep_quiet() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER keep_quiet BEFORE INSERT ON waitlist.transition
    FOR EACH ROW EXECUTE FUNCTION pg_temp.keep_quiet();
CREATE RULE keep_quiet AS ON INSERT TO waitlist.transition DO INSTEAD NOTHING;
CREATE RULE keep_quiet AS ON UPDATE TO waitlist.offer DO INSTEAD NOTHING;
CREATE OR REPLACE TRIGGER entry_update_guard BEFORE UPDATE ON waitlist.entry
    FOR EACH ROW EXECUTE FUNCTION pg_temp.keep_quiet();
CREATE OR REPLACE FUNCTION waitlist.guard_transition() RETURNS trigger
    LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE OR REPLACE FUNCTION waitlist.transition_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TABLE pg_temp.more_transitions () INHERITS (waitlist.transition);
ALTER EXTENSION waitlist DROP TABLE waitlist.transition;
\set VERBOSITY terse
ALTER TABLE waitlist.transition DISABLE TRIGGER ALL;
\set VERBOSITY sqlstate
SELECT c.relnamespace::regnamespace AS schema, c.relname, t.tgname, t.tgenabled
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace IN ('waitlist'::regnamespace, 'waitlist_archive'::regnamespace)
  AND c.relname IN ('entry', 'offer', 'transition') AND NOT t.tgisinternal
ORDER BY 1, 2, 3;
SELECT evtname, evtevent, evtenabled FROM pg_event_trigger WHERE evtname LIKE 'waitlist%';
-- what stays allowed: storage and statistics settings, and triggers of
-- one's own on entries and offers
ALTER TABLE waitlist.transition SET (autovacuum_vacuum_scale_factor = 0.05);
ALTER TABLE waitlist.transition RESET (autovacuum_vacuum_scale_factor);
ALTER TABLE waitlist.entry ALTER COLUMN user_id SET STATISTICS 500;
CREATE FUNCTION pg_temp.noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER my_offer_trigger AFTER INSERT ON waitlist.offer
    FOR EACH ROW EXECUTE FUNCTION pg_temp.noop();
CREATE OR REPLACE TRIGGER my_offer_trigger AFTER INSERT ON waitlist.offer
    FOR EACH ROW EXECUTE FUNCTION pg_temp.noop();
DROP TRIGGER my_offer_trigger ON waitlist.offer;
CREATE OR REPLACE FUNCTION pg_temp.noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
-- and DDL elsewhere is none of its business
CREATE TABLE pg_temp.elsewhere (a int);
ALTER TABLE pg_temp.elsewhere DISABLE TRIGGER ALL;
DROP TABLE pg_temp.elsewhere;

DROP OWNED BY regress_waitlist_dba;
DROP ROLE regress_waitlist_dba;
