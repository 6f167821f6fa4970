/* waitlist--1.0--1.1.sql: upgrade the waitlist extension from 1.0 to 1.1 */

\echo Use "ALTER EXTENSION waitlist UPDATE TO '1.1'" to load this file. \quit

/*
 * There is no full waitlist--1.1.sql: CREATE EXTENSION runs the frozen 1.0
 * script and then this one, so a fresh 1.1 and an updated 1.0 are built by
 * the same statements (as contrib/pg_stat_statements does).  Everything
 * here must therefore also work on a populated 1.0 database.
 */

/* ---- security: the owner frame, re-entry, the audit trail ---- */


/* ---- backups: tables and sequences that pg_dump must keep ---- */


/* ---- settings: bounds checked when a value is set ---- */


/* ---- outbox: claims fair across channels ---- */


/* ---- capacity trigger ---- */


/* ---- pg_cron scheduling ---- */


/* ---- promotion workers and capacity events ---- */

-- the rounds counter: how often each worker looked for work (a worker that
-- spins shows it here).  A new OUT column needs the function recreated; the
-- EXECUTE grants a DBA gave on it (to a monitoring role, say) are kept.
DO $upgrade$
DECLARE
    grantees oid[];
    g oid;
BEGIN
    SELECT pg_catalog.array_agg(a.grantee) INTO grantees
      FROM pg_catalog.pg_proc p, LATERAL pg_catalog.aclexplode(p.proacl) a
     WHERE p.oid OPERATOR(pg_catalog.=) '@extschema@.waitlist_worker_status()'::pg_catalog.regprocedure
       AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
       AND a.grantee OPERATOR(pg_catalog.<>) p.proowner;

    DROP FUNCTION @extschema@.waitlist_worker_status();
    CREATE FUNCTION @extschema@.waitlist_worker_status(OUT worker integer,
                                           OUT pid integer,
                                           OUT resources_owned bigint,
                                           OUT last_wake timestamptz,
                                           OUT events_processed bigint,
                                           OUT offers_made bigint,
                                           OUT offers_expired bigint,
                                           OUT last_error text,
                                           OUT last_error_at timestamptz,
                                           OUT rounds bigint)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'waitlist_worker_status'
    LANGUAGE C;
    COMMENT ON FUNCTION @extschema@.waitlist_worker_status() IS 'one row per promotion worker: pid, share, last wake-up and counters';
    REVOKE ALL ON FUNCTION @extschema@.waitlist_worker_status() FROM PUBLIC;

    FOREACH g IN ARRAY COALESCE(grantees, '{}') LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION @extschema@.waitlist_worker_status() TO %s',
            CASE WHEN g OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                 ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g)) END);
    END LOOP;
END
$upgrade$;


/* ---- gate protocol and isolation levels ---- */

