/*
 * waitlist-gateway: the waitlist extension's SQL API over HTTP, and the
 * fan's offer page behind an offer link.
 *
 * This file: settings from flags and environment (as waitlist-relay takes
 * them), start-up, and the signals.  SIGTERM or SIGINT stops accepting
 * connections, lets the requests in flight finish (at most
 * --shutdown-timeout seconds; each is bounded by the statement timeout),
 * then exits 0; a second signal exits at once.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "gateway.h"

GatewayConfig gateway_config;

static volatile int shutting_down = 0;

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

/* One line to stderr, with a UTC timestamp; lines of threads do not mix. */
void
gateway_log(const char *fmt,...)
{
	char		line[2048];
	char		stamp[32];
	struct timespec ts;
	struct tm	tm;
	va_list		ap;
	int			len;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
	len = snprintf(line, sizeof(line), "%s.%03ld " GATEWAY_NAME ": ", stamp, ts.tv_nsec / 1000000);
	va_start(ap, fmt);
	vsnprintf(line + len, sizeof(line) - (size_t) len - 1, fmt, ap);
	va_end(ap);
	strcat(line, "\n");
	/* one write(2): atomic for lines this short */
	if (write(STDERR_FILENO, line, strlen(line)) < 0)
		return;
}

static void
die(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, GATEWAY_NAME ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void
usage_error(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, GATEWAY_NAME ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry \"" GATEWAY_NAME " --help\" for more information.\n");
	exit(2);
}

void *
gateway_malloc(size_t size)
{
	void	   *p = malloc(size);

	if (p == NULL)
	{
		gateway_log("out of memory");
		abort();
	}
	return p;
}

char *
gateway_strdup(const char *s)
{
	size_t		len = strlen(s) + 1;

	return memcpy(gateway_malloc(len), s, len);
}

char *
gateway_asprintf(const char *fmt,...)
{
	va_list		ap;
	int			len;
	char	   *s;

	va_start(ap, fmt);
	len = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (len < 0)
		abort();
	s = gateway_malloc((size_t) len + 1);
	va_start(ap, fmt);
	vsnprintf(s, (size_t) len + 1, fmt, ap);
	va_end(ap);
	return s;
}

/* bytes random bytes from the kernel, as hex (out holds 2 * bytes + 1). */
void
gateway_random_hex(char *out, size_t bytes)
{
	unsigned char buf[64];
	size_t		i;

	if (bytes > sizeof(buf) || getrandom(buf, bytes, 0) != (ssize_t) bytes)
	{
		gateway_log("getrandom failed: %s", strerror(errno));
		abort();
	}
	for (i = 0; i < bytes; i++)
		snprintf(out + 2 * i, 3, "%02x", buf[i]);
	out[2 * bytes] = '\0';
}

bool
gateway_shutting_down(void)
{
	return __atomic_load_n(&shutting_down, __ATOMIC_SEQ_CST) != 0;
}

/* ------------------------------------------------------------------------
 * Settings
 * ------------------------------------------------------------------------ */

