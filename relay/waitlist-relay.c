/*
 * waitlist-relay: delivers the waitlist extension's outbox to a webhook.
 *
 * The extension writes one row to waitlist.outbox for every offer event, in
 * the transaction that made the change.  This program gets those rows out:
 * it claims batches of deliverable rows with waitlist_outbox_claim() (which
 * leases them and keeps every channel within its rate limit), POSTs each row
 * as a JSON object to one webhook URL, and reports the outcome with
 * waitlist_outbox_ack() (2xx) or waitlist_outbox_fail() (anything else,
 * timeouts and connection errors).  Failed rows come back after a backoff and
 * are dead-lettered by the extension after waitlist.outbox_max_attempts.
 *
 * Delivery is at least once: a row whose outcome could not be reported (the
 * relay died, the database went away) comes back when its lease runs out.
 * Every request carries the outbox id as Idempotency-Key, the same on every
 * retry, so receivers can drop repeats, and an HMAC-SHA256 signature of the
 * body under a shared secret, so they can tell the request came from us.
 *
 * The relay wakes up on the NOTIFY the extension sends when
 * waitlist.notify_channel is set, and polls as well, so it also works with
 * NOTIFY off and picks up rows coming back from a backoff.  Up to
 * --concurrency requests are in flight at once (curl multi); a row is only
 * claimed when a request slot is free for it, so no lease ticks away while
 * its row waits in a queue here.
 *
 * Rows of event type booking_requested (the accept saga of a resource whose
 * booking service is an external HTTP service; run a relay with
 * --channels=booking pointed at that service) are POSTed like any other,
 * but the answer goes to the saga, in the statement that acks the row, so
 * that no row is acked without its answer being reported:
 * 2xx with a "reservation_ref" string in a JSON object calls
 * waitlist_booking_confirmed(); 409 (the seat is gone) calls
 * waitlist_booking_failed(..., false); any other answer, a timeout or a
 * connection error calls waitlist_booking_failed(..., true).  The saga, not
 * the outbox's backoff, decides whether to ask again (with a new row), so
 * each attempt is counted once.  A report the saga refuses as too late or
 * contradictory (WL015, WL016) is recorded by the database: the row is then
 * acked by itself.  Any other error leaves the row leased, and it comes
 * back: the booking service sees the same idempotency_key again.
 *
 * SIGTERM or SIGINT: claim nothing more, finish the requests in flight (each
 * bounded by --timeout), report them and exit 0.  A second signal abandons
 * the requests in flight; their leases run out and the rows come back.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define RELAY_NAME			"waitlist-relay"
#define RELAY_VERSION		"1.0"

/* bytes of a non-2xx response kept for last_error */
#define RESPONSE_KEEP		200
/* bytes of a response read at most (a booking answer is parsed whole) */
#define RESPONSE_MAX		4096
/* longest reservation_ref taken from a booking answer */
#define RESERVATION_REF_MAX 200
/* while rows keep coming, poll at least this often (rate-limited channels) */
#define BUSY_POLL_MS		100
/* reconnect backoff bounds */
#define RECONNECT_MIN_MS	500
#define RECONNECT_MAX_MS	10000
/* the extension refuses bigger claims */
#define MAX_BATCH			10000
#define MAX_CONCURRENCY		1000

/* SQLSTATE of a stale lease token (someone else holds a newer lease) */
#define SQLSTATE_STALE_LEASE "WL005"
/* the saga refused a booking answer, and recorded it: the row is done */
#define SQLSTATE_BOOKING_TOO_LATE "WL015"
#define SQLSTATE_BOOKED_TWICE "WL016"

/* outbox rows of this event type are booking requests of the accept saga */
#define BOOKING_EVENT		"booking_requested"

/* Settings, from flags and environment. */
typedef struct Config
{
	const char *dsn;			/* libpq connection string */
	const char *url;			/* webhook URL */
	char	   *url_origin;		/* the part of it we log */
	const char *secret;			/* HMAC key */
	const char *consumer;		/* lease owner name */
	const char *channels;		/* "email,sms" → '{email,sms}'; NULL: all */
	const char *listen;			/* NOTIFY channel; "" = do not LISTEN */
	int			batch;			/* rows per claim, at most */
	int			concurrency;	/* requests in flight, at most */
	int			lease_s;		/* lease per claim */
	long		timeout_ms;		/* per request */
	long		poll_ms;		/* claim at least this often */
	bool		once;			/* deliver what is deliverable, then exit */
	bool		verbose;		/* a line per delivery */
} Config;

/* One claimed outbox row, from claim to the report of its outcome. */
typedef struct Job
{
	char		outbox_id[24];	/* decimal, as the database sent it */
	char		lease_token[24];
	char		offer_id[24];	/* a booking request's offer; "" otherwise */
	char	   *body;			/* the JSON we POST */
	CURL	   *easy;
	struct curl_slist *headers;
	char		response[RESPONSE_MAX + 1]; /* start of the response body */
	size_t		response_len;
	bool		response_cut;	/* ... and there was more */
	char		curl_error[CURL_ERROR_SIZE];
	bool		delivered;		/* outcome: 2xx; for a booking request: its
								 * answer is recorded, only the ack is left */
	char	   *error;			/* outcome otherwise: the error for fail() */
	/* a booking request's outcome: confirmed with this ref, else failed */
	char	   *reservation_ref;
	bool		retryable;		/* a failure the saga may retry */
	struct Job *next;			/* in the list of running requests, or of
								 * outcomes to report */
} Job;

/* Everything the main loop works on. */
typedef struct Relay
{
	Config		cfg;
	PGconn	   *conn;
	CURLM	   *multi;
	int			inflight;		/* requests running */
	Job		   *running;		/* ... and their jobs */
	Job		   *unreported;		/* finished requests whose outcome is not in the database yet */
	int64_t		next_claim_ms;	/* when to claim even without a NOTIFY */
	int64_t		busy_until_ms;	/* poll fast until then: rows were coming */
	bool		claim_now;		/* something happened that may make rows deliverable */
	int64_t		next_connect_ms;
	long		reconnect_ms;
	char	   *last_claim_error;	/* to log a repeated error once */
	char	   *api_schema;		/* the extension's schema, quoted */
	unsigned long delivered, failed, dead;
} Relay;

