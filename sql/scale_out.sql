-- The scale-out functions on a single server, without Citus: they refuse,
-- and say what to do instead.
\set VERBOSITY default
SELECT waitlist.tables_distributed();
SELECT waitlist_distribute();
SELECT waitlist_distribute(8);
SELECT * FROM waitlist_cluster_worker_status();
-- the trigger that draws ids on a Citus node leaves a single server's ids
-- to the columns' defaults
SELECT waitlist_create_resource('single');
SELECT waitlist_join('single', 'fan-1') < 4503599627370496 AS drawn_by_the_default;
SELECT seq < 4503599627370496 AS placed_by_the_default FROM waitlist.entry WHERE user_id = 'fan-1';
