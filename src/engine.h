/*-------------------------------------------------------------------------
 *
 * engine.h
 *	  The transition engine and promotion (layer 4): the state machine of
 *	  entries and offers, the statements that apply it with their audit and
 *	  outbox rows, and the promotion of free units.
 *
 * Depends on store.h, api.h and shmem.h; only the SQL entry points and the
 * worker (layer 5) include it.
 *
 * IDENTIFICATION
 *	  src/engine.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WAITLIST_ENGINE_H
#define WAITLIST_ENGINE_H

#include "store.h"

/* --- the state machine (transition.c) ------------------------------------ */

typedef enum WaitlistEntity
{
	WAITLIST_ENTITY_ENTRY,
	WAITLIST_ENTITY_OFFER
} WaitlistEntity;

/* What happens to a fan or an offer; each names one or two rules. */
typedef enum WaitlistEvent
{
	WAITLIST_EVENT_JOIN,
	WAITLIST_EVENT_PROMOTE,
	WAITLIST_EVENT_LEAVE,
	WAITLIST_EVENT_ACCEPT,
	WAITLIST_EVENT_BOOKING_CONFLICT,
	WAITLIST_EVENT_DECLINE,
	WAITLIST_EVENT_EXPIRE,
	WAITLIST_EVENT_REVOKE,
	/* the accept saga of an external booking service */
	WAITLIST_EVENT_REQUEST_BOOKING,
	WAITLIST_EVENT_BOOKING_RETRY,
	WAITLIST_EVENT_BOOKING_CONFIRMED,
	WAITLIST_EVENT_BOOKING_FAILED,
	WAITLIST_EVENT_BOOKING_EXHAUSTED,
	/* more time to answer */
	WAITLIST_EVENT_EXTEND,
	/* places that count once confirmed */
	WAITLIST_EVENT_JOIN_UNCONFIRMED,
	WAITLIST_EVENT_CONFIRM,
	WAITLIST_EVENT_LEAVE_UNCONFIRMED,
	WAITLIST_EVENT_EXPIRE_UNCONFIRMED,
	/* the offer cutoff: the line closes */
	WAITLIST_EVENT_CLOSE,
	WAITLIST_EVENT_CLOSE_UNCONFIRMED,
	/* a fanned-out unit was taken: its other offers are withdrawn */
	WAITLIST_EVENT_FILL
} WaitlistEvent;

#define WAITLIST_EVENT_COUNT	(WAITLIST_EVENT_FILL + 1)

/* What a transition does to the unit of capacity an offer holds. */
typedef enum WaitlistUnitEffect
{
	WAITLIST_UNIT_NONE,			/* no unit involved */
	WAITLIST_UNIT_HOLD,			/* a free unit is held by the new offer */
	WAITLIST_UNIT_CONSUME,		/* the held unit is booked */
	WAITLIST_UNIT_RETURN,		/* the held unit goes back to free_units */
	WAITLIST_UNIT_RETIRE		/* the held unit is gone (the seat was taken) */
} WaitlistUnitEffect;

/* Whom a transition's outbox rows are for. */
typedef enum WaitlistAudience
{
	WAITLIST_TO_FAN,			/* the resource's notification channels */
	WAITLIST_TO_BOOKING			/* the booking service: channel 'booking' */
} WaitlistAudience;

/*
 * One transition: an entity in from_state (NULL: the row is created) that
 * undergoes event moves to to_state, with this effect on the unit, this
 * outbox event (NULL: none) for this audience and the reason its audit row
 * records.  An event may move the offer alone (its entry has no rule).
 */
typedef struct WaitlistRule
{
	WaitlistEntity entity;
	const char *from_state;
	WaitlistEvent event;
	const char *to_state;
	WaitlistUnitEffect unit;
	const char *outbox_event;
	const char *reason;
	WaitlistAudience audience;
} WaitlistRule;

extern const WaitlistRule waitlist_rules[];
extern const int waitlist_rule_count;
extern const char *waitlist_entity_name(WaitlistEntity entity);
extern const char *waitlist_event_name(WaitlistEvent event);
extern const char *waitlist_unit_effect_name(WaitlistUnitEffect unit);
extern const WaitlistRule *waitlist_find_rule(WaitlistEntity entity, WaitlistEvent event);
extern const WaitlistRule *waitlist_rule_for_states(WaitlistEntity entity,
													const char *from_state,
													const char *to_state);