static void
usage(void)
{
	printf(GATEWAY_NAME " serves the waitlist extension's API over HTTP.\n"
		   "\n"
		   "Each request is one transaction that calls the SQL API as the PostgreSQL\n"
		   "role of the caller's duty: fans (a bearer JWT, HS256, whose sub is their\n"
		   "user id) run as --fan-role and may act on their own entries and offers\n"
		   "only; services present a key of the keys file, which names their duty and\n"
		   "role; an offer link (GET /o/TOKEN, and accept or decline by token) runs as\n"
		   "--token-role and needs no login.  Errors are application/problem+json with\n"
		   "the SQLSTATE; see docs/gateway.md and docs/openapi.json.\n"
		   "\n"
		   "Usage: " GATEWAY_NAME " [OPTION]...\n"
		   "\n"
		   "Options (environment variable in brackets; flags win):\n"
		   "  -d, --dbname=CONNINFO        database connection string [WAITLIST_GATEWAY_DSN]\n"
		   "                               (default: libpq's PG* environment)\n"
		   "  -l, --listen=HOST:PORT       address to serve (default 127.0.0.1:8080)\n"
		   "                               [WAITLIST_GATEWAY_LISTEN]\n"
		   "  -P, --pool-size=N            database connections, at most (default 8)\n"
		   "                               [WAITLIST_GATEWAY_POOL_SIZE]\n"
		   "  -T, --threads=N              HTTP worker threads (default: the pool size)\n"
		   "                               [WAITLIST_GATEWAY_THREADS]\n"
		   "      --pool-wait=MS           longest wait for a free connection, then 503\n"
		   "                               (default 2000) [WAITLIST_GATEWAY_POOL_WAIT]\n"
		   "  -t, --statement-timeout=MS   statement_timeout of each request (default 5000)\n"
		   "                               [WAITLIST_GATEWAY_STATEMENT_TIMEOUT]\n"
		   "  -r, --retries=N              retries of a transient failure (serialization\n"
		   "                               failure, deadlock, lock or statement timeout, lost\n"
		   "                               connection) before 503 (default 2)\n"
		   "                               [WAITLIST_GATEWAY_RETRIES]\n"
		   "  -b, --max-body=BYTES         largest request body, else 413 (default 16384)\n"
		   "                               [WAITLIST_GATEWAY_MAX_BODY]\n"
		   "      --max-connections=N      open HTTP connections, at most (default 1000)\n"
		   "                               [WAITLIST_GATEWAY_MAX_CONNECTIONS]\n"
		   "      --idle-timeout=SECONDS   close an idle HTTP connection (default 30)\n"
		   "                               [WAITLIST_GATEWAY_IDLE_TIMEOUT]\n"
		   "      --shutdown-timeout=SECONDS  on SIGTERM, wait this long for requests in\n"
		   "                               flight (default 10) [WAITLIST_GATEWAY_SHUTDOWN_TIMEOUT]\n"
		   "      --join-rate=PER_SECOND   joins per second per client address, 0: no limit\n"
		   "                               (default 5) [WAITLIST_GATEWAY_JOIN_RATE]\n"
		   "      --join-burst=N           joins a client address may make at once\n"
		   "                               (default 20) [WAITLIST_GATEWAY_JOIN_BURST]\n"
		   "      --jwt-secret-file=FILE   HS256 key of fans' JWTs, the file's bytes less a\n"
		   "                               final newline [WAITLIST_GATEWAY_JWT_SECRET_FILE];\n"
		   "                               or the key itself in WAITLIST_GATEWAY_JWT_SECRET\n"
		   "      --jwt-leeway=SECONDS     clock skew allowed on exp and nbf (default 30)\n"
		   "      --fan-role=ROLE          role fans' requests run as (duty app)\n"
		   "                               [WAITLIST_GATEWAY_FAN_ROLE]\n"
		   "      --token-role=ROLE        role offer-link requests run as (duty token)\n"
		   "                               [WAITLIST_GATEWAY_TOKEN_ROLE]\n"
		   "  -k, --keys-file=FILE         service keys: lines \"DUTY ROLE KEY\" (duty app,\n"
		   "                               booking, admin or monitor; ROLE - for the login\n"
		   "                               role; # comments) [WAITLIST_GATEWAY_KEYS_FILE]\n"
		   "  -q, --quiet                  no access log\n"
		   "  -V, --version                print the version and exit\n"
		   "  -h, --help                   print this help and exit\n"
		   "\n"
		   "The roles are taken with SET LOCAL ROLE semantics, so the login role must be\n"
		   "a member of each; a role left empty runs requests as the login role.  Keep\n"
		   "the files readable by the gateway's user only.  Exit status: 0 stopped by a\n"
		   "signal, 1 error, 2 bad usage.\n");
}

static const char *
env(const char *name)
{
	const char *v = getenv(name);

	return (v != NULL && v[0] != '\0') ? v : NULL;
}

