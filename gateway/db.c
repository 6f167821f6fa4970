/*
 * db.c: the database side of a request.
 *
 * A pool of at most --pool-size libpq connections, opened as they are
 * needed and reopened when one breaks; a request waits at most --pool-wait
 * for one, then gets 503.
 *
 * A request is one statement in a transaction of its own, sent in a libpq
 * pipeline with the statement that sets its role and statement_timeout
 * (set_config(..., true): local to that transaction, so nothing of one
 * request reaches the next one on the connection), and run as the implicit
 * transaction of the pipeline: one round trip.  The role name and every
 * value from the request are parameters, never SQL text.
 *
 * A transient failure (serialization failure, deadlock, lock or statement
 * timeout, too many connections, a lost connection) rolls the transaction
 * back, and the request is sent again, at most --retries times with a
 * growing pause; then it is a 503 with Retry-After.  Every call the gateway
 * makes is idempotent (joins, releases and accepts by their keys), so a
 * retry never does a thing twice.
 *
 * The one table of SQLSTATEs to HTTP statuses is here (docs/gateway.md).
 */
#define _GNU_SOURCE

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "gateway.h"

typedef struct Pool
{
	pthread_mutex_t lock;
	pthread_cond_t freed;
	PGconn	  **idle;			/* connections nobody uses, open or NULL */
	int			nidle;
	int			open;			/* connections handed out or idle */
} Pool;

static Pool pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

/*
 * The search_path every request takes: pg_catalog first, so that nothing in
 * the extension's schema (public, say) can stand in for an operator or
 * function of ours, then the extension's schema for the API.  Found by each
 * new connection (the extension may have moved), used by every request.
 */
static char api_search_path[160];
static pthread_mutex_t search_path_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * The cancel handles of the connections in use, so that a shutdown that
 * runs out of time can cancel what they wait for (PQcancel() may be called
 * from any thread).
 */
static PGcancel **in_use;
static pthread_mutex_t in_use_lock = PTHREAD_MUTEX_INITIALIZER;

/* the longest wait for an answer beyond the statement timeout */
#define ANSWER_SLACK_MS 5000

/* A statement's way of failing, and what the gateway makes of it. */
typedef struct StatusRule
{
	const char *sqlstate;		/* 5 characters, or 2 for a class */
	int			status;
	const char *slug;			/* the problem type's last part */
	const char *title;
} StatusRule;

/*
 * The one table.  First match wins: exact codes, then classes.  Whatever
 * is not here is a 500 whose message is logged, not shown.
 */
static const StatusRule status_rules[] = {
	{"42704", 404, "not-found", "Not found"},
	{"WL001", 410, "waitlist-full", "Waitlist full"},
	{"WL019", 410, "waitlist-closed", "Waitlist closed"},
	{"WL002", 409, "offer-expired", "Offer expired"},
	{"WL003", 409, "offer-not-open", "Offer not open"},
	{"WL013", 409, "offer-expired", "Offer expired"},
	{"WL015", 409, "booking-too-late", "Booking confirmed too late"},
	{"WL016", 409, "booked-twice", "Booked twice"},
	{"55000", 409, "wrong-state", "Not in a state that allows this"},
	{"WL011", 404, "offer-link-invalid", "Offer link not valid"},
	{"WL014", 404, "offer-link-invalid", "Offer link not valid"},
	{"WL012", 403, "offer-link-forged", "Offer link does not verify"},
	{"42501", 403, "forbidden", "Forbidden"},
	{"WL018", 429, "rate-limited", "Too many joins"},
	{"40001", 503, "transient", "Try again"},
	{"40P01", 503, "transient", "Try again"},
	{"55P03", 503, "transient", "Try again"},
	{"57014", 503, "transient", "Try again"},
	{"53300", 503, "transient", "Try again"},
	{"57P01", 503, "transient", "Try again"},
	{"57P02", 503, "transient", "Try again"},
	{"57P03", 503, "transient", "Try again"},
	{"57P05", 503, "transient", "Try again"},
	{"08", 503, "transient", "Try again"},
	{"22", 422, "invalid-input", "Invalid input"},
	{"23", 422, "invalid-input", "Invalid input"},
};