/* Signals: counted in the handler, noticed through a self-pipe. */
static volatile sig_atomic_t stop_signals = 0;
static int	signal_pipe[2] = {-1, -1};

/* ------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------ */

/* Log one line to stderr, with a UTC timestamp. */
static void
log_msg(const char *fmt,...)
{
	char		stamp[32];
	time_t		now = time(NULL);
	struct tm	tm;
	va_list		ap;

	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(stderr, "%s " RELAY_NAME ": ", stamp);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Report a fatal error and exit; for start-up problems only. */
static void
die(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, RELAY_NAME ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* malloc that cannot return NULL: out of memory here is fatal. */
static void *
xmalloc(size_t size)
{
	void	   *p = malloc(size);

	if (p == NULL)
		die("out of memory");
	return p;
}

static char *
xstrdup(const char *s)
{
	size_t		len = strlen(s) + 1;

	return memcpy(xmalloc(len), s, len);
}

/* printf into a fresh string. */
static char *
xasprintf(const char *fmt,...)
{
	va_list		ap;
	int			len;
	char	   *s;

	va_start(ap, fmt);
	len = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (len < 0)
		die("formatting failed");
	s = xmalloc((size_t) len + 1);
	va_start(ap, fmt);
	vsnprintf(s, (size_t) len + 1, fmt, ap);
	va_end(ap);
	return s;
}

/* A copy of a (libpq) message on one line: whitespace runs become a space. */
static char *
one_line(const char *msg)
{
	char	   *s = xstrdup(msg);
	char	   *out = s;
	const char *in;

	for (in = msg; *in; in++)
	{
		bool		space = *in == ' ' || *in == '\n' || *in == '\r' || *in == '\t';

		if (!space)
			*out++ = *in;
		else if (out > s && out[-1] != ' ')
			*out++ = ' ';
	}
	while (out > s && out[-1] == ' ')
		out--;
	*out = '\0';
	return s;
}

/* Milliseconds on a clock that does not jump. */
static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Make an error text safe to store: printable ASCII only, so that a binary
 * or oddly encoded response can never make waitlist_outbox_fail() itself
 * fail on an encoding error (the row would then never count the attempt).
 */
static void
sanitize(char *s)
{
	for (; *s; s++)
		if (*s == '\n' || *s == '\r' || *s == '\t')
			*s = ' ';
		else if ((unsigned char) *s < 0x20 || (unsigned char) *s > 0x7e)
			*s = '?';
}

/* Hex HMAC-SHA256 of body under secret, into out (65 bytes). */
static void
sign_body(const char *secret, const char *body, char out[65])
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	unsigned int i;

	if (HMAC(EVP_sha256(), secret, (int) strlen(secret),
			 (const unsigned char *) body, strlen(body), mac, &mac_len) == NULL)
		die("HMAC-SHA256 failed");
	for (i = 0; i < mac_len && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", mac[i]);
	out[2 * i] = '\0';
}

/* ------------------------------------------------------------------------
 * Configuration
 * ------------------------------------------------------------------------ */

static void
usage(FILE *out)
{
	fprintf(out,
			RELAY_NAME " delivers the waitlist outbox to a webhook.\n"
			"\n"
			"It claims deliverable outbox rows, POSTs each as JSON to the URL and acks\n"
			"it on a 2xx answer; any other answer, a timeout or a connection error is\n"
			"reported as a failure, and the extension retries the row with backoff and\n"
			"dead-letters it after waitlist.outbox_max_attempts.\n"
			"\n"
			"Rows of event type booking_requested (the accept saga; run a relay with\n"
			"--channels=booking and the booking service's URL) are POSTed the same way,\n"
			"and the answer is reported to the saga as the row is acked: 2xx with a JSON\n"
			"object holding a string \"reservation_ref\" confirms the booking\n"
			"(waitlist_booking_confirmed), 409 fails it for good, anything else (other\n"
			"statuses, a 2xx without a usable ref, timeouts, connection errors) fails it\n"
			"as retryable (waitlist_booking_failed); the saga decides whether to ask\n"
			"again, with a new row.\n"
			"\n"
			"Usage: " RELAY_NAME " [OPTION]...\n"
			"\n"
			"Options (environment variable in brackets; flags win):\n"
			"  -d, --dbname=CONNINFO     database connection string [WAITLIST_RELAY_DSN]\n"
			"                            (default: libpq's PG* environment)\n"
			"  -u, --url=URL             webhook URL, http:// or https:// [WAITLIST_RELAY_URL]\n"
			"  -s, --secret=SECRET       HMAC-SHA256 key for X-Waitlist-Signature\n"
			"                            [WAITLIST_RELAY_SECRET] (prefer the variable: flags\n"
			"                            show in the process list)\n"
			"  -b, --batch=N             claim at most N rows at a time (default 100)\n"
			"                            [WAITLIST_RELAY_BATCH]\n"
			"  -c, --concurrency=N       at most N requests in flight (default 8)\n"
			"                            [WAITLIST_RELAY_CONCURRENCY]\n"
			"  -l, --lease=SECONDS       lease on claimed rows (default 30)\n"
			"                            [WAITLIST_RELAY_LEASE]\n"
			"  -t, --timeout=MS          per request; must be shorter than the lease\n"
			"                            (default 10000) [WAITLIST_RELAY_TIMEOUT]\n"
			"  -p, --poll-interval=MS    claim at least this often (default 1000)\n"
			"                            [WAITLIST_RELAY_POLL_INTERVAL]\n"
			"  -n, --listen=CHANNEL      LISTEN on CHANNEL for new rows; empty: poll only\n"
			"                            (default waitlist_outbox) [WAITLIST_RELAY_LISTEN]\n"
			"  -C, --consumer=NAME       lease owner name (default host:pid)\n"
			"                            [WAITLIST_RELAY_CONSUMER]\n"
			"  -k, --channels=LIST       deliver only these channels, comma-separated\n"
			"                            (email,sms,push,webhook,booking; default all)\n"
			"                            [WAITLIST_RELAY_CHANNELS]\n"
			"  -1, --once                deliver what is deliverable now, then exit\n"
			"  -v, --verbose             log every delivery\n"
			"  -V, --version             print the version and exit\n"
			"  -h, --help                print this help and exit\n"
			"\n"
			"Each request: POST URL with body\n"
			"  {\"outbox_id\", \"resource_id\", \"user_id\", \"channel\", \"event_type\",\n"
			"   \"payload\", \"created_at\", \"attempts\"}\n"
			"and headers Content-Type: application/json, Idempotency-Key: <outbox_id>\n"
			"(the same on every retry) and X-Waitlist-Signature: sha256=<hex HMAC-SHA256 of\n"
			"the body under the secret>.  Channel rate limits are applied by the claim.\n"
			"A booking service dedupes on payload.idempotency_key, the same for every\n"
			"attempt of one saga (each attempt is a row of its own).\n"
			"\n"
			"SIGTERM/SIGINT: finish the requests in flight, report them, exit 0; a\n"
			"second signal exits at once (unreported rows come back when their lease\n"
			"runs out).  Exit status: 0 done, 1 error, 2 bad usage.\n");
}

/*
 * scheme://host[:port] of a URL, for the log (the path or query may hold a
 * token); NULL if curl cannot parse the URL.
 */
static char *
url_origin(const char *url)
{
	CURLU	   *u = curl_url();
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *port = NULL;
	char	   *origin = NULL;

	if (u == NULL)
		die("out of memory");
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
	{
		if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK)
			origin = xasprintf("%s://%s:%s", scheme, host, port);
		else
			origin = xasprintf("%s://%s", scheme, host);
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return origin;
}

/* Parse a bounded integer option; exits with a usage error if it is not one. */
static long
parse_int(const char *name, const char *value, long min, long max)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || v < min || v > max)
	{
		fprintf(stderr, RELAY_NAME ": %s must be an integer between %ld and %ld, not \"%s\"\n",
				name, min, max, value);
		exit(2);
	}
	return v;
}

