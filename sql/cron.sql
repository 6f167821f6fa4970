--
-- cron: scheduling the expiry sweep as the pg_cron job "waitlist-sweep"
--
-- Without pg_cron the functions fail with 55000 and a hint; with it,
-- waitlist_schedule_sweep() creates or replaces the one job and returns its
-- id, and waitlist_unschedule_sweep() removes it (false if there is none).
-- The job calls the sweep through the extension's schema, quoted, and runs
-- as the extension's owner.  (The server preloads pg_cron for this
-- database, see test/regress.conf.)
--
\set VERBOSITY sqlstate
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- a fresh install, and no pg_cron yet
DROP EXTENSION IF EXISTS waitlist CASCADE;
DROP EXTENSION IF EXISTS pg_cron;
DROP ROLE IF EXISTS regress_cron_app;
DROP ROLE IF EXISTS regress_cron_other;
CREATE EXTENSION waitlist;
RESET client_min_messages;

--
-- pg_cron not installed: 55000, with a hint
--
SELECT waitlist_schedule_sweep();
SELECT waitlist_unschedule_sweep();
\set VERBOSITY default
SELECT waitlist_schedule_sweep('*/5 * * * *');
\set VERBOSITY sqlstate

--
-- With pg_cron
--
CREATE EXTENSION pg_cron;
CREATE TEMP VIEW sweep_job AS
SELECT j.jobname, j.schedule, j.command, j.database = current_database() AS this_database,
       j.username = (SELECT pg_get_userbyid(n.nspowner) FROM pg_namespace n
                     WHERE n.nspname = 'waitlist') AS as_owner,
       j.active
FROM cron.job j ORDER BY j.jobid;

-- nothing to unschedule yet
SELECT waitlist_unschedule_sweep();
-- every minute by default
SELECT waitlist_schedule_sweep() AS jobid \gset
SELECT * FROM sweep_job;
SELECT jobid = :jobid AS returned_id FROM cron.job WHERE jobname = 'waitlist-sweep';
-- scheduling again replaces the job: the same one, with the new schedule
SELECT waitlist_schedule_sweep('*/5 * * * *') = :jobid AS same_job;
SELECT * FROM sweep_job;
-- an application role that may schedule the sweep needs no rights in
-- pg_cron, and the job still runs as the extension's owner, not as it
CREATE ROLE regress_cron_app;
GRANT EXECUTE ON FUNCTION waitlist_schedule_sweep(text), waitlist_unschedule_sweep()
    TO regress_cron_app;
SET ROLE regress_cron_app;
-- (it may not even read cron.job: 42501)
SELECT count(*) FROM cron.job;
SELECT waitlist_schedule_sweep('*/2 * * * *') = :jobid AS same_job;
RESET ROLE;
SELECT * FROM sweep_job;
SELECT waitlist_schedule_sweep('*/5 * * * *') = :jobid AS same_job;
-- the job's command runs
SELECT command AS sweep_command FROM cron.job WHERE jobname = 'waitlist-sweep' \gset
:sweep_command;
-- jobs of others are left alone
SELECT cron.schedule('someone-else', '0 3 * * *', 'SELECT 1') > 0 AS scheduled;
-- a NULL schedule is refused (22004)
SELECT waitlist_schedule_sweep(NULL);
SELECT * FROM sweep_job;
-- another role's job of the same name, in this database (pg_cron keys
-- names by role), is not ours: unscheduling leaves it alone
CREATE ROLE regress_cron_other LOGIN;
SELECT cron.schedule_in_database('waitlist-sweep', '0 4 * * *', 'SELECT 1',
                                 current_database(), 'regress_cron_other') > 0 AS scheduled;
-- unscheduling removes our job, once
SELECT waitlist_unschedule_sweep();
SELECT waitlist_unschedule_sweep();
SELECT * FROM sweep_job;
SELECT cron.unschedule('someone-else');
-- the owner's job of that name for another database, or running another
-- command here, is not ours either: scheduling refuses to take it over
-- (42710) and unscheduling leaves it alone
SELECT cron.schedule_in_database('waitlist-sweep', '0 5 * * *', 'SELECT public.waitlist_sweep()',
                                 'postgres') AS other_db_job \gset
SELECT waitlist_schedule_sweep();
SELECT waitlist_unschedule_sweep();
SELECT * FROM sweep_job;
\set VERBOSITY default
SELECT waitlist_schedule_sweep();
\set VERBOSITY sqlstate
SELECT cron.alter_job(:other_db_job, database := current_database(), command := 'SELECT 2');
SELECT waitlist_schedule_sweep();
SELECT waitlist_unschedule_sweep();
SELECT * FROM sweep_job;
SELECT cron.unschedule(:other_db_job);
SELECT cron.unschedule(jobid) FROM cron.job WHERE username = 'regress_cron_other';
-- with those gone, the sweep is scheduled and unscheduled as before
SELECT waitlist_schedule_sweep() > 0 AS scheduled;
SELECT waitlist_unschedule_sweep();
SELECT * FROM sweep_job;

--
-- The command names the schema the extension was created in, quoted
--
SET client_min_messages = warning;
DROP EXTENSION waitlist CASCADE;
RESET client_min_messages;
CREATE SCHEMA "Wait List";
CREATE EXTENSION waitlist SCHEMA "Wait List";
SELECT "Wait List".waitlist_schedule_sweep('0 * * * *') > 0 AS scheduled;
SELECT * FROM sweep_job;
SELECT command AS sweep_command FROM cron.job WHERE jobname = 'waitlist-sweep' \gset
:sweep_command;
SELECT "Wait List".waitlist_unschedule_sweep();

--
-- An error inside pg_cron surfaces as it is (22023 for a schedule pg_cron
-- cannot parse) and leaves the job as it was
--
SELECT "Wait List".waitlist_schedule_sweep('*/10 * * * *') > 0 AS scheduled;
SELECT "Wait List".waitlist_schedule_sweep('every minute');
SELECT * FROM sweep_job;
SELECT "Wait List".waitlist_unschedule_sweep();

-- leave no pg_cron behind, and waitlist where the other files expect it
SET client_min_messages = warning;
DROP VIEW sweep_job;
DROP EXTENSION waitlist CASCADE;
DROP SCHEMA "Wait List";
DROP EXTENSION pg_cron;
DROP OWNED BY regress_cron_app;
DROP ROLE regress_cron_app;
DROP ROLE regress_cron_other;
CREATE EXTENSION waitlist;
RESET client_min_messages;