static const StatusRule *
rule_for(const char *sqlstate)
{
	size_t		i;

	for (i = 0; i < sizeof(status_rules) / sizeof(status_rules[0]); i++)
		if (strlen(status_rules[i].sqlstate) == 5 && strcmp(status_rules[i].sqlstate, sqlstate) == 0)
			return &status_rules[i];
	for (i = 0; i < sizeof(status_rules) / sizeof(status_rules[0]); i++)
		if (strlen(status_rules[i].sqlstate) == 2 && strncmp(status_rules[i].sqlstate, sqlstate, 2) == 0)
			return &status_rules[i];
	return NULL;
}

static bool
is_transient(const char *sqlstate)
{
	const StatusRule *rule = rule_for(sqlstate);

	return rule != NULL && rule->status == 503;
}

/* "Retry in 250 ms." (WL018's hint): whole seconds, rounded up, at least 1 */
static void
retry_after_from_hint(const char *hint, char *out, size_t outlen)
{
	long long	ms = 1000;
	const char *p = hint;

	while (p != NULL && *p && (*p < '0' || *p > '9'))
		p++;
	if (p != NULL && *p)
		ms = strtoll(p, NULL, 10);
	if (ms < 1)
		ms = 1;
	if (ms > 3600000)
		ms = 3600000;
	snprintf(out, outlen, "%d", (int) ((ms + 999) / 1000));
}

void
gateway_reply_for_error(const DbCall *call, Reply *reply)
{
	const StatusRule *rule = rule_for(call->sqlstate);
	char	   *detail;

	if (rule == NULL || (call->setup_failed && rule->status != 503))
	{
		/* our fault or the database's: say which code, not the internals */
		gateway_log("error %s: %s", call->sqlstate, call->message ? call->message : "");
		gateway_problem(reply, 500, "internal", "Internal error",
						"The request failed; the gateway's log has the error.", call->sqlstate);
		return;
	}
	if (rule->status == 503)
		detail = gateway_strdup("The database is busy or cannot be reached; try again.");
	else if (call->detail != NULL)
		detail = gateway_asprintf("%s. %s", call->message ? call->message : "", call->detail);
	else
		detail = gateway_strdup(call->message ? call->message : rule->title);
	gateway_problem(reply, rule->status, rule->slug, rule->title, detail, call->sqlstate);
	free(detail);
	if (rule->status == 429)
		retry_after_from_hint(call->hint, reply->retry_after, sizeof(reply->retry_after));
	else if (rule->status == 503)
		strcpy(reply->retry_after, "1");
}

/* ------------------------------------------------------------------------
 * The pool
 * ------------------------------------------------------------------------ */

/* ms milliseconds from now on clock */
static void
deadline_in(clockid_t clock, long ms, struct timespec *deadline)
{
	clock_gettime(clock, deadline);
	deadline->tv_sec += ms / 1000;
	deadline->tv_nsec += (ms % 1000) * 1000000L;
	if (deadline->tv_nsec >= 1000000000L)
	{
		deadline->tv_sec++;
		deadline->tv_nsec -= 1000000000L;
	}
}

void
gateway_pool_init(void)
{
	pool.idle = gateway_malloc(sizeof(PGconn *) * (size_t) gateway_config.pool_size);
	pool.nidle = 0;
	pool.open = 0;
	in_use = calloc((size_t) gateway_config.pool_size, sizeof(PGcancel *));
	if (in_use == NULL)
		abort();
}

/* slot of in_use for a connection's cancel handle, or -1 */
static int
register_in_use(PGconn *conn)
{
	PGcancel   *cancel = PQgetCancel(conn);
	int			i;

	if (cancel == NULL)
		return -1;
	pthread_mutex_lock(&in_use_lock);
	for (i = 0; i < gateway_config.pool_size; i++)
		if (in_use[i] == NULL)
		{
			in_use[i] = cancel;
			break;
		}
	pthread_mutex_unlock(&in_use_lock);
	if (i == gateway_config.pool_size)
	{
		PQfreeCancel(cancel);
		return -1;
	}
	return i;
}