/* getenv that treats an empty variable as unset. */
static const char *
env(const char *name)
{
	const char *v = getenv(name);

	return (v != NULL && v[0] != '\0') ? v : NULL;
}

/* Fill cfg from the environment, then the flags; check it makes sense. */
static void
configure(Config *cfg, int argc, char **argv)
{
	static const struct option options[] = {
		{"dbname", required_argument, NULL, 'd'},
		{"url", required_argument, NULL, 'u'},
		{"secret", required_argument, NULL, 's'},
		{"batch", required_argument, NULL, 'b'},
		{"concurrency", required_argument, NULL, 'c'},
		{"lease", required_argument, NULL, 'l'},
		{"timeout", required_argument, NULL, 't'},
		{"poll-interval", required_argument, NULL, 'p'},
		{"listen", required_argument, NULL, 'n'},
		{"consumer", required_argument, NULL, 'C'},
		{"channels", required_argument, NULL, 'k'},
		{"once", no_argument, NULL, '1'},
		{"verbose", no_argument, NULL, 'v'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	const char *batch = env("WAITLIST_RELAY_BATCH");
	const char *concurrency = env("WAITLIST_RELAY_CONCURRENCY");
	const char *lease = env("WAITLIST_RELAY_LEASE");
	const char *timeout = env("WAITLIST_RELAY_TIMEOUT");
	const char *poll = env("WAITLIST_RELAY_POLL_INTERVAL");
	const char *listen = getenv("WAITLIST_RELAY_LISTEN");
	int			opt;

	cfg->dsn = env("WAITLIST_RELAY_DSN");
	cfg->url = env("WAITLIST_RELAY_URL");
	cfg->secret = env("WAITLIST_RELAY_SECRET");
	cfg->consumer = env("WAITLIST_RELAY_CONSUMER");
	cfg->channels = env("WAITLIST_RELAY_CHANNELS");
	cfg->listen = listen != NULL ? listen : "waitlist_outbox";

	while ((opt = getopt_long(argc, argv, "d:u:s:b:c:l:t:p:n:C:k:1vVh", options, NULL)) != -1)
	{
		switch (opt)
		{
			case 'd':
				cfg->dsn = optarg;
				break;
			case 'u':
				cfg->url = optarg;
				break;
			case 's':
				cfg->secret = optarg;
				break;
			case 'b':
				batch = optarg;
				break;
			case 'c':
				concurrency = optarg;
				break;
			case 'l':
				lease = optarg;
				break;
			case 't':
				timeout = optarg;
				break;
			case 'p':
				poll = optarg;
				break;
			case 'n':
				cfg->listen = optarg;
				break;
			case 'k':
				cfg->channels = optarg;
				break;
			case 'C':
				cfg->consumer = optarg;
				break;
			case '1':
				cfg->once = true;
				break;
			case 'v':
				cfg->verbose = true;
				break;
			case 'V':
				printf(RELAY_NAME " " RELAY_VERSION " (%s)\n", curl_version());
				exit(0);
			case 'h':
				usage(stdout);
				exit(0);
			default:
				fprintf(stderr, "Try \"" RELAY_NAME " --help\" for more information.\n");
				exit(2);
		}
	}
	if (optind < argc)
	{
		fprintf(stderr, RELAY_NAME ": unexpected argument \"%s\"\n", argv[optind]);
		exit(2);
	}

	cfg->batch = (int) parse_int("--batch", batch ? batch : "100", 1, MAX_BATCH);
	cfg->concurrency = (int) parse_int("--concurrency", concurrency ? concurrency : "8",
									   1, MAX_CONCURRENCY);
	cfg->lease_s = (int) parse_int("--lease", lease ? lease : "30", 1, 86400);
	cfg->timeout_ms = parse_int("--timeout", timeout ? timeout : "10000", 1, 86400L * 1000);
	cfg->poll_ms = parse_int("--poll-interval", poll ? poll : "1000", 10, 86400L * 1000);

	if (cfg->url == NULL)
	{
		fprintf(stderr, RELAY_NAME ": no webhook URL: use --url or WAITLIST_RELAY_URL\n");
		exit(2);
	}
	if ((strncmp(cfg->url, "http://", 7) != 0 && strncmp(cfg->url, "https://", 8) != 0) ||
		(cfg->url_origin = url_origin(cfg->url)) == NULL)
	{
		fprintf(stderr, RELAY_NAME ": the URL must be an http:// or https:// URL\n");
		exit(2);
	}
	if (cfg->secret == NULL || cfg->secret[0] == '\0')
	{
		fprintf(stderr, RELAY_NAME ": no signing secret: use WAITLIST_RELAY_SECRET or --secret\n");
		exit(2);
	}
	/* a request that outlives its lease could be delivered twice at once */
	if (cfg->timeout_ms >= (long) cfg->lease_s * 1000)
	{
		fprintf(stderr, RELAY_NAME ": --timeout (%ld ms) must be shorter than --lease (%d s)\n",
				cfg->timeout_ms, cfg->lease_s);
		exit(2);
	}
	if (cfg->consumer == NULL)
	{
		static char consumer[300];
		char		host[256];

		if (gethostname(host, sizeof(host)) != 0)
			strcpy(host, "localhost");
		host[sizeof(host) - 1] = '\0';
		snprintf(consumer, sizeof(consumer), "%s:%ld", host, (long) getpid());
		cfg->consumer = consumer;
	}
	if (strlen(cfg->consumer) < 1 || strlen(cfg->consumer) > 200)
	{
		fprintf(stderr, RELAY_NAME ": the consumer name must be 1 to 200 bytes\n");
		exit(2);
	}
}

/* ------------------------------------------------------------------------
 * Signals
 * ------------------------------------------------------------------------ */

/* Count the signal and wake the main loop; async-signal-safe only. */
static void
on_stop_signal(int signo)
{
	int			saved = errno;
	ssize_t		rc;

	(void) signo;
	if (stop_signals < 2)
		stop_signals++;
	rc = write(signal_pipe[1], "x", 1);
	(void) rc;
	errno = saved;
}

/* Set up the self-pipe and the SIGTERM/SIGINT handlers; ignore SIGPIPE. */
static void
setup_signals(void)
{
	struct sigaction sa;
	int			i;

	if (pipe(signal_pipe) != 0)
		die("pipe: %s", strerror(errno));
	for (i = 0; i < 2; i++)
	{
		fcntl(signal_pipe[i], F_SETFL, fcntl(signal_pipe[i], F_GETFL) | O_NONBLOCK);
		fcntl(signal_pipe[i], F_SETFD, FD_CLOEXEC);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

/* Empty the self-pipe after a wake-up. */
static void
drain_signal_pipe(void)
{
	char		buf[64];

	while (read(signal_pipe[0], buf, sizeof(buf)) > 0)
		;
}

/* ------------------------------------------------------------------------
 * Database
 * ------------------------------------------------------------------------ */

/* Forget a connection that failed; in-flight requests carry on. */
static void
db_drop(Relay *r, const char *why)
{
	char	   *msg;

	if (r->conn == NULL)
		return;
	msg = one_line(why);
	log_msg("database connection lost: %s", msg);
	free(msg);
	PQfinish(r->conn);
	r->conn = NULL;
	r->next_connect_ms = now_ms();
	r->reconnect_ms = RECONNECT_MIN_MS;
}

/* Server notices and asynchronous errors: into our log, on one line. */
static void
on_notice(void *arg, const char *message)
{
	char	   *msg = one_line(message);

	(void) arg;
	log_msg("server: %s", msg);
	free(msg);
}

/* A NOTIFY may mean new rows: claim at the next chance. */
static void
db_take_notifies(Relay *r)
{
	PGnotify   *n;

	while (r->conn != NULL && (n = PQnotifies(r->conn)) != NULL)
	{
		r->claim_now = true;
		PQfreemem(n);
	}
}

/* Run a command whose result is not needed; false (and logged) on failure. */
static bool
db_command(Relay *r, const char *sql)
{
	PGresult   *res = PQexec(r->conn, sql);
	bool		ok = PQresultStatus(res) == PGRES_COMMAND_OK ||
		PQresultStatus(res) == PGRES_TUPLES_OK;

	if (!ok)
	{
		char	   *msg = one_line(PQresultErrorMessage(res));

		log_msg("%s: %s", sql, msg);
		free(msg);
	}
	PQclear(res);
	return ok;
}

/* Look up the schema of the extension's functions; false (and logged) if none. */
static bool
db_api_schema(Relay *r)
{
	PGresult   *res = PQexec(r->conn,
							 "SELECT pg_catalog.quote_ident(n.nspname)"
							 " FROM pg_catalog.pg_extension e"
							 " JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace"
							 " WHERE e.extname OPERATOR(pg_catalog.=) 'waitlist'");
	bool		ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;

	if (ok)
	{
		free(r->api_schema);
		r->api_schema = xstrdup(PQgetvalue(res, 0, 0));
	}
	else if (PQresultStatus(res) == PGRES_TUPLES_OK)
		log_msg("the waitlist extension is not installed in this database");
	else
	{
		char	   *msg = one_line(PQresultErrorMessage(res));

		log_msg("cannot look up the waitlist extension: %s", msg);
		free(msg);
	}
	PQclear(res);
	return ok;
}

/*
 * Connect (blocking) and LISTEN.  On failure schedule the next attempt with
 * a doubling delay; --once gives up instead.
 */
static void
db_connect(Relay *r)
{
	/* (keywords before dbname are defaults that the connection string overrides) */
	const char *keys[] = {"connect_timeout", "dbname", "fallback_application_name", NULL};
	const char *values[] = {"10", r->cfg.dsn, RELAY_NAME, NULL};
	PGconn	   *conn;

	conn = PQconnectdbParams(keys, values, 1);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		char	   *msg = one_line(PQerrorMessage(conn));

		PQfinish(conn);
		if (r->cfg.once)
			die("cannot connect to the database: %s", msg);
		log_msg("cannot connect to the database (retrying in %ld ms): %s", r->reconnect_ms, msg);
		free(msg);
		r->next_connect_ms = now_ms() + r->reconnect_ms;
		r->reconnect_ms = r->reconnect_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : r->reconnect_ms * 2;
		return;
	}
	r->conn = conn;
	PQsetNoticeProcessor(conn, on_notice, NULL);
	/*
	 * created_at goes into the JSON as ISO 8601: make it UTC.  An empty
	 * search_path (as PostgreSQL's own client programs set): objects that
	 * another role creates in a schema of the connection's path, or of the
	 * role's defaults, must not stand in for the extension's functions,
	 * which are called by their schema's name, looked up in pg_extension.
	 */
	if (!db_command(r, "SET TIME ZONE 'UTC'") ||
		!db_command(r, "SELECT pg_catalog.set_config('search_path', '', false)") ||
		!db_api_schema(r))
	{
		db_drop(r, "setup failed");
		return;
	}
	if (r->cfg.listen[0] != '\0')
	{
		char	   *ident = PQescapeIdentifier(conn, r->cfg.listen, strlen(r->cfg.listen));
		char	   *sql;
		bool		ok;

		if (ident == NULL)
			die("bad --listen channel: %s", PQerrorMessage(conn));
		sql = xasprintf("LISTEN %s", ident);
		PQfreemem(ident);
		ok = db_command(r, sql);
		free(sql);
		if (!ok)
		{
			db_drop(r, "LISTEN failed");
			return;
		}
	}
	log_msg("connected as consumer \"%s\"%s%s", r->cfg.consumer,
			r->cfg.listen[0] ? ", listening on " : ", polling only",
			r->cfg.listen);
	r->reconnect_ms = RECONNECT_MIN_MS;
	/* rows may have piled up while we were away */
	r->claim_now = true;
}

/*
 * Tell the database how a request went: ack on success, fail otherwise.
 * Returns false if the connection broke, so the outcome must be reported
 * again later; any other error (a stale lease above all) is final.
 */
static bool
report_delivery(Relay *r, Job *job)
{
	const char *params[3] = {job->outbox_id, job->lease_token, job->error};
	PGresult   *res;

	char	   *sql = job->delivered ?
		xasprintf("SELECT %s.waitlist_outbox_ack($1::bigint, $2::bigint)", r->api_schema) :
		xasprintf("SELECT %s.waitlist_outbox_fail($1::bigint, $2::bigint, $3::text)", r->api_schema);

	res = PQexecParams(r->conn, sql, job->delivered ? 2 : 3, NULL, params, NULL, NULL, 0);
	free(sql);
	db_take_notifies(r);
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
	{
		bool		dead = !job->delivered && PQntuples(res) == 1 &&
			strcmp(PQgetvalue(res, 0, 0), "t") == 0;

		if (job->delivered)
		{
			r->delivered++;
			if (r->cfg.verbose)
				log_msg("outbox %s delivered", job->outbox_id);
		}
		else if (dead)
		{
			r->dead++;
			log_msg("outbox %s dead-lettered: %s", job->outbox_id, job->error);
		}
		else
		{
			r->failed++;
			log_msg("outbox %s failed, will be retried: %s", job->outbox_id, job->error);
		}
	}
	else if (PQstatus(r->conn) == CONNECTION_BAD)
	{
		PQclear(res);
		return false;
	}
	else
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		if (state != NULL && strcmp(state, SQLSTATE_STALE_LEASE) == 0)
			log_msg("outbox %s: lease lost before the %s was recorded (another consumer has it)",
					job->outbox_id, job->delivered ? "delivery" : "failure");
		else
		{
			char	   *msg = one_line(PQresultErrorMessage(res));

			log_msg("outbox %s: recording the %s failed: %s", job->outbox_id,
					job->delivered ? "delivery" : "failure", msg);
			free(msg);
		}
	}
	PQclear(res);
	return true;
}

/*
 * Report a booking request's answer to the saga and ack the row, in one
 * statement: a crash cannot leave the row acked with its answer unreported,
 * nor reported and still due for delivery.  Returns false if the connection
 * broke.
 * If the saga refuses the answer as too late (WL015) or as a second booking
 * (WL016) it has recorded that itself, so only the ack is left, done on its
 * own.  Any other error leaves the row leased; it comes back when the lease
 * runs out, and the booking service gets the same idempotency_key again.
 */
static bool
report_booking(Relay *r, Job *job)
{
	const char *params[5] = {job->outbox_id, job->lease_token, job->offer_id,
		job->reservation_ref ? job->reservation_ref : job->error,
	job->retryable ? "true" : "false"};
	PGresult   *res;
	const char *state;
	char	   *sql = job->reservation_ref ?
		xasprintf("SELECT %s.waitlist_booking_confirmed($3::bigint, $4::text)::text,"
				  " %s.waitlist_outbox_ack($1::bigint, $2::bigint)",
				  r->api_schema, r->api_schema) :
		xasprintf("SELECT %s.waitlist_booking_failed($3::bigint, $4::text, $5::boolean),"
				  " %s.waitlist_outbox_ack($1::bigint, $2::bigint)",
				  r->api_schema, r->api_schema);

	res = PQexecParams(r->conn, sql, job->reservation_ref ? 4 : 5, NULL, params,
					   NULL, NULL, 0);
	free(sql);
	db_take_notifies(r);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
	{
		r->delivered++;
		if (job->reservation_ref == NULL)
			log_msg("outbox %s: booking for offer %s failed (%s), the offer is now %s: %s",
					job->outbox_id, job->offer_id,
					job->retryable ? "retryable" : "final", PQgetvalue(res, 0, 0),
					job->error);
		else if (r->cfg.verbose)
			log_msg("outbox %s: offer %s booked as %s%s", job->outbox_id, job->offer_id,
					job->reservation_ref,
					strcmp(PQgetvalue(res, 0, 0), "true") == 0 ? "" : " (already confirmed)");
		PQclear(res);
		return true;
	}
	if (PQstatus(r->conn) == CONNECTION_BAD)
	{
		PQclear(res);
		return false;
	}
	state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (state != NULL &&
		(strcmp(state, SQLSTATE_BOOKING_TOO_LATE) == 0 ||
		 strcmp(state, SQLSTATE_BOOKED_TWICE) == 0))
	{
		char	   *msg = one_line(PQresultErrorMessage(res));

		log_msg("outbox %s: the booking answer for offer %s was refused and recorded: %s",
				job->outbox_id, job->offer_id, msg);
		free(msg);
		PQclear(res);
		/* (once recorded, a reconnect must not report it again) */
		job->delivered = true;
		return report_delivery(r, job);
	}
	if (state != NULL && strcmp(state, SQLSTATE_STALE_LEASE) == 0)
		log_msg("outbox %s: lease lost before the booking answer was recorded (another consumer has it)",
				job->outbox_id);
	else
	{
		char	   *msg = one_line(PQresultErrorMessage(res));

		log_msg("outbox %s: recording the booking answer for offer %s failed, the row comes back when its lease runs out: %s",
				job->outbox_id, job->offer_id, msg);
		free(msg);
	}
	PQclear(res);
	return true;
}

/* Report a finished request: to the saga for a booking request. */
static bool
report_outcome(Relay *r, Job *job)
{
	if (job->offer_id[0] != '\0' && !job->delivered)
		return report_booking(r, job);
	return report_delivery(r, job);
}

/* Free a job and its request. */
static void
job_free(Job *job)
{
	if (job->easy != NULL)
		curl_easy_cleanup(job->easy);
	curl_slist_free_all(job->headers);
	free(job->body);
	free(job->error);
	free(job->reservation_ref);
	free(job);
}

/* Report every finished request we can; keep the rest for after a reconnect. */
static void
report_outcomes(Relay *r)
{
	while (r->unreported != NULL && r->conn != NULL)
	{
		Job		   *job = r->unreported;

		if (!report_outcome(r, job))
		{
			db_drop(r, PQerrorMessage(r->conn));
			return;
		}
		r->unreported = job->next;
		job_free(job);
		/* an ack may unblock the user's next row, a fail frees a slot */
		r->claim_now = true;
	}
}

/* ------------------------------------------------------------------------
 * HTTP
 * ------------------------------------------------------------------------ */

/* curl write callback: keep the start of the response, swallow the rest. */
static size_t
on_response_data(char *data, size_t size, size_t nmemb, void *arg)
{
	Job		   *job = arg;
	size_t		len = size * nmemb;
	size_t		room = RESPONSE_MAX - job->response_len;
	size_t		take = len < room ? len : room;

	memcpy(job->response + job->response_len, data, take);
	job->response_len += take;
	job->response[job->response_len] = '\0';
	if (take < len)
		job->response_cut = true;
	return len;
}

/* Build the request for a claimed row and add it to the multi handle. */
static void
start_request(Relay *r, Job *job)
{
	char		signature[65];
	char	   *header;

	sign_body(r->cfg.secret, job->body, signature);
	job->headers = curl_slist_append(job->headers, "Content-Type: application/json");
	header = xasprintf("Idempotency-Key: %s", job->outbox_id);
	job->headers = curl_slist_append(job->headers, header);
	free(header);
	header = xasprintf("X-Waitlist-Signature: sha256=%s", signature);
	job->headers = curl_slist_append(job->headers, header);
	free(header);
	/* no "Expect: 100-continue" round trip for bigger bodies */
	job->headers = curl_slist_append(job->headers, "Expect:");
	if (job->headers == NULL)
		die("out of memory");

	job->easy = curl_easy_init();
	if (job->easy == NULL)
		die("curl_easy_init failed");
	curl_easy_setopt(job->easy, CURLOPT_URL, r->cfg.url);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(job->easy, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
	curl_easy_setopt(job->easy, CURLOPT_POST, 1L);
	curl_easy_setopt(job->easy, CURLOPT_POSTFIELDS, job->body);
	curl_easy_setopt(job->easy, CURLOPT_POSTFIELDSIZE, (long) strlen(job->body));
	curl_easy_setopt(job->easy, CURLOPT_HTTPHEADER, job->headers);
	curl_easy_setopt(job->easy, CURLOPT_USERAGENT, RELAY_NAME "/" RELAY_VERSION);
	curl_easy_setopt(job->easy, CURLOPT_TIMEOUT_MS, r->cfg.timeout_ms);
	curl_easy_setopt(job->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(job->easy, CURLOPT_WRITEFUNCTION, on_response_data);
	curl_easy_setopt(job->easy, CURLOPT_WRITEDATA, job);
	curl_easy_setopt(job->easy, CURLOPT_ERRORBUFFER, job->curl_error);
	curl_easy_setopt(job->easy, CURLOPT_PRIVATE, job);
	if (curl_multi_add_handle(r->multi, job->easy) != CURLM_OK)
		die("curl_multi_add_handle failed");
	job->next = r->running;
	r->running = job;
	r->inflight++;
}

/*
 * The reservation_ref of a booking service's answer, or NULL if the body
 * is not a flat JSON object with one "reservation_ref" member whose value
 * is a string of 1 to RESERVATION_REF_MAX printable ASCII characters.
 * There is no JSON library here: whatever cannot be read for sure without
 * one (a nested value, an escape in a key or in the ref, the key twice, a
 * body cut short) is no usable ref rather than a guess, and the saga asks
 * again.  Escapes in other strings are skipped over.
 */
static char *
parse_reservation_ref(const char *body, size_t len)
{
	const char *p = body;
	const char *ref = NULL;
	size_t		ref_len = 0;
	char	   *copy;

	/* a NUL inside would hide the rest */
	if (strlen(body) != len)
		return NULL;
#define SKIP_WS() while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++
	SKIP_WS();
	if (*p++ != '{')
		return NULL;
	SKIP_WS();
	if (*p == '}')
		return NULL;
	for (;;)
	{
		const char *key;
		bool		is_ref;

		if (*p++ != '"')
			return NULL;
		key = p;
		while (*p != '"')
			if (*p == '\0' || *p == '\\' || (unsigned char) *p < 0x20)
				return NULL;
			else
				p++;
		is_ref = (size_t) (p - key) == strlen("reservation_ref") &&
			strncmp(key, "reservation_ref", p - key) == 0;
		p++;
		SKIP_WS();
		if (*p++ != ':')
			return NULL;
		SKIP_WS();
		if (*p == '"')
		{
			const char *value = ++p;
			bool		plain = true;

			while (*p != '"')
			{
				if (*p == '\0' || (unsigned char) *p < 0x20)
					return NULL;
				if ((unsigned char) *p > 0x7e || *p == '\\')
				{
					plain = false;
					if (*p == '\\' && *++p == '\0')
						return NULL;
				}
				p++;
			}
			if (is_ref)
			{
				if (ref != NULL || !plain || p == value ||
					(size_t) (p - value) > RESERVATION_REF_MAX)
					return NULL;
				ref = value;
				ref_len = p - value;
			}
			p++;
		}
		else
		{
			const char *value = p;

			/* numbers, true, false, null: nothing nested */
			if (is_ref)
				return NULL;
			while (*p != '\0' && strchr("+-.0123456789Eaeflnrstu", *p) != NULL)
				p++;
			if (p == value)
				return NULL;
		}
		SKIP_WS();
		if (*p == ',')
		{
			p++;
			SKIP_WS();
			continue;
		}
		if (*p++ != '}')
			return NULL;
		break;
	}
	SKIP_WS();
#undef SKIP_WS
	if (*p != '\0' || ref == NULL)
		return NULL;
	copy = xmalloc(ref_len + 1);
	memcpy(copy, ref, ref_len);
	copy[ref_len] = '\0';
	return copy;
}

/*
 * Turn a booking service's answer into the report for the saga: a
 * reservation_ref, or an error and whether the saga may ask again.  Only
 * 409 says the seat is gone; any other answer may come out differently the
 * next time.
 */
static void
booking_answer(Job *job, long status)
{
	if (status >= 200 && status <= 299)
	{
		if (!job->response_cut)
			job->reservation_ref = parse_reservation_ref(job->response, job->response_len);
		if (job->reservation_ref == NULL)
			job->error = xasprintf("HTTP %ld without a usable reservation_ref: %.*s",
								   status, RESPONSE_KEEP, job->response);
	}
	else
		job->error = xasprintf("HTTP %ld: %.*s", status, RESPONSE_KEEP, job->response);
	job->retryable = status != 409;
}

/* Turn a finished transfer into an outcome and queue it for reporting. */
static void
finish_request(Relay *r, Job *job, CURLcode code)
{
	long		status = 0;
	Job		  **link;

	for (link = &r->running; *link != job; link = &(*link)->next)
		;
	*link = job->next;
	curl_multi_remove_handle(r->multi, job->easy);
	r->inflight--;
	if (code == CURLE_OK)
	{
		curl_easy_getinfo(job->easy, CURLINFO_RESPONSE_CODE, &status);
		if (job->offer_id[0] != '\0')
			booking_answer(job, status);
		else if (status >= 200 && status <= 299)
			job->delivered = true;
		else
			job->error = xasprintf("HTTP %ld: %.*s", status, RESPONSE_KEEP, job->response);
	}
	else
	{
		job->error = xstrdup(job->curl_error[0] ? job->curl_error : curl_easy_strerror(code));
		job->retryable = true;
	}
	if (job->error != NULL)
	{
		size_t		len;

		sanitize(job->error);
		len = strlen(job->error);
		while (len > 0 && job->error[len - 1] == ' ')
			job->error[--len] = '\0';
	}
	curl_easy_cleanup(job->easy);
	job->easy = NULL;
	curl_slist_free_all(job->headers);
	job->headers = NULL;

	/* report in completion order */
	job->next = NULL;
	if (r->unreported == NULL)
		r->unreported = job;
	else
	{
		Job		   *last = r->unreported;

		while (last->next != NULL)
			last = last->next;
		last->next = job;
	}
}

/* Collect the transfers curl has finished. */
static void
collect_finished(Relay *r)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(r->multi, &left)) != NULL)
	{
		char	   *job;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &job);
		finish_request(r, (Job *) job, msg->data.result);
	}
}