static long
parse_int(const char *name, const char *value, long min, long max)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || v < min || v > max)
		usage_error("%s must be an integer between %ld and %ld, not \"%s\"", name, min, max, value);
	return v;
}

static double
parse_rate(const char *name, const char *value)
{
	char	   *end;
	double		v;

	errno = 0;
	v = strtod(value, &end);
	if (errno != 0 || end == value || *end != '\0' || !(v >= 0 && v <= 1000000))
		usage_error("%s must be a number between 0 and 1000000, not \"%s\"", name, value);
	return v;
}

/* A role setting: at most NAMEDATALEN - 1 bytes; quoted by the server. */
static void
set_role(char *dst, const char *name, const char *value)
{
	if (value == NULL || strcmp(value, "-") == 0)
		value = "";
	if (strlen(value) > GATEWAY_MAX_ROLE_BYTES)
		usage_error("%s is longer than %d bytes", name, GATEWAY_MAX_ROLE_BYTES);
	strcpy(dst, value);
}

/* A whole file, as read; NULL with errno if it cannot be read. */
static char *
read_file(const char *path, size_t *len_out)
{
	FILE	   *f = fopen(path, "rb");
	char	   *buf;
	size_t		cap = 4096,
				len = 0,
				n;

	if (f == NULL)
		return NULL;
	buf = gateway_malloc(cap + 1);
	while ((n = fread(buf + len, 1, cap - len, f)) > 0)
	{
		len += n;
		if (len == cap)
		{
			char	   *bigger;

			if (cap >= 1024 * 1024)
				die("%s is larger than 1 MB", path);
			cap *= 2;
			bigger = gateway_malloc(cap + 1);
			memcpy(bigger, buf, len);
			free(buf);
			buf = bigger;
		}
	}
	fclose(f);
	buf[len] = '\0';
	*len_out = len;
	return buf;
}

static void
load_jwt_secret(const char *file)
{
	const char *inline_secret = env("WAITLIST_GATEWAY_JWT_SECRET");
	size_t		len;
	char	   *secret;

	if (file != NULL)
	{
		secret = read_file(file, &len);
		if (secret == NULL)
			die("could not read the JWT secret file \"%s\": %s", file, strerror(errno));
		/* a final newline is the editor's, not the key's */
		if (len > 0 && secret[len - 1] == '\n')
			secret[--len] = '\0';
		if (len > 0 && secret[len - 1] == '\r')
			secret[--len] = '\0';
	}
	else if (inline_secret != NULL)
	{
		secret = gateway_strdup(inline_secret);
		len = strlen(secret);
	}
	else
		return;
	/* RFC 7518: an HS256 key is at least as long as the hash */
	if (len < 32)
		die("the JWT secret is %zu bytes long; HS256 needs at least 32", len);
	gateway_config.jwt_secret = (unsigned char *) secret;
	gateway_config.jwt_secret_len = len;
}