extern void waitlist_illegal_transition(WaitlistEntity entity, int64 id,
										const char *from_state,
										const char *to_state) pg_attribute_noreturn();

/* --- applying it (transition.c) ------------------------------------------ */

/* The head of every INSERT of audit rows (the engine's, and 1.0's trigger). */
#define WAITLIST_AUDIT_INSERT \
	"INSERT INTO waitlist.transition" \
	" (entity, entity_id, resource_id, from_state, to_state, reason, rule_version, actor) "

extern bool waitlist_engine_applying(void);
extern bool waitlist_recording_by_hand(void);
extern bool waitlist_archiving(void);
extern int64 waitlist_apply_join(text *resource_id, text *user_id, Datum priority,
								 int32 quantity, bool cap_checked, bool *capped,
								 int64 *free_units);
extern void waitlist_refuse_closed(text *resource_id) pg_attribute_noreturn();
extern int64 waitlist_apply_entry_event(WaitlistEvent event, text *resource_id,
									   Datum entry_ids);
extern bool waitlist_apply_leave(WaitlistEvent event, text *resource_id, int64 entry_id);
extern char *waitlist_apply_rule_change(text *resource_id, const char *reason);
extern void waitlist_apply_return_units(text *resource_id, int64 quantity, const char *why);
/*
 * One promotion step: offer up to "units" free units, in at most
 * max_offers offers, to the parties in line of at most max_quantity each
 * (those of skip_to_fit's later passes), each unit to "fanout" fans.
 */
typedef struct WaitlistPromotion
{
	int64		units;
	int64		max_offers;
	bool		new_wave;
	int32		fanout;
	int32		max_quantity;
	bool		passing_over;	/* parties larger than max_quantity are passed over */
} WaitlistPromotion;

extern int64 waitlist_apply_promote(text *resource_id, const WaitlistPromotion *promotion,
									int64 *units_spent);
/*
 * What a change of offers carries besides the event: the reservation, the
 * accept's key, a detail for the outbox payload, and an interval (the
 * booking timeout of a booking request, the time an extension adds).
 */
typedef struct WaitlistOfferChange
{
	const char *reservation_ref;
	text	   *idempotency_key;
	const char *detail;
	Interval   *interval;
} WaitlistOfferChange;

extern int64 waitlist_apply_offer_event(WaitlistEvent event, text *resource_id,
										Datum offer_ids, const WaitlistOfferChange *change);
extern void waitlist_record_by_hand(WaitlistEntity entity, int64 id, Datum resource_id,
									const char *from_state, const char *to_state);
extern int64 waitlist_move_transitions(WaitlistPlan *plan, Datum *values, const char *nulls);
extern void waitlist_outbox_at_pre_commit(void);
extern void waitlist_outbox_at_xact_end(void);

/* --- promotion (promote.c) ----------------------------------------------- */

extern int64 waitlist_settle_offers(WaitlistEvent event, text *resource_id, Datum offer_ids,
									const WaitlistOfferChange *change);
extern int64 waitlist_settle_offer(WaitlistEvent event, text *resource_id, int64 offer_id,
								   const WaitlistOfferChange *change);
extern int64 waitlist_promote_locked(text *resource_id, int64 max_offers,
									 const WaitlistResource *locked, int64 *units_spent);
extern void waitlist_promote_if_free(text *resource_id);
extern int64 waitlist_fold_and_promote(text *resource_id, int64 *offers,
									   bool wait_for_gate);
extern PGDLLIMPORT WaitlistPlan waitlist_idle_resources_plan;
extern int64 waitlist_promote_idle(int32 max_resources);
extern int64 waitlist_fold_pending(int32 max_resources);
extern bool waitlist_release_units(text *resource_id, int32 quantity, text *event_id,
								   bool missing_ok);
extern bool waitlist_revoke_offer_of_entry(text *resource_id, int64 entry_id);
extern bool waitlist_lock_unit_offers(text *resource_id, int64 offer_id);
extern int64 waitlist_fill_unit(text *resource_id, int64 offer_id);
extern int64 waitlist_expire_due(int64 max_offers, int owner, int nworkers);
extern int64 waitlist_end_due_sagas(int64 max_offers, int owner, int nworkers);
extern int64 waitlist_end_due_places(int64 max_entries, int owner, int nworkers);
extern int64 waitlist_close_due(int32 max_resources, int owner, int nworkers);

#endif							/* WAITLIST_ENGINE_H */
