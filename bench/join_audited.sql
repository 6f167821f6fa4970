-- Scenario 1b baseline: what any implementation that writes the join's
-- audit row in the same statement must do at least: the bare INSERT of
-- join_baseline.sql plus one row into a table of waitlist.transition's
-- shape, in one plain SQL statement.
\set u random(1, 999999999999)
WITH ins AS (
  INSERT INTO bench.join_base (resource_id, user_id, rank_key) VALUES (:res, 'u' || :u, 0)
  ON CONFLICT DO NOTHING RETURNING entry_id
) INSERT INTO bench.join_audit (entity, entity_id, resource_id, from_state, to_state, reason, rule_version, actor)
SELECT 'entry', entry_id, :res, NULL, 'WAITING', 'joined', 'priority-fifo/1', current_user FROM ins;
