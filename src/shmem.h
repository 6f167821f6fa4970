/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  Shared memory (layer 1): the workers' slots and counters, the wake-up
 *	  queues that committing transactions fill, the buckets of join rate
 *	  limits, and the one hash of a resource id.  Runs no SQL.
 *
 * IDENTIFICATION
 *	  src/shmem.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WAITLIST_SHMEM_H
#define WAITLIST_SHMEM_H

#include "nodes/pg_list.h"
#include "utils/timestamp.h"

#include "waitlist.h"

/* A worker's counters, kept in its slot; what waitlist_worker_status() shows. */
typedef struct WaitlistWorkerStats
{
	pid_t		pid;			/* 0 while not running */
	TimestampTz last_wake;
	int64		rounds;			/* times the worker looked for work */
	int64		events_processed;
	int64		offers_made;
	int64		offers_expired;
	TimestampTz last_error_at;
	char		last_error[256];
} WaitlistWorkerStats;

/* How a join fares against its resource's rate limit. */
typedef enum WaitlistJoinAdmission
{
	WAITLIST_JOIN_ADMITTED,
	WAITLIST_JOIN_REFUSED,
	WAITLIST_JOIN_UNKNOWN		/* the rate must be read first */
} WaitlistJoinAdmission;

extern bool waitlist_am_worker;
extern void waitlist_shmem_init(void);
extern void waitlist_require_shared(void);
extern bool waitlist_defer_to_worker(void);
extern uint32 waitlist_resource_hash(const text *resource_id);
extern int	waitlist_resource_owner(const text *resource_id, int nworkers);
extern int	waitlist_running_worker_count(void);
extern void waitlist_worker_stats(int index, WaitlistWorkerStats *stats);
extern void waitlist_wake_owner_at_commit(const text *resource_id);
extern void waitlist_wakes_at_xact_end(bool commit);
extern void waitlist_worker_attach(int index);
extern List *waitlist_worker_take_wakes(int index, bool *overflowed);
extern void waitlist_worker_round(int index);
extern void waitlist_worker_report(int index, int64 events, int64 offers,
								   int64 expired, const char *error);
extern bool waitlist_join_limits_available(void);
extern WaitlistJoinAdmission waitlist_take_join_token(uint32 hash, int64 *retry_ms);
extern void waitlist_return_join_token(uint32 hash);
extern void waitlist_learn_join_rate(uint32 hash, double rate, int32 burst);
extern void waitlist_forget_join_rate_at_commit(uint32 hash);
extern void waitlist_join_rates_at_xact_end(bool commit);

#endif							/* WAITLIST_SHMEM_H */
