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


/* ---- gate protocol and isolation levels ---- */