static void
unregister_in_use(int slot)
{
	if (slot < 0)
		return;
	pthread_mutex_lock(&in_use_lock);
	PQfreeCancel(in_use[slot]);
	in_use[slot] = NULL;
	pthread_mutex_unlock(&in_use_lock);
}

int
gateway_pool_cancel_all(void)
{
	char		errbuf[256];
	int			i,
				n = 0;

	pthread_mutex_lock(&in_use_lock);
	for (i = 0; i < gateway_config.pool_size; i++)
		if (in_use[i] != NULL && PQcancel(in_use[i], errbuf, sizeof(errbuf)))
			n++;
	pthread_mutex_unlock(&in_use_lock);
	return n;
}

void
gateway_pool_close(void)
{
	pthread_mutex_lock(&pool.lock);
	while (pool.nidle > 0)
	{
		PGconn	   *conn = pool.idle[--pool.nidle];

		if (conn != NULL)
			PQfinish(conn);
	}
	pthread_mutex_unlock(&pool.lock);
}

/*
 * A connection slot: an idle connection (maybe NULL: the slot's connection
 * is to be opened), or a new slot while the pool has room; false after
 * --pool-wait.
 */
static bool
pool_acquire(PGconn **conn)
{
	struct timespec deadline;
	bool		got = false;

	deadline_in(CLOCK_REALTIME, gateway_config.pool_wait_ms, &deadline);
	pthread_mutex_lock(&pool.lock);
	for (;;)
	{
		if (pool.nidle > 0)
		{
			*conn = pool.idle[--pool.nidle];
			got = true;
			break;
		}
		if (pool.open < gateway_config.pool_size)
		{
			pool.open++;
			*conn = NULL;
			got = true;
			break;
		}
		if (pthread_cond_timedwait(&pool.freed, &pool.lock, &deadline) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&pool.lock);
	return got;
}

static void
pool_release(PGconn *conn)
{
	if (conn != NULL && (PQstatus(conn) != CONNECTION_OK ||
						 PQtransactionStatus(conn) != PQTRANS_IDLE ||
						 PQpipelineStatus(conn) != PQ_PIPELINE_OFF))
	{
		/* broken, left in a transaction or a pipeline: never hand it on */
		PQfinish(conn);
		conn = NULL;
	}
	pthread_mutex_lock(&pool.lock);
	pool.idle[pool.nidle++] = conn;
	pthread_cond_signal(&pool.freed);
	pthread_mutex_unlock(&pool.lock);
}

static PGconn *
open_connection(char *error, size_t errlen)
{
	/*
	 * Before dbname, so that the connection string can override them: a
	 * server that cannot be reached, or a network that drops without a
	 * word, must not hold a worker thread for ever.
	 */
	const char *keywords[] = {"connect_timeout", "keepalives", "keepalives_idle",
		"keepalives_interval", "keepalives_count", "dbname",
	"fallback_application_name", NULL};
	const char *values[] = {"5", "1", "10", "5", "3",
		gateway_config.dsn ? gateway_config.dsn : "",
	GATEWAY_NAME, NULL};
	PGconn	   *conn;
	PGresult   *res;

	conn = PQconnectdbParams(keywords, values, 1);
	if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
	{
		snprintf(error, errlen, "%s", conn ? PQerrorMessage(conn) : "out of memory");
		error[strcspn(error, "\n")] = '\0';
		if (conn)
			PQfinish(conn);
		return NULL;
	}

	res = PQexec(conn,
				 "SELECT pg_catalog.concat('pg_catalog, ', pg_catalog.quote_ident(n.nspname))"
				 " FROM pg_catalog.pg_extension e"
				 " JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace"
				 " WHERE e.extname OPERATOR(pg_catalog.=) 'waitlist'");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
		(size_t) PQgetlength(res, 0, 0) >= sizeof(api_search_path))
	{
		snprintf(error, errlen, "%s",
				 PQresultStatus(res) != PGRES_TUPLES_OK ? PQerrorMessage(conn)
				 : PQntuples(res) != 1 ? "extension \"waitlist\" is not installed in this database"
				 : "the extension's schema name is too long");
		error[strcspn(error, "\n")] = '\0';
		PQclear(res);
		PQfinish(conn);
		return NULL;
	}
	pthread_mutex_lock(&search_path_lock);
	strcpy(api_search_path, PQgetvalue(res, 0, 0));
	pthread_mutex_unlock(&search_path_lock);
	PQclear(res);
	return conn;
}