/* ------------------------------------------------------------------------
 * Claiming
 * ------------------------------------------------------------------------ */

/*
 * Claim as many rows as there are free request slots (at most --batch) and
 * start a request for each.  The body is built by the database, so every
 * value is correctly escaped JSON.  Returns the number of rows, or -1 on
 * error.
 */
static int
claim(Relay *r)
{
	static const char *sql_format =
		"SELECT c.outbox_id, c.lease_token,"
		" pg_catalog.jsonb_build_object("
		"   'outbox_id', c.outbox_id, 'resource_id', c.resource_id, 'user_id', c.user_id,"
		"   'channel', c.channel, 'event_type', c.event_type, 'payload', c.payload,"
		"   'created_at', c.created_at, 'attempts', c.attempts)::text,"
		" CASE WHEN c.event_type OPERATOR(pg_catalog.=) '" BOOKING_EVENT "'"
		"  THEN c.payload OPERATOR(pg_catalog.->>) 'offer_id' END"
		" FROM %s.waitlist_outbox_claim($1::text, $2::integer,"
		"                            pg_catalog.make_interval(secs => $3::integer),"
		"                            pg_catalog.string_to_array($4::text, ',')) c";
	int			want = r->cfg.concurrency - r->inflight;
	char		want_s[16];
	char		lease_s[16];
	const char *params[4] = {r->cfg.consumer, want_s, lease_s, r->cfg.channels};
	char	   *sql;
	PGresult   *res;
	int			n;
	int			i;

	if (want > r->cfg.batch)
		want = r->cfg.batch;
	snprintf(want_s, sizeof(want_s), "%d", want);
	snprintf(lease_s, sizeof(lease_s), "%d", r->cfg.lease_s);

	sql = xasprintf(sql_format, r->api_schema);
	/*
	 * A NOTIFY that arrives while the claim runs announces rows its snapshot
	 * may not see: it must make the next claim come at once.
	 */
	r->claim_now = false;
	res = PQexecParams(r->conn, sql, 4, NULL, params, NULL, NULL, 0);
	free(sql);
	db_take_notifies(r);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		char	   *msg = one_line(PQresultErrorMessage(res));

		PQclear(res);
		if (PQstatus(r->conn) == CONNECTION_BAD)
		{
			db_drop(r, msg);
			free(msg);
			return -1;
		}
		/* e.g. the extension is not there yet: say so once, keep polling */
		if (r->last_claim_error == NULL || strcmp(r->last_claim_error, msg) != 0)
			log_msg("claim failed: %s", msg);
		free(r->last_claim_error);
		r->last_claim_error = msg;
		return -1;
	}
	free(r->last_claim_error);
	r->last_claim_error = NULL;

	n = PQntuples(res);
	for (i = 0; i < n; i++)
	{
		Job		   *job = xmalloc(sizeof(Job));

		memset(job, 0, sizeof(Job));
		snprintf(job->outbox_id, sizeof(job->outbox_id), "%s", PQgetvalue(res, i, 0));
		snprintf(job->lease_token, sizeof(job->lease_token), "%s", PQgetvalue(res, i, 1));
		job->body = xstrdup(PQgetvalue(res, i, 2));
		if (!PQgetisnull(res, i, 3))
		{
			const char *offer_id = PQgetvalue(res, i, 3);

			/* (the saga writes it; anything else is delivered as a plain row) */
			if (offer_id[0] != '\0' && strlen(offer_id) < sizeof(job->offer_id) &&
				strspn(offer_id, "0123456789") == strlen(offer_id))
				strcpy(job->offer_id, offer_id);
			else
				log_msg("outbox %s: a " BOOKING_EVENT " row without a usable offer_id, delivered as a plain row",
						job->outbox_id);
		}
		start_request(r, job);
	}
	PQclear(res);
	if (r->cfg.verbose && n > 0)
		log_msg("claimed %d row%s", n, n == 1 ? "" : "s");
	/* a full claim: there may be more right away */
	if (n == want && n > 0)
		r->claim_now = true;
	return n;
}

