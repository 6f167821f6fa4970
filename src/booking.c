/*-------------------------------------------------------------------------
 *
 * booking.c
 *	  Calling a resource's booking function from waitlist_accept(): in the
 *	  caller's own role and search_path, inside a subtransaction, and
 *	  sorting its errors into "the seat is gone" and "try again".
 *
 * The booking system owns inventory truth.  Its function runs as if the
 * application had called it directly, so the extension's owner rights and
 * pinned search_path never leak into user code; and it runs sealed, so that
 * nothing it does leaks back into the rest of the accept: not its settings,
 * not a role change, not a call of the API itself.
 *
 * IDENTIFICATION
 *	  src/booking.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

#include "api.h"

/* errors of the booking function that mean the unit is gone for good */
static bool
is_conflict(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_UNIQUE_VIOLATION ||
		sqlerrcode == ERRCODE_WAITLIST_SEAT_CONFLICT;
}

/* Call the function; runs inside the subtransaction, as the caller. */
static char *
invoke_booking(Oid funcid, text *resource_id, text *user_id, int64 offer_id,
			   text *idempotency_key)
{
	FmgrInfo	flinfo;
	AclResult	aclresult;
	Datum		result;

	LOCAL_FCINFO(fcinfo, 4);

	aclresult = pg_proc_aclcheck(funcid, GetUserId(), ACL_EXECUTE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FUNCTION, get_func_name(funcid));
	InvokeFunctionExecuteHook(funcid);

	fmgr_info(funcid, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 4, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = PointerGetDatum(resource_id);
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = PointerGetDatum(user_id);
	fcinfo->args[1].isnull = false;
	fcinfo->args[2].value = Int64GetDatum(offer_id);
	fcinfo->args[2].isnull = false;
	fcinfo->args[3].value = PointerGetDatum(idempotency_key);
	fcinfo->args[3].isnull = false;

	result = FunctionCallInvoke(fcinfo);
	if (fcinfo->isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("booking function %s returned NULL", get_func_name(funcid)),
				 errdetail("A booking function returns the reservation reference, or raises an error.")));
	return TextDatumGetCString(result);
}

/*
 * Book the offered unit.  Returns WAITLIST_BOOKED with the reservation
 * reference, or WAITLIST_BOOKING_CONFLICT with the booking function's
 * message when it raised unique_violation or WL004 (the seat is gone); its
 * work is rolled back then.  Any other error is re-raised: it is transient,
 * and aborts the accept so that the offer stays open for a retry.
 */
WaitlistBookingOutcome
waitlist_call_booking(Oid funcid, text *resource_id, text *user_id,
					  int64 offer_id, text *idempotency_key,
					  char **reservation_ref, char **conflict_message)
{
	WaitlistApiCall *call = waitlist_current_call();
	MemoryContext callercxt = CurrentMemoryContext;
	ResourceOwner callerowner = CurrentResourceOwner;
	volatile WaitlistBookingOutcome outcome = WAITLIST_BOOKED;

	Assert(call != NULL);
	if (!SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(funcid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("booking function of resource \"%s\" no longer exists",
						text_to_cstring(resource_id)),
				 errhint("Set another one with waitlist_alter_resource(), or clear it.")));

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(callercxt);

	PG_TRY();
	{
		Oid			owner;
		int			owner_sec_context;
		int			nestlevel;
		char	   *ref;

		/*
		 * As core runs code it does not trust (index expressions, REFRESH
		 * MATERIALIZED VIEW, autovacuum): a security-restricted operation, in
		 * which PostgreSQL itself refuses SET ROLE and SET SESSION
		 * AUTHORIZATION, and a GUC nest level whose settings are all thrown
		 * away afterwards, even those made with a plain SET.  Whatever the
		 * function sets, the rest of waitlist_accept runs as it began.
		 */
		GetUserIdAndSecContext(&owner, &owner_sec_context);
		SetUserIdAndSecContext(call->caller,
							   call->caller_sec_context | SECURITY_RESTRICTED_OPERATION);
		nestlevel = NewGUCNestLevel();
		waitlist_api_caller_settings(call);
		waitlist_api_booking(GetCurrentSubTransactionId());

		ref = invoke_booking(funcid, resource_id, user_id, offer_id, idempotency_key);

		waitlist_api_booking(InvalidSubTransactionId);
		AtEOXact_GUC(false, nestlevel);
		SetUserIdAndSecContext(owner, owner_sec_context);

		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(callercxt);
		CurrentResourceOwner = callerowner;
		*reservation_ref = ref;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/*
		 * The subtransaction's abort restores our role and settings and ends
		 * the booking function's run (waitlist_api_reset_on_abort()).
		 */
		MemoryContextSwitchTo(callercxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(callercxt);
		CurrentResourceOwner = callerowner;

		if (!is_conflict(edata->sqlerrcode))
			ReThrowError(edata);
		*conflict_message = edata->message;
		outcome = WAITLIST_BOOKING_CONFLICT;
	}
	PG_END_TRY();

	return outcome;
}
