/*-------------------------------------------------------------------------
 *
 * api.h
 *	  The API frame and SPI helpers (layer 2): entering and leaving an API
 *	  call as the extension owner, kept plans, argument checks, the
 *	  per-resource locks, and running a booking function as its caller.
 *
 * IDENTIFICATION
 *	  src/api.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WAITLIST_API_H
#define WAITLIST_API_H

#include "datatype/timestamp.h"
#include "executor/spi.h"

#include "shmem.h"

/*
 * A statement prepared on first use and kept for the life of the backend.
 * Declared static in the file that runs it, so each SQL text sits beside the
 * code that depends on its shape.
 */
typedef struct WaitlistPlan
{
	const char *sql;
	int			nargs;
	Oid			argtypes[24];
	int			plan_mode;		/* WAITLIST_*_PLAN, 0: the plan cache decides */
	bool		node_scope;		/* on Citus: reads this node's shards only */
	SPIPlanPtr	plan;
	SPIPlanPtr	few_rows_plan;	/* custom plans: the generic one for few rows */
	bool		prepared_distributed;	/* prepared for Citus-distributed tables */
	char	   *prepared_sql;	/* the text prepared, if not sql; in TopMemoryContext */
	bool		time_parameters;	/* prepared with the clock as two more parameters */
	int			resource_parameter; /* 0: not known, 1: none, N + 1: $N */
	SPIPlanPtr *shard_plans;	/* on Citus: by local shard index */
	int			nshard_plans;
	uint64		shard_plans_generation;
} WaitlistPlan;

/*
 * For statements whose best plan depends on how many rows they handle
 * (promotions, settlements): a generic plan made for one row turns a burst
 * of 100,000 quadratic, so they are planned for each run's parameters...
 */
#define WAITLIST_CUSTOM_PLAN	1

/*
 * ...except the runs of a few rows (one release, one decline), for which
 * planning costs more than running: waitlist_execute_rows() runs those from
 * a second plan of the same text, planned once for any parameters, as
 * statements of this mode are always planned.
 */
#define WAITLIST_GENERIC_PLAN	2
#define WAITLIST_FEW_ROWS		16

/* shards.c: the statements on a Citus cluster */
extern bool waitlist_tables_distributed(void);
extern char *waitlist_node_scope_sql(const char *sql);
extern bool waitlist_resource_is_local(text *resource_id);
extern char *waitlist_time_parameters_sql(const char *sql, int nargs, bool *substituted);
extern SPIPlanPtr waitlist_shard_local_plan(WaitlistPlan *plan, Datum *values, const char *nulls,
											SPIPlanPtr (*prepare) (WaitlistPlan *plan, const char *sql));
extern SPIPlanPtr waitlist_shard_plan(WaitlistPlan *plan, int index,
									  SPIPlanPtr (*prepare) (WaitlistPlan *plan, const char *sql));
extern Oid	waitlist_logical_relation(Oid relid);
extern int	waitlist_shard_count(void);
extern int	waitlist_shard_index_of(text *key);
extern bool waitlist_shard_is_local(int index);
extern int	waitlist_node_route_keys(char ***keys);
extern int	waitlist_scope_to_shard(int index);
extern int	waitlist_execute_on_shard(WaitlistPlan *plan, int index, Datum *values,
									  const char *nulls);

/*
 * State of one API call: who called (recorded as the transition actor), and
 * the role and settings to restore.
 */
typedef struct WaitlistApiCall
{
	Oid			caller;
	int			caller_sec_context;
	int			guc_nestlevel;
	char	  **caller_settings;	/* caller's values of the pinned settings */
} WaitlistApiCall;

/* api.c */
extern void waitlist_api_begin(WaitlistApiCall *call);
extern void waitlist_api_end(WaitlistApiCall *call);
extern WaitlistApiCall *waitlist_current_call(void);
extern void waitlist_api_caller_settings(WaitlistApiCall *call);
extern void waitlist_api_reset_on_abort(SubTransactionId subxid);
extern void waitlist_api_booking(SubTransactionId subxid);
extern Name waitlist_role_name(Oid roleid);
extern int	waitlist_pin_search_path(void);
extern int	waitlist_pin_output_settings(void);
extern SPIPlanPtr waitlist_plan(WaitlistPlan *plan);
extern int	waitlist_execute(WaitlistPlan *plan, Datum *values, const char *nulls,
							 bool read_only, long count);
extern int	waitlist_execute_rows(WaitlistPlan *plan, int64 rows, Datum *values,
								  const char *nulls);
extern text *waitlist_spi_text(SPITupleTable *tuptable, uint64 row, int column);
extern void waitlist_spi_rows_to_tuplestore(FunctionCallInfo fcinfo);
extern void waitlist_check_not_null(FunctionCallInfo fcinfo, int argno, const char *argname);
extern text *waitlist_id_arg(FunctionCallInfo fcinfo, int argno, const char *argname);
extern Oid	waitlist_owner(void);
extern void waitlist_check_interval(Datum value, const char *name, const char *max,
									const char *positive_detail, const char *max_detail);
extern void waitlist_check_release_quantity(int64 quantity);
extern int	waitlist_flat_array(Datum array, Oid elemtype, const char *name,
							Datum **elems, bool **nulls);
extern void waitlist_check_archive_age(Interval *older_than);
extern void waitlist_lock_resource_gate(const text *resource_id, bool exclusive);
extern bool waitlist_try_lock_resource_gate(const text *resource_id);
extern bool waitlist_try_lock_resource_gate_shared(const text *resource_id);
extern void waitlist_unlock_resource_gate(const text *resource_id);
extern void waitlist_lock_resource_cap(const text *resource_id);
extern bool waitlist_try_lock_resource_sample(const text *resource_id);
extern void waitlist_require_read_committed(const char *what, const char *why);

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

#endif							/* WAITLIST_API_H */
