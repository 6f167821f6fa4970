--
-- state_machine: one table of transitions (waitlist.state_machine()) that
-- the engine applies and that every change, by the API or by hand, must
-- follow; a move it does not have is refused with WL010 and changes nothing
--
\set VERBOSITY sqlstate
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS waitlist CASCADE;
CREATE EXTENSION waitlist;
DROP ROLE IF EXISTS regress_waitlist_trigger;
RESET client_min_messages;

SELECT * FROM waitlist.state_machine();

-- every state the tables allow is reached by some transition, and every
-- rule leaves from a state some rule reaches
SELECT s.state AS unreachable_entry_state
FROM unnest(ARRAY['PENDING', 'WAITING', 'OFFERED', 'ACCEPTED', 'DECLINED', 'EXPIRED', 'CANCELLED']) s(state)
WHERE NOT EXISTS (SELECT 1 FROM waitlist.state_machine() m
                  WHERE m.entity = 'entry' AND m.to_state = s.state);
SELECT s.state AS unreachable_offer_state
FROM unnest(ARRAY['OPEN', 'ACCEPTING', 'ACCEPTED', 'DECLINED', 'EXPIRED', 'REVOKED', 'FAILED']) s(state)
WHERE NOT EXISTS (SELECT 1 FROM waitlist.state_machine() m
                  WHERE m.entity = 'offer' AND m.to_state = s.state);
SELECT m.entity, m.from_state AS dangling_from
FROM waitlist.state_machine() m
WHERE m.from_state IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM waitlist.state_machine() n
                  WHERE n.entity = m.entity AND n.to_state = m.from_state);

CREATE TEMP VIEW trail AS
SELECT t.entity, t.from_state, t.to_state, t.reason
FROM waitlist.transition t WHERE t.resource_id = 'sm' ORDER BY t.transition_id;

SELECT waitlist_create_resource('sm', '15 minutes');
SELECT waitlist_join('sm', 'ann') AS ann \gset
SELECT waitlist_join('sm', 'ben') AS ben \gset
SELECT waitlist_join('sm', 'cat') AS cat \gset
SELECT waitlist_join('sm', 'dan') AS dan \gset
SELECT waitlist_release('sm', 2, 'ev-1');
SELECT offer_id AS ann_offer FROM waitlist.offer WHERE entry_id = :ann \gset
SELECT offer_id AS ben_offer FROM waitlist.offer WHERE entry_id = :ben \gset
SELECT state FROM waitlist_accept(:ann_offer, 'k1');
SELECT waitlist_decline(:ben_offer);
-- each change of the API wrote exactly its own rows, in order: one per
-- entry and offer moved, nothing twice
SELECT * FROM trail;

--
-- Moves the state machine does not have are refused, by hand too, even
-- for a superuser: nothing changes and nothing is logged
--
SELECT count(*) AS transitions FROM waitlist.transition \gset
-- expect WL010: an accepted fan put back in line
UPDATE waitlist.entry SET state = 'WAITING' WHERE entry_id = :ann;
-- expect WL010: a waiting fan cannot decline without an offer
UPDATE waitlist.entry SET state = 'DECLINED' WHERE entry_id = :dan;
-- expect WL010: a settled offer reopened
UPDATE waitlist.offer SET state = 'OPEN', decided_at = NULL WHERE offer_id = :ben_offer;
-- expect WL010: one bad row stops the whole statement
UPDATE waitlist.entry SET state = 'CANCELLED' WHERE resource_id = 'sm';
-- expect WL010: rows are created in their first state only
INSERT INTO waitlist.entry (resource_id, user_id, state) VALUES ('sm', 'eve', 'OFFERED');
INSERT INTO waitlist.offer (entry_id, resource_id, user_id, state, expires_at, decided_at)
VALUES (:dan, 'sm', 'dan', 'ACCEPTED', now(), now());
\set VERBOSITY default
UPDATE waitlist.entry SET state = 'WAITING' WHERE entry_id = :ann;
\set VERBOSITY sqlstate
SELECT count(*) - :transitions AS new_transitions FROM waitlist.transition;
SELECT user_id, state FROM waitlist.entry WHERE resource_id = 'sm' ORDER BY entry_id;
SELECT state FROM waitlist.offer WHERE offer_id = :ben_offer;

-- a move it has is made, and audited as manual
UPDATE waitlist.entry SET state = 'CANCELLED' WHERE entry_id = :dan;
SELECT * FROM trail WHERE reason = 'manual';

--
-- A trigger on an entry or offer runs inside the engine's statements, as
-- the extension owner: only a superuser may create one (42501), whatever
-- privileges a role was granted
--
CREATE ROLE regress_waitlist_trigger;
GRANT USAGE ON SCHEMA waitlist TO regress_waitlist_trigger;
GRANT TRIGGER ON waitlist.entry, waitlist.offer TO regress_waitlist_trigger;
SET ROLE regress_waitlist_trigger;
CREATE FUNCTION pg_temp.as_owner() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
\set VERBOSITY terse
CREATE TRIGGER as_owner AFTER INSERT ON waitlist.offer
    FOR EACH ROW EXECUTE FUNCTION pg_temp.as_owner();
\set VERBOSITY sqlstate
CREATE TRIGGER as_owner BEFORE UPDATE ON waitlist.entry
    FOR EACH ROW EXECUTE FUNCTION pg_temp.as_owner();
RESET ROLE;
SELECT count(*) AS their_triggers FROM pg_trigger
WHERE tgrelid IN ('waitlist.entry'::regclass, 'waitlist.offer'::regclass) AND tgname = 'as_owner';
DROP OWNED BY regress_waitlist_trigger;
DROP ROLE regress_waitlist_trigger;