/* ------------------------------------------------------------------------
 * Main loop
 * ------------------------------------------------------------------------ */

/* Milliseconds until the main loop next has something to do by itself. */
static long
wait_budget(Relay *r, bool stopping)
{
	int64_t		now = now_ms();
	int64_t		until = now + 1000;

	if (r->conn == NULL && !stopping)
		until = r->next_connect_ms;
	else if (!stopping && r->inflight < r->cfg.concurrency)
	{
		if (r->claim_now)
			until = now;
		else if (r->next_claim_ms < until)
			until = r->next_claim_ms;
	}
	return until > now ? (long) (until - now) : 0;
}

/* Wait for sockets, the signal pipe and the database; run curl. */
static void
wait_and_run(Relay *r, long timeout_ms)
{
	struct curl_waitfd extra[2];
	unsigned int nextra = 0;
	int			running;
	int			db_slot = -1;

	extra[nextra].fd = signal_pipe[0];
	extra[nextra].events = CURL_WAIT_POLLIN;
	extra[nextra].revents = 0;
	nextra++;
	if (r->conn != NULL && PQsocket(r->conn) >= 0)
	{
		db_slot = (int) nextra;
		extra[nextra].fd = PQsocket(r->conn);
		extra[nextra].events = CURL_WAIT_POLLIN;
		extra[nextra].revents = 0;
		nextra++;
	}

	if (curl_multi_poll(r->multi, extra, nextra, (int) timeout_ms, NULL) != CURLM_OK)
		die("curl_multi_poll failed");
	if (extra[0].revents != 0)
		drain_signal_pipe();
	if (db_slot >= 0 && extra[db_slot].revents != 0)
	{
		if (!PQconsumeInput(r->conn))
			db_drop(r, PQerrorMessage(r->conn));
		else
			db_take_notifies(r);
	}
	if (curl_multi_perform(r->multi, &running) != CURLM_OK)
		die("curl_multi_perform failed");
	collect_finished(r);
}

