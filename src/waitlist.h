/*-------------------------------------------------------------------------
 *
 * waitlist.h
 *	  Declarations shared by the files of the waitlist extension.
 *
 * IDENTIFICATION
 *	  src/waitlist.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WAITLIST_H
#define WAITLIST_H

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/timestamp.h"

/* Bounds on caller-supplied values; see "Bad input" in docs/api.md. */
#define WAITLIST_MAX_ID_BYTES			200
#define WAITLIST_MAX_RELEASE_QUANTITY	1000000

/*
 * Bounds on resource settings, checked when they are set and by CHECK
 * constraints from 1.1 on.  Intervals are bounded so that no timestamp
 * arithmetic with them can leave the timestamp range.
 */
#define WAITLIST_MAX_SETTING_INTERVAL	"1 year"	/* offer_ttl, wave_interval */
#define WAITLIST_MAX_WAITING			INT64CONST(1000000000)
#define WAITLIST_MAX_WAVE_SIZE			1000000

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

/*
 * A statement prepared on first use and kept for the life of the backend.
 * Declared static in the file that runs it, so each SQL text sits beside the
 * code that depends on its shape.
 */
typedef struct WaitlistPlan
{
	const char *sql;
	int			nargs;
	Oid			argtypes[12];
	bool		custom_plan;	/* plan each run for its parameters and inputs */
	SPIPlanPtr	plan;
} WaitlistPlan;

/*
 * For statements whose best plan depends on how many rows they handle
 * (promotions, settlements, the audit trigger's transition tables): a
 * generic plan made for one row turns a burst of 100,000 quadratic.
 */
#define WAITLIST_CUSTOM_PLAN	true

/*
 * State of one API call: who called (recorded as the transition actor), the
 * role and settings to restore, and why the current statement changes states.
 */
typedef struct WaitlistApiCall
{
	Oid			caller;
	int			caller_sec_context;
	int			guc_nestlevel;
	char	  **caller_settings;	/* caller's values of the pinned settings */
	const char *reason;
} WaitlistApiCall;

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

/* shmem.c */
extern bool waitlist_am_worker;
extern void waitlist_shmem_init(void);
extern bool waitlist_defer_to_worker(void);
extern uint32 waitlist_resource_hash(const text *resource_id);
extern int	waitlist_resource_owner(const text *resource_id, int nworkers);
extern int	waitlist_running_worker_count(void);
extern void waitlist_wake_owner_at_commit(const text *resource_id);
extern void waitlist_wakes_at_xact_end(bool commit);
extern void waitlist_worker_attach(int index);
extern List *waitlist_worker_take_wakes(int index, bool *overflowed);
extern void waitlist_worker_round(int index);
extern void waitlist_worker_report(int index, int64 events, int64 offers,
								   int64 expired, const char *error);

/* api.c */
extern void waitlist_api_begin(WaitlistApiCall *call);
extern void waitlist_api_end(WaitlistApiCall *call);
extern WaitlistApiCall *waitlist_current_call(void);
extern void waitlist_api_caller_settings(WaitlistApiCall *call);
extern void waitlist_api_reset_on_abort(SubTransactionId subxid);
extern void waitlist_api_booking(SubTransactionId subxid);
extern SPIPlanPtr waitlist_plan(WaitlistPlan *plan);
extern int	waitlist_execute(WaitlistPlan *plan, Datum *values, const char *nulls,
							 bool read_only, long count, const char *reason);
extern text *waitlist_spi_text(SPITupleTable *tuptable, uint64 row, int column);
extern void waitlist_spi_rows_to_tuplestore(FunctionCallInfo fcinfo);
extern void waitlist_check_not_null(FunctionCallInfo fcinfo, int argno, const char *argname);
extern text *waitlist_id_arg(FunctionCallInfo fcinfo, int argno, const char *argname);
extern void waitlist_lock_resource_gate(const text *resource_id, bool exclusive);
extern bool waitlist_try_lock_resource_gate(const text *resource_id);
extern bool waitlist_try_lock_resource_gate_shared(const text *resource_id);
extern void waitlist_unlock_resource_gate(const text *resource_id);
extern void waitlist_lock_resource_cap(const text *resource_id);
extern void waitlist_require_read_committed(const char *what);

/* resource.c */
typedef struct WaitlistResource
{
	int64		free_units;
	bool		max_waiting_isnull;
	int64		max_waiting;
	Oid			booking_function;
	int32		wave_budget;	/* -1: no waves */
	bool		new_wave;		/* promoting now starts a new wave */
} WaitlistResource;

extern void waitlist_lock_resource(text *resource_id, WaitlistResource *res);
extern bool waitlist_try_lock_resource(text *resource_id, WaitlistResource *res);
extern void waitlist_read_resource(text *resource_id, WaitlistResource *res);
extern bool waitlist_read_resource_ext(text *resource_id, WaitlistResource *res,
									  bool missing_ok);
extern void waitlist_give_back_units(text *resource_id, int64 units);
extern void waitlist_resource_not_found(text *resource_id) pg_attribute_noreturn();
extern int64 waitlist_count_owned_resources(int index, int nworkers);
extern void waitlist_check_channels(Datum channels);

/* promote.c */
extern int64 waitlist_promote_locked(text *resource_id, int64 max_offers,
									 const WaitlistResource *locked);
extern void waitlist_promote_if_free(text *resource_id);
extern void waitlist_promote_after_failed_booking(text *resource_id);
extern void waitlist_promote_added_units(text *resource_id);
extern int64 waitlist_fold_and_promote(text *resource_id, int64 *offers,
										bool wait_for_gate);
extern PGDLLIMPORT WaitlistPlan waitlist_idle_resources_plan;
extern int64 waitlist_promote_idle(int32 max_resources);
extern int64 waitlist_fold_pending(int32 max_resources);

extern bool waitlist_release_units(text *resource_id, int32 quantity, text *event_id,
								   bool missing_ok);
extern void waitlist_check_release_quantity(int64 quantity);

/* offer.c */
extern bool waitlist_revoke_offer_of_entry(text *resource_id, int64 entry_id);
extern int64 waitlist_expire_due(int64 max_offers, int owner, int nworkers);

/* outbox.c */
extern void waitlist_outbox_written(void);
extern void waitlist_outbox_at_pre_commit(void);
extern void waitlist_outbox_at_xact_end(void);

/* archive.c */
extern void waitlist_check_archive_age(Interval *older_than);

/* transition.c */
extern int64 waitlist_move_transitions(WaitlistPlan *plan, Datum *values, const char *nulls);

/* booking.c */
typedef enum WaitlistBookingOutcome
{
	WAITLIST_BOOKED,
	WAITLIST_BOOKING_CONFLICT
} WaitlistBookingOutcome;

extern WaitlistBookingOutcome waitlist_call_booking(Oid funcid, text *resource_id,
													text *user_id, int64 offer_id,
													text *idempotency_key,
													char **reservation_ref,
													char **conflict_message);

#endif							/* WAITLIST_H */