/* ------------------------------------------------------------------------
 * One request's transaction
 * ------------------------------------------------------------------------ */

static void
clear_results(DbCall *call)
{
	int			i;

	for (i = 0; i < call->ncols; i++)
	{
		free(call->values[i]);
		call->values[i] = NULL;
	}
	call->ncols = 0;
	call->nrows = 0;
	free(call->message);
	free(call->detail);
	free(call->hint);
	call->message = call->detail = call->hint = NULL;
	call->sqlstate[0] = '\0';
	call->setup_failed = false;
}

void
gateway_db_call_free(DbCall *call)
{
	clear_results(call);
}

static char *
dup_or_null(const char *s)
{
	return s ? gateway_strdup(s) : NULL;
}

static void
take_error(DbCall *call, const PGresult *res, PGconn *conn)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	/* no SQLSTATE: the connection failed (class 08) */
	snprintf(call->sqlstate, sizeof(call->sqlstate), "%s", state ? state : "08006");
	if (res != NULL && PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) != NULL)
	{
		call->message = dup_or_null(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
		call->detail = dup_or_null(PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL));
		call->hint = dup_or_null(PQresultErrorField(res, PG_DIAG_MESSAGE_HINT));
	}
	else
	{
		call->message = gateway_strdup(conn ? PQerrorMessage(conn) : "connection failed");
		call->message[strcspn(call->message, "\n")] = '\0';
	}
}

/*
 * Wait until the connection has a result to read, at most until deadline
 * (CLOCK_MONOTONIC); false if the database did not answer in time.
 */
static bool
wait_for_answer(PGconn *conn, const struct timespec *deadline)
{
	while (PQisBusy(conn))
	{
		struct timespec now;
		long		left_ms;
		struct pollfd pfd = {PQsocket(conn), POLLIN, 0};

		clock_gettime(CLOCK_MONOTONIC, &now);
		left_ms = (deadline->tv_sec - now.tv_sec) * 1000 +
			(deadline->tv_nsec - now.tv_nsec) / 1000000;
		if (left_ms <= 0)
			return false;
		if (poll(&pfd, 1, (int) left_ms) < 0 && errno != EINTR)
			return true;		/* PQconsumeInput reports the failure */
		if (!PQconsumeInput(conn))
			return true;
	}
	return true;
}

/*
 * Send the pipeline and read what comes back; call has the error, if any
 * (a class 08 SQLSTATE if the connection failed and the server sent none).
 *
 * The settings are all local to the request's transaction, search_path
 * too, so that nothing a request leaves in the session reaches the next
 * one; the role is always taken ("none": the login role).
 */
