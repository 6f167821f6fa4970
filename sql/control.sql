--
-- control: where the extension can be created and moved (waitlist.control)
--
-- The API goes in the schema CREATE EXTENSION names, the tables always in
-- schema "waitlist"; the extension is not relocatable.  Runs in a database
-- of its own, so that the extension can be created and refused at will.
--
\set VERBOSITY sqlstate
\set SHOW_CONTEXT never
CREATE DATABASE regress_waitlist_control;
\c regress_waitlist_control

-- the SQLSTATE and message of a statement, which VERBOSITY sqlstate hides
CREATE FUNCTION pg_temp.error_of(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END;
$$;

-- schema "waitlist" is the tables' and cannot hold the API too; the install
-- script says so and leaves nothing behind
CREATE SCHEMA waitlist;
SELECT pg_temp.error_of('CREATE EXTENSION waitlist SCHEMA waitlist');
SELECT count(*) AS installed FROM pg_extension WHERE extname = 'waitlist';
DROP SCHEMA waitlist;

-- a 1.0 database with the API in a schema of its own updates in place:
-- the functions 1.1 adds join the others there, the tables stay in waitlist
CREATE SCHEMA api;
CREATE EXTENSION waitlist VERSION '1.0' SCHEMA api;
SELECT api.waitlist_create_resource('control-1');
SELECT api.waitlist_join('control-1', 'fan') > 0 AS joined;
ALTER EXTENSION waitlist UPDATE;
SELECT n.nspname AS api_schema, e.extversion, e.extrelocatable
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'waitlist';
SELECT p.pronamespace::regnamespace AS schema, count(*) > 0 AS has_functions
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'waitlist')
GROUP BY 1 ORDER BY 1::text;
SELECT count(*) AS api_functions_outside_api
FROM pg_proc p WHERE p.proname LIKE 'waitlist\_%' AND p.pronamespace <> 'api'::regnamespace;
SELECT count(*) AS relations_in_api FROM pg_class WHERE relnamespace = 'api'::regnamespace;
SELECT api.waitlist_release('control-1', 1, 'ev-1');
SELECT waiting, open_offers FROM waitlist.resource_stats;
SELECT count(*) AS violations FROM api.waitlist_check();

-- not relocatable: the tables could not follow the API
SELECT pg_temp.error_of('ALTER EXTENSION waitlist SET SCHEMA public');

\c contrib_regression
DROP DATABASE regress_waitlist_control;