/*
 * Claim, deliver and report until told to stop (or, with --once, until
 * nothing is deliverable and nothing is in flight).
 */
static void
run(Relay *r)
{
	bool		announced_stop = false;

	r->claim_now = true;
	r->next_connect_ms = now_ms();
	r->reconnect_ms = RECONNECT_MIN_MS;

	for (;;)
	{
		bool		stopping = stop_signals > 0;

		if (stopping && !announced_stop)
		{
			log_msg("stopping: %d request%s in flight", r->inflight, r->inflight == 1 ? "" : "s");
			announced_stop = true;
		}
		if (stop_signals > 1)
		{
			if (r->inflight > 0 || r->unreported != NULL)
				log_msg("abandoning the rows in flight; they come back when their leases run out");
			break;
		}

		/* (stopping, a database that is away is not waited for) */
		if (r->conn == NULL && !stopping && now_ms() >= r->next_connect_ms)
			db_connect(r);
		if (r->conn != NULL)
			report_outcomes(r);

		if (stopping && r->inflight == 0 && (r->unreported == NULL || r->conn == NULL))
			break;

		if (!stopping && r->conn != NULL && r->inflight < r->cfg.concurrency &&
			(r->claim_now || now_ms() >= r->next_claim_ms))
		{
			int			n = claim(r);
			int64_t		now = now_ms();

			if (n > 0)
				r->busy_until_ms = now + r->cfg.poll_ms;
			r->next_claim_ms = now +
				(now < r->busy_until_ms && BUSY_POLL_MS < r->cfg.poll_ms ?
				 BUSY_POLL_MS : r->cfg.poll_ms);
			if (r->cfg.once && n < 0)
				die("claim failed");
			/* --once: done when nothing is deliverable and everything is reported */
			if (r->cfg.once && n == 0 && r->inflight == 0 && r->unreported == NULL)
				break;
		}

		wait_and_run(r, wait_budget(r, stopping));
	}
}

int
main(int argc, char **argv)
{
	Relay		r;

	memset(&r, 0, sizeof(r));
	configure(&r.cfg, argc, argv);
	setup_signals();
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		die("curl_global_init failed");
	r.multi = curl_multi_init();
	if (r.multi == NULL)
		die("curl_multi_init failed");

	log_msg("delivering to %s/... (batch %d, concurrency %d, lease %d s, timeout %ld ms)",
			r.cfg.url_origin, r.cfg.batch, r.cfg.concurrency, r.cfg.lease_s, r.cfg.timeout_ms);
	run(&r);
	log_msg("exiting: %lu delivered, %lu failed, %lu dead-lettered",
			r.delivered, r.failed, r.dead);

	while (r.running != NULL)
	{
		Job		   *job = r.running;

		r.running = job->next;
		curl_multi_remove_handle(r.multi, job->easy);
		job_free(job);
	}
	while (r.unreported != NULL)
	{
		Job		   *job = r.unreported;

		r.unreported = job->next;
		job_free(job);
	}
	if (r.conn != NULL)
		PQfinish(r.conn);
	curl_multi_cleanup(r.multi);
	curl_global_cleanup();
	free(r.cfg.url_origin);
	free(r.last_claim_error);
	return 0;
}