static void
load_keys(const char *file)
{
	size_t		len;
	char	   *text = read_file(file, &len);
	char	   *line,
			   *save = NULL;
	int			lineno = 0;

	if (text == NULL)
		die("could not read the keys file \"%s\": %s", file, strerror(errno));
	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
	{
		char	   *duty,
				   *role,
				   *secret,
				   *extra,
				   *field_save = NULL;
		ServiceKey *key;
		int			i;

		lineno++;
		duty = strtok_r(line, " \t\r", &field_save);
		if (duty == NULL || duty[0] == '#')
			continue;
		role = strtok_r(NULL, " \t\r", &field_save);
		secret = strtok_r(NULL, " \t\r", &field_save);
		extra = strtok_r(NULL, " \t\r", &field_save);
		if (role == NULL || secret == NULL || extra != NULL)
			die("%s:%d: expected \"DUTY ROLE KEY\"", file, lineno);
		gateway_config.keys = realloc(gateway_config.keys,
									  sizeof(ServiceKey) * (size_t) (gateway_config.nkeys + 1));
		if (gateway_config.keys == NULL)
			die("out of memory");
		key = &gateway_config.keys[gateway_config.nkeys];
		if (!gateway_parse_duty(duty, &key->duty) || key->duty == DUTY_FAN ||
			key->duty == DUTY_TOKEN)
			die("%s:%d: unknown duty \"%s\" (app, booking, admin or monitor)", file, lineno, duty);
		if (strlen(role) > GATEWAY_MAX_ROLE_BYTES)
			die("%s:%d: the role is longer than %d bytes", file, lineno, GATEWAY_MAX_ROLE_BYTES);
		strcpy(key->role, strcmp(role, "-") == 0 ? "" : role);
		/* a short key can be guessed */
		if (strlen(secret) < 16)
			die("%s:%d: a key must be at least 16 characters long", file, lineno);
		for (i = 0; i < gateway_config.nkeys; i++)
			if (strcmp(gateway_config.keys[i].secret, secret) == 0)
				die("%s:%d: the same key is on an earlier line", file, lineno);
		key->secret = gateway_strdup(secret);
		gateway_config.nkeys++;
	}
	free(text);
}

/* host:port, [v6host]:port */
static void
set_listen(const char *value)
{
	const char *colon = strrchr(value, ':');
	size_t		hostlen;

	if (colon == NULL || colon == value)
		usage_error("--listen must be HOST:PORT, not \"%s\"", value);
	hostlen = (size_t) (colon - value);
	if (value[0] == '[' && hostlen >= 2 && value[hostlen - 1] == ']')
	{
		value++;
		hostlen -= 2;
	}
	free(gateway_config.listen_host);
	gateway_config.listen_host = gateway_malloc(hostlen + 1);
	memcpy(gateway_config.listen_host, value, hostlen);
	gateway_config.listen_host[hostlen] = '\0';
	gateway_config.listen_port = (int) parse_int("the port of --listen", colon + 1, 0, 65535);
}

