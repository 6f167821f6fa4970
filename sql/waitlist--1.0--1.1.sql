/* waitlist--1.0--1.1.sql: upgrade the waitlist extension from 1.0 to 1.1 */

\echo Use "ALTER EXTENSION waitlist UPDATE TO '1.1'" to load this file. \quit

/*
 * There is no full waitlist--1.1.sql: CREATE EXTENSION runs the frozen 1.0
 * script and then this one, so a fresh 1.1 and an updated 1.0 are built by
 * the same statements (as contrib/pg_stat_statements does).  Everything
 * here must therefore also work on a populated 1.0 database.
 */

/* ---- security: the owner frame, re-entry, the audit trail ---- */

/*
 * The audit trail's triggers fire whatever session_replication_role says;
 * record_transitions() itself skips a superuser's replica-mode changes made
 * outside the API (restores, replication apply), whose rows bring their
 * trail with them.
 */
ALTER TABLE waitlist.transition ENABLE ALWAYS TRIGGER transition_no_update_delete;
ALTER TABLE waitlist.transition ENABLE ALWAYS TRIGGER transition_no_truncate;
ALTER TABLE waitlist.entry ENABLE ALWAYS TRIGGER entry_insert_audit;
ALTER TABLE waitlist.entry ENABLE ALWAYS TRIGGER entry_update_audit;
ALTER TABLE waitlist.offer ENABLE ALWAYS TRIGGER offer_insert_audit;
ALTER TABLE waitlist.offer ENABLE ALWAYS TRIGGER offer_update_audit;

/* Rows of the log come from record_transitions() (or a superuser's restore). */
CREATE FUNCTION waitlist.transition_insert_guard()
RETURNS trigger
AS 'MODULE_PATHNAME', 'waitlist_transition_insert_guard'
LANGUAGE C;

CREATE TRIGGER transition_insert_guard
    BEFORE INSERT ON waitlist.transition
    FOR EACH STATEMENT EXECUTE FUNCTION waitlist.transition_insert_guard();
ALTER TABLE waitlist.transition ENABLE ALWAYS TRIGGER transition_insert_guard;

/*
 * DDL that would switch the guards off or rewrite the log is refused before
 * it runs, from any role, except in this extension's own scripts.
 */
CREATE FUNCTION waitlist.audit_ddl_guard()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'waitlist_audit_ddl_guard'
LANGUAGE C;

CREATE EVENT TRIGGER waitlist_audit_ddl_guard ON ddl_command_start
    EXECUTE FUNCTION waitlist.audit_ddl_guard();
ALTER EVENT TRIGGER waitlist_audit_ddl_guard ENABLE ALWAYS;

REVOKE ALL ON FUNCTION waitlist.transition_insert_guard() FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist.audit_ddl_guard() FROM PUBLIC;

/* ---- backups: tables and sequences that pg_dump must keep ---- */


/* ---- settings: bounds checked when a value is set ---- */


/* ---- outbox: claims fair across channels ---- */


/* ---- capacity trigger ---- */


/* ---- pg_cron scheduling ---- */


/* ---- promotion workers and capacity events ---- */


/* ---- gate protocol and isolation levels ---- */