static void
run_pipeline(PGconn *conn, const Caller *caller, DbCall *call)
{
	char		timeout[24];
	char		search_path[sizeof(api_search_path)];
	const char *setup_params[3];
	struct timespec deadline;
	PGresult   *res;
	int			step = 0;
	bool		failed = false;
	bool		sent;

	snprintf(timeout, sizeof(timeout), "%d", gateway_config.statement_timeout_ms);
	setup_params[0] = timeout;
	setup_params[1] = caller->role[0] != '\0' ? caller->role : "none";
	pthread_mutex_lock(&search_path_lock);
	strcpy(search_path, api_search_path);
	pthread_mutex_unlock(&search_path_lock);
	setup_params[2] = search_path;
	deadline_in(CLOCK_MONOTONIC, (long) gateway_config.statement_timeout_ms + ANSWER_SLACK_MS,
				&deadline);

	sent = PQenterPipelineMode(conn) &&
		PQsendQueryParams(conn,
						  "SELECT pg_catalog.set_config('search_path', $3, true),"
						  " pg_catalog.set_config('TimeZone', 'UTC', true),"
						  " pg_catalog.set_config('statement_timeout', $1, true),"
						  " pg_catalog.set_config('role', $2, true)",
						  3, NULL, setup_params, NULL, NULL, 0) &&
		PQsendQueryParams(conn, call->sql, call->nparams, NULL, call->params, NULL, NULL, 0) &&
		PQpipelineSync(conn);
	if (!sent)
	{
		take_error(call, NULL, conn);
		return;
	}
	/* the setup's result, NULL, the call's result, NULL, the sync */
	while (step < 3)
	{
		if (!wait_for_answer(conn, &deadline))
		{
			char		errbuf[256];
			PGcancel   *cancel = PQgetCancel(conn);

			if (cancel != NULL)
			{
				PQcancel(cancel, errbuf, sizeof(errbuf));
				PQfreeCancel(cancel);
			}
			clear_results(call);
			strcpy(call->sqlstate, "08006");
			call->message = gateway_asprintf("no answer from the database within %d ms",
											 gateway_config.statement_timeout_ms + ANSWER_SLACK_MS);
			/* the connection is mid-pipeline: it is closed on release */
			return;
		}
		res = PQgetResult(conn);
		if (res == NULL)
		{
			if (PQstatus(conn) != CONNECTION_OK)
			{
				if (call->sqlstate[0] == '\0')
					take_error(call, NULL, conn);
				break;
			}
			continue;			/* end of one statement's results */
		}
		switch (PQresultStatus(res))
		{
			case PGRES_PIPELINE_SYNC:
				step = 3;
				break;
			case PGRES_TUPLES_OK:
			case PGRES_COMMAND_OK:
				if (step == 1 && !failed)
				{
					int			i;

					call->nrows = PQntuples(res);
					call->ncols = PQnfields(res) < 16 ? PQnfields(res) : 16;
					for (i = 0; i < call->ncols; i++)
						call->values[i] = call->nrows > 0 && !PQgetisnull(res, 0, i)
							? gateway_strdup(PQgetvalue(res, 0, i)) : NULL;
				}
				step++;
				break;
			case PGRES_PIPELINE_ABORTED:
				step++;
				break;
			default:
				if (!failed)
				{
					take_error(call, res, conn);
					call->setup_failed = step == 0;
				}
				failed = true;
				step++;
				break;
		}
		PQclear(res);
	}
	if (PQstatus(conn) == CONNECTION_OK)
		PQexitPipelineMode(conn);
	/* a server that said something and hung up: a lost connection all the same */
	else if (call->sqlstate[0] != '\0' && !is_transient(call->sqlstate))
		strcpy(call->sqlstate, "08006");
}

bool
gateway_db_call(const Caller *caller, DbCall *call, Reply *reply)
{
	int			attempt;

	for (attempt = 0;; attempt++)
	{
		PGconn	   *conn;
		char		error[256];
		int			slot = -1;

		clear_results(call);
		if (!pool_acquire(&conn))
		{
			gateway_problem(reply, 503, "busy", "Busy",
							"Every database connection is in use; try again.", NULL);
			strcpy(reply->retry_after, "1");
			return false;
		}
		if (conn == NULL && (conn = open_connection(error, sizeof(error))) == NULL)
		{
			strcpy(call->sqlstate, "08006");
			call->message = gateway_strdup(error);
			gateway_log("cannot connect: %s", error);
		}
		else
		{
			slot = register_in_use(conn);
			run_pipeline(conn, caller, call);
			unregister_in_use(slot);
		}
		pool_release(conn);

		if (call->sqlstate[0] == '\0')
			return true;
		/* no new attempt once the gateway is stopping: it has no time for it */
		if (!is_transient(call->sqlstate) || attempt >= gateway_config.retries ||
			gateway_shutting_down())
			break;
		{
			/* 20 ms, 40 ms, 80 ms, ...: the contention or the outage may pass */
			struct timespec pause = {0, (20L << attempt) * 1000000L};

			if (pause.tv_nsec >= 1000000000L)
				pause.tv_sec = 1, pause.tv_nsec = 0;
			nanosleep(&pause, NULL);
		}
	}
	if (is_transient(call->sqlstate))
		gateway_log("giving up after %d attempt(s): %s %s", attempt + 1, call->sqlstate,
					call->message ? call->message : "");
	gateway_reply_for_error(call, reply);
	return false;
}