static void
configure(int argc, char **argv)
{
	enum
	{
		OPT_POOL_WAIT = 256, OPT_MAX_CONNECTIONS, OPT_IDLE_TIMEOUT, OPT_SHUTDOWN_TIMEOUT,
		OPT_JOIN_RATE, OPT_JOIN_BURST, OPT_JWT_SECRET_FILE, OPT_JWT_LEEWAY, OPT_FAN_ROLE,
		OPT_TOKEN_ROLE
	};
	static const struct option options[] = {
		{"dbname", required_argument, NULL, 'd'},
		{"listen", required_argument, NULL, 'l'},
		{"pool-size", required_argument, NULL, 'P'},
		{"threads", required_argument, NULL, 'T'},
		{"pool-wait", required_argument, NULL, OPT_POOL_WAIT},
		{"statement-timeout", required_argument, NULL, 't'},
		{"retries", required_argument, NULL, 'r'},
		{"max-body", required_argument, NULL, 'b'},
		{"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
		{"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
		{"shutdown-timeout", required_argument, NULL, OPT_SHUTDOWN_TIMEOUT},
		{"join-rate", required_argument, NULL, OPT_JOIN_RATE},
		{"join-burst", required_argument, NULL, OPT_JOIN_BURST},
		{"jwt-secret-file", required_argument, NULL, OPT_JWT_SECRET_FILE},
		{"jwt-leeway", required_argument, NULL, OPT_JWT_LEEWAY},
		{"fan-role", required_argument, NULL, OPT_FAN_ROLE},
		{"token-role", required_argument, NULL, OPT_TOKEN_ROLE},
		{"keys-file", required_argument, NULL, 'k'},
		{"quiet", no_argument, NULL, 'q'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	const char *listen = env("WAITLIST_GATEWAY_LISTEN");
	const char *pool_size = env("WAITLIST_GATEWAY_POOL_SIZE");
	const char *threads = env("WAITLIST_GATEWAY_THREADS");
	const char *pool_wait = env("WAITLIST_GATEWAY_POOL_WAIT");
	const char *statement_timeout = env("WAITLIST_GATEWAY_STATEMENT_TIMEOUT");
	const char *retries = env("WAITLIST_GATEWAY_RETRIES");
	const char *max_body = env("WAITLIST_GATEWAY_MAX_BODY");
	const char *max_connections = env("WAITLIST_GATEWAY_MAX_CONNECTIONS");
	const char *idle_timeout = env("WAITLIST_GATEWAY_IDLE_TIMEOUT");
	const char *shutdown_timeout = env("WAITLIST_GATEWAY_SHUTDOWN_TIMEOUT");
	const char *join_rate = env("WAITLIST_GATEWAY_JOIN_RATE");
	const char *join_burst = env("WAITLIST_GATEWAY_JOIN_BURST");
	const char *jwt_file = env("WAITLIST_GATEWAY_JWT_SECRET_FILE");
	const char *jwt_leeway = NULL;
	const char *fan_role = env("WAITLIST_GATEWAY_FAN_ROLE");
	const char *token_role = env("WAITLIST_GATEWAY_TOKEN_ROLE");
	const char *keys_file = env("WAITLIST_GATEWAY_KEYS_FILE");
	int			opt;

	gateway_config.dsn = env("WAITLIST_GATEWAY_DSN");
	while ((opt = getopt_long(argc, argv, "d:l:P:T:t:r:b:k:qVh", options, NULL)) != -1)
	{
		switch (opt)
		{
			case 'd':
				gateway_config.dsn = optarg;
				break;
			case 'l':
				listen = optarg;
				break;
			case 'P':
				pool_size = optarg;
				break;
			case 'T':
				threads = optarg;
				break;
			case OPT_POOL_WAIT:
				pool_wait = optarg;
				break;
			case 't':
				statement_timeout = optarg;
				break;
			case 'r':
				retries = optarg;
				break;
			case 'b':
				max_body = optarg;
				break;
			case OPT_MAX_CONNECTIONS:
				max_connections = optarg;
				break;
			case OPT_IDLE_TIMEOUT:
				idle_timeout = optarg;
				break;
			case OPT_SHUTDOWN_TIMEOUT:
				shutdown_timeout = optarg;
				break;
			case OPT_JOIN_RATE:
				join_rate = optarg;
				break;
			case OPT_JOIN_BURST:
				join_burst = optarg;
				break;
			case OPT_JWT_SECRET_FILE:
				jwt_file = optarg;
				break;
			case OPT_JWT_LEEWAY:
				jwt_leeway = optarg;
				break;
			case OPT_FAN_ROLE:
				fan_role = optarg;
				break;
			case OPT_TOKEN_ROLE:
				token_role = optarg;
				break;
			case 'k':
				keys_file = optarg;
				break;
			case 'q':
				gateway_config.quiet = true;
				break;
			case 'V':
				printf(GATEWAY_NAME " " GATEWAY_VERSION "\n");
				exit(0);
			case 'h':
				usage();
				exit(0);
			default:
				fprintf(stderr, "Try \"" GATEWAY_NAME " --help\" for more information.\n");
				exit(2);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument \"%s\"", argv[optind]);

	set_listen(listen ? listen : "127.0.0.1:8080");
	gateway_config.pool_size = pool_size ? (int) parse_int("--pool-size", pool_size, 1, 1000) : 8;
	gateway_config.threads = threads ? (int) parse_int("--threads", threads, 1, 1000)
		: gateway_config.pool_size;
	gateway_config.pool_wait_ms = pool_wait ? (int) parse_int("--pool-wait", pool_wait, 0, 60000) : 2000;
	gateway_config.statement_timeout_ms = statement_timeout
		? (int) parse_int("--statement-timeout", statement_timeout, 1, 3600000) : 5000;
	gateway_config.retries = retries ? (int) parse_int("--retries", retries, 0, 10) : 2;
	gateway_config.max_body = max_body ? (int) parse_int("--max-body", max_body, 1, 1048576) : 16384;
	gateway_config.max_connections = max_connections
		? (int) parse_int("--max-connections", max_connections, 1, 100000) : 1000;
	gateway_config.idle_timeout_s = idle_timeout
		? (int) parse_int("--idle-timeout", idle_timeout, 1, 3600) : 30;
	gateway_config.shutdown_timeout_s = shutdown_timeout
		? (int) parse_int("--shutdown-timeout", shutdown_timeout, 0, 3600) : 10;
	gateway_config.join_rate = join_rate ? parse_rate("--join-rate", join_rate) : 5;
	gateway_config.join_burst = join_burst ? (int) parse_int("--join-burst", join_burst, 1, 1000000) : 20;
	gateway_config.jwt_leeway_s = jwt_leeway ? (int) parse_int("--jwt-leeway", jwt_leeway, 0, 3600) : 30;
	set_role(gateway_config.fan_role, "--fan-role", fan_role);
	set_role(gateway_config.token_role, "--token-role", token_role);
	load_jwt_secret(jwt_file);
	if (keys_file != NULL)
		load_keys(keys_file);
	/* the login role is a member of every duty's role: fans must not be it */
	if (gateway_config.jwt_secret != NULL && gateway_config.fan_role[0] == '\0')
		usage_error("fans' tokens are accepted (a JWT secret is set), so --fan-role is needed");
}

/* ------------------------------------------------------------------------
 * Start-up and shutdown
 * ------------------------------------------------------------------------ */

int
main(int argc, char **argv)
{
	sigset_t	signals;
	int			sig;
	struct timespec deadline,
				now;

	configure(argc, argv);

	/*
	 * Blocked here, the signals stay blocked in every thread started from
	 * now on; this thread takes them with sigtimedwait().
	 */
	sigemptyset(&signals);
	sigaddset(&signals, SIGTERM);
	sigaddset(&signals, SIGINT);
	pthread_sigmask(SIG_BLOCK, &signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	gateway_pool_init();
	if (!gateway_http_start())
		exit(1);
	if (gateway_config.token_role[0] == '\0')
		gateway_log("warning: no --token-role: offer links run as the login role");

	do
		sig = sigwaitinfo(&signals, NULL);
	while (sig < 0 && errno == EINTR);

	__atomic_store_n(&shutting_down, 1, __ATOMIC_SEQ_CST);
	gateway_log("received %s: finishing %d request(s) in flight", strsignal(sig),
				gateway_http_in_flight());
	gateway_http_quiesce();
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += gateway_config.shutdown_timeout_s;
	for (;;)
	{
		struct timespec pause = {0, 20 * 1000 * 1000};
		bool		abandon = false;

		if (gateway_http_in_flight() == 0)
			break;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > deadline.tv_sec ||
			(now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec))
		{
			gateway_log("shutdown timeout: cancelling %d request(s)", gateway_http_in_flight());
			abandon = true;
		}
		/* a second signal: stop now */
		else if (sigtimedwait(&signals, NULL, &pause) > 0)
		{
			gateway_log("second signal: cancelling %d request(s)", gateway_http_in_flight());
			abandon = true;
		}
		if (abandon)
		{
			struct timespec grace = {0, 100 * 1000 * 1000};
			int			i;

			/*
			 * What the database runs for them is cancelled (a request that
			 * has committed stays committed); they answer 503.  A database
			 * that does not even answer the cancel is left behind.
			 */
			gateway_pool_cancel_all();
			for (i = 0; i < 20 && gateway_http_in_flight() > 0; i++)
				nanosleep(&grace, NULL);
			if (gateway_http_in_flight() > 0)
			{
				gateway_log("%d request(s) stuck: exiting", gateway_http_in_flight());
				_exit(1);
			}
			break;
		}
	}
	gateway_http_stop();
	gateway_pool_close();
	gateway_log("stopped");
	return 0;
}
