/*-------------------------------------------------------------------------
 *
 * store.h
 *	  Data access (layer 3): reading and locking a resource's row, whose
 *	  lock serializes everything that changes its free units; the keys that
 *	  sign offer tokens; refused booking reports recorded in a transaction
 *	  of their own.
 *
 * IDENTIFICATION
 *	  src/store.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WAITLIST_STORE_H
#define WAITLIST_STORE_H

#include "api.h"

typedef struct WaitlistResource
{
	int64		free_units;
	bool		max_waiting_isnull;
	int64		max_waiting;
	Oid			booking_function;
	int32		wave_budget;	/* -1: no waves */
	bool		new_wave;		/* promoting now starts a new wave */
	bool		closing;		/* past (or too near) offers_close_at: no offers */
	bool		strict_parties; /* the head of the line waits for its party to fit */
	int32		offer_fanout;	/* fans each free unit is offered to at once */
} WaitlistResource;

extern void waitlist_lock_resource(text *resource_id, WaitlistResource *res);
extern bool waitlist_lock_resource_ext(text *resource_id, WaitlistResource *res,
									  bool missing_ok);
extern bool waitlist_try_lock_resource(text *resource_id, WaitlistResource *res);
extern void waitlist_read_resource(text *resource_id, WaitlistResource *res);
extern bool waitlist_read_resource_ext(text *resource_id, WaitlistResource *res,
									  bool missing_ok);
extern void waitlist_resource_not_found(text *resource_id) pg_attribute_noreturn();
extern int64 waitlist_count_owned_resources(int index, int nworkers);
extern void waitlist_check_channels(Datum channels, bool with_booking);
extern bool waitlist_schema_is_1_1(void);
extern void waitlist_require_schema_1_1(const char *what);

/* autonomous.c: refused booking reports, recorded all the same */
extern bool waitlist_record_booking_report(text *resource_id, int64 offer_id,
										   const char *event_type,
										   const char *reservation_ref, const char *detail);

/* token.c: signed offer tokens and their keys */
extern bytea *waitlist_new_token_key(void);
extern void waitlist_forget_token_key(void);
extern void waitlist_sign_offer_token(text *resource_id, int64 offer_id,
									  TimestampTz expires_at, char *dst);
extern int64 waitlist_verify_offer_token(text *token, text **resource_id);
extern int32 waitlist_rotate_token_keys(void);

/* forward.c: a call for a resource another Citus node holds goes there */
typedef enum WaitlistRoute
{
	WAITLIST_ROUTE_RESOURCE,	/* the argument is the resource_id */
	WAITLIST_ROUTE_ENTRY,		/* an entry id */
	WAITLIST_ROUTE_OFFER,		/* an offer id */
	WAITLIST_ROUTE_OUTBOX,		/* an outbox row id */
	WAITLIST_ROUTE_TOKEN		/* a signed offer token */
} WaitlistRoute;

extern bool waitlist_forwarded(FunctionCallInfo fcinfo, WaitlistRoute route, int argno,
							   Datum *result);
extern text *waitlist_outbox_row_resource(int64 outbox_id);
extern bool waitlist_fanned_out(FunctionCallInfo fcinfo, List **answers);
extern int64 waitlist_sum_of_answers(List *answers);
extern void waitlist_forwarded_call_begins(void);
extern void waitlist_forwarded_call_ends(void);

/* first in an entry point: return what the resource's node answered */
#define WAITLIST_FORWARD(route, argno) \
	do { \
		Datum		forwarded_result_; \
		if (waitlist_forwarded(fcinfo, (route), (argno), &forwarded_result_)) \
			return forwarded_result_; \
	} while (0)

#endif							/* WAITLIST_STORE_H */
