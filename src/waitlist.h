/*-------------------------------------------------------------------------
 *
 * waitlist.h
 *	  The base of every layer (layer 0): bounds, SQLSTATEs, the settings
 *	  and the SQL fragments all layers share.  Declares no function.
 *
 * The layers, each with its header, each including only those below:
 *	  shmem.h	shared memory: worker slots, wake-ups, the resource hash (no SPI)
 *	  api.h		the API frame, SPI helpers, per-resource locks, booking calls
 *	  store.h	data access: resource rows, offer token keys, booking reports
 *	  engine.h	the transition engine and promotion
 * and the SQL entry points and the worker, which no header declares.
 *
 * IDENTIFICATION
 *	  src/waitlist.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WAITLIST_H
#define WAITLIST_H

#include "fmgr.h"

/* Bounds on caller-supplied values; see "Bad input" in docs/api.md. */
#define WAITLIST_MAX_ID_BYTES			200
#define WAITLIST_MAX_RELEASE_QUANTITY	1000000
/* the longest signed offer token (src/token.c), in characters */
#define WAITLIST_TOKEN_MAX_CHARS		400

/*
 * Bounds on resource settings, checked when they are set and by CHECK
 * constraints from 1.1 on.  Intervals are bounded so that no timestamp
 * arithmetic with them can leave the timestamp range.
 */
#define WAITLIST_MAX_SETTING_INTERVAL	"1 year"	/* offer_ttl, wave_interval, ... */
#define WAITLIST_MAX_WAITING			INT64CONST(1000000000)
#define WAITLIST_MAX_WAVE_SIZE			1000000
/* the largest party a resource may take, and the most fans a unit is offered to at once */
#define WAITLIST_MAX_PARTY_SIZE			1000
#define WAITLIST_MAX_OFFER_FANOUT		50
#define WAITLIST_MAX_BOOKING_ATTEMPTS	100
#define WAITLIST_MIN_JOIN_RATE			0.000001	/* joins per second */
#define WAITLIST_MAX_JOIN_RATE			1000000.0
#define WAITLIST_MAX_JOIN_BURST			1000000

/* waitlist_archive() leaves rows younger than this alone (see api.c) */
#define WAITLIST_MIN_ARCHIVE_AGE_SECS	3600

/*
 * When a resource's current wave ends, as SQL over its row (alias "r").
 * Clamped, as the settings are bounded, so that a row whatever its values
 * (a 1.0 row not yet updated, one written by hand) cannot make the
 * statement fail for every resource: a wave starts no later than now and
 * lasts at most the longest wave_interval allowed.  NULL without a wave.
 */
#define WAITLIST_WAVE_END_SQL \
	"(CASE WHEN r.wave_started_at OPERATOR(pg_catalog.>) pg_catalog.now() THEN pg_catalog.now()" \
	"      ELSE r.wave_started_at END" \
	" OPERATOR(pg_catalog.+)" \
	" CASE WHEN r.wave_interval OPERATOR(pg_catalog.>) interval '" WAITLIST_MAX_SETTING_INTERVAL "'" \
	"        THEN interval '" WAITLIST_MAX_SETTING_INTERVAL "' ELSE r.wave_interval END)"

/* Version of the ordering and offer rules, recorded on every transition. */
#define WAITLIST_RULE_VERSION	"priority-fifo/1"

/*
 * SQLSTATEs of our own, class "WL" (documented in docs/api.md).  Standard codes
 * are used wherever one fits.
 */
