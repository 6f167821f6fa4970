/*-------------------------------------------------------------------------
 *
 * waitlist.c
 *	  Module entry point of the waitlist extension: library initialization
 *	  and the transaction callbacks that keep per-backend state honest.
 *
 * IDENTIFICATION
 *	  src/waitlist.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "utils/guc.h"

#include "waitlist.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* An aborted transaction takes the frames of its API calls with it. */
static void
waitlist_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		waitlist_api_reset_on_abort(InvalidSubTransactionId);
}

static void
waitlist_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		waitlist_api_reset_on_abort(mySubid);
}

/*
 * Module load: reserve the "waitlist." GUC prefix and hook transaction ends.
 * Works both preloaded and loaded on first use.
 */
void
_PG_init(void)
{
	MarkGUCPrefixReserved("waitlist");

	RegisterXactCallback(waitlist_xact_callback, NULL);
	RegisterSubXactCallback(waitlist_subxact_callback, NULL);
}
