-- bench/load.sql: the bulk loaders of bench/run, in the schema "bench" (run
-- by bench/setup.sql, and alone in the databases of scenario 10).  As a
-- superuser.
--
-- Lines of fans are loaded the way a data-only restore loads: with
-- session_replication_role = replica, so the extension's checks and audit
-- of a change made by hand (which run row by row) leave the rows alone, and
-- the audit trail is written here, set-based, as the API would have written
-- it: one WAITING transition per entry, reason "joined", in line order.
-- waitlist_check() finds the trail complete.

CREATE SCHEMA IF NOT EXISTS bench;

-- Fans per_resource fans in line for each resource of the array, in one
-- statement: user ids w1 .. wN, the line interleaved across the resources
-- (fan g of every resource before fan g + 1 of any).  Returns the number
-- of entries.
CREATE FUNCTION bench.load_waiting(resources text[], per_resource integer)
RETURNS bigint LANGUAGE sql
SET session_replication_role = replica
AS $$
    WITH ins AS (
        INSERT INTO waitlist.entry (resource_id, user_id, rank_key)
        SELECT r.resource_id, 'w' || g, 0
        FROM generate_series(1, per_resource) g,
             unnest(resources) WITH ORDINALITY r(resource_id, k)
        ORDER BY g, r.k
        RETURNING entry_id, resource_id, state, priority, seq, joined_at),
    trail AS (
        INSERT INTO waitlist.transition (entity, entity_id, resource_id, from_state, to_state,
                                         reason, rule_version, actor, at)
        SELECT 'entry', i.entry_id, i.resource_id, NULL, i.state, 'joined', 'priority-fifo/1',
               current_user, i.joined_at
        FROM ins i
        ORDER BY i.priority DESC, i.seq
        RETURNING 1)
    SELECT count(*) FROM trail
$$;

-- Put n fans in line for one resource.  Much faster than n calls of
-- waitlist_join.
CREATE FUNCTION bench.add_waiting(resource text, n integer)
RETURNS bigint LANGUAGE sql AS $$
    SELECT bench.load_waiting(ARRAY[resource], n)
$$;

-- Resources prefix-1 .. prefix-nres, each with per fans waiting.
CREATE FUNCTION bench.add_resources(prefix text, nres integer, per integer,
                                    ttl interval DEFAULT '1 day')
RETURNS bigint LANGUAGE sql AS $$
    SELECT count(waitlist_create_resource(prefix || '-' || r, ttl))
    FROM generate_series(1, nres) r;
    SELECT bench.load_waiting(ARRAY(SELECT prefix || '-' || r FROM generate_series(1, nres) r), per)
$$;