#define ERRCODE_WAITLIST_FULL			MAKE_SQLSTATE('W','L','0','0','1')
#define ERRCODE_WAITLIST_OFFER_EXPIRED	MAKE_SQLSTATE('W','L','0','0','2')
#define ERRCODE_WAITLIST_OFFER_NOT_OPEN	MAKE_SQLSTATE('W','L','0','0','3')
#define ERRCODE_WAITLIST_SEAT_CONFLICT	MAKE_SQLSTATE('W','L','0','0','4')
#define ERRCODE_WAITLIST_STALE_LEASE	MAKE_SQLSTATE('W','L','0','0','5')
#define ERRCODE_WAITLIST_REENTERED		MAKE_SQLSTATE('W','L','0','0','6')
#define ERRCODE_WAITLIST_ISOLATION_LEVEL	MAKE_SQLSTATE('W','L','0','0','9')
#define ERRCODE_WAITLIST_ILLEGAL_TRANSITION	MAKE_SQLSTATE('W','L','0','1','0')
#define ERRCODE_WAITLIST_TOKEN_MALFORMED	MAKE_SQLSTATE('W','L','0','1','1')
#define ERRCODE_WAITLIST_TOKEN_INVALID	MAKE_SQLSTATE('W','L','0','1','2')
#define ERRCODE_WAITLIST_TOKEN_EXPIRED	MAKE_SQLSTATE('W','L','0','1','3')
#define ERRCODE_WAITLIST_TOKEN_NO_OFFER	MAKE_SQLSTATE('W','L','0','1','4')
#define ERRCODE_WAITLIST_LATE_CONFIRMATION	MAKE_SQLSTATE('W','L','0','1','5')
#define ERRCODE_WAITLIST_DUPLICATE_BOOKING	MAKE_SQLSTATE('W','L','0','1','6')
#define ERRCODE_WAITLIST_EXTENSION_LIMIT	MAKE_SQLSTATE('W','L','0','1','7')
#define ERRCODE_WAITLIST_JOIN_RATE	MAKE_SQLSTATE('W','L','0','1','8')
#define ERRCODE_WAITLIST_CLOSED		MAKE_SQLSTATE('W','L','0','1','9')

/* waitlist.c: settings */
#define WAITLIST_MAX_WORKERS	32
#define WAITLIST_PROMOTION_INLINE	0
#define WAITLIST_PROMOTION_WORKER	1

extern char *waitlist_database;
extern int	waitlist_worker_count;
extern int	waitlist_naptime_ms;
extern int	waitlist_promotion_mode;
extern int	waitlist_max_event_attempts;
extern int	waitlist_event_retry_base_ms;
extern char *waitlist_notify_channel;
extern int	waitlist_outbox_max_attempts;
extern int	waitlist_outbox_retry_base_ms;

/*
 * The one retry policy, of failed capacity events and failed deliveries
 * alike: the next attempt after base_ms (an SQL expression in
 * milliseconds) times 2^attempts, with a jitter of +-jitter (a fraction,
 * as a numeric literal) so that a burst of failures does not come back as
 * a burst, and at most cap (an interval literal).  The jitter is drawn from
 * a hash of the row's key (a text expression) and its attempt, not from
 * random(): Citus refuses volatile functions in an UPDATE of a distributed
 * table, and rows failing together still spread out.  Events are retried with
 * little jitter, to a schedule an operator can predict; deliveries with
 * much, as many fail together when a provider is down.  Over a column "attempts" of
 * the row being retried.
 */
#define WAITLIST_BACKOFF_SQL(base_ms, cap, jitter, key) \
	"LEAST(interval '1 millisecond' OPERATOR(pg_catalog.*) " base_ms \
	"        OPERATOR(pg_catalog.*) (2 OPERATOR(pg_catalog.^) LEAST(attempts, 30))" \
	"        OPERATOR(pg_catalog.*) ((1 OPERATOR(pg_catalog.-) " jitter ")" \
	"          OPERATOR(pg_catalog.+) (((pg_catalog.hashtextextended(" key ", attempts) OPERATOR(pg_catalog.&) 65535)::pg_catalog.float8" \
	"              OPERATOR(pg_catalog./) 65535) OPERATOR(pg_catalog.*) (2 OPERATOR(pg_catalog.*) " jitter ")))," \
	"      interval '" cap "')"

#endif							/* WAITLIST_H */
