/*
 * gateway.h: what the files of waitlist-gateway share.
 *
 *   main.c   settings (flags, environment), start-up, signals, shutdown
 *   http.c   the HTTP server: routing, bodies, responses, limits, access log
 *   db.c     the connection pool, one request's transaction, SQLSTATE map
 *   auth.c   who is calling: fans' JWTs and services' keys
 *   page.c   the fan's offer page
 */
#ifndef WAITLIST_GATEWAY_H
#define WAITLIST_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define GATEWAY_NAME		"waitlist-gateway"
#define GATEWAY_VERSION		"1.1"

/* the extension refuses longer identifiers (user ids, keys, event ids) */
#define GATEWAY_MAX_ID_BYTES 200
/* longest role name PostgreSQL keeps (NAMEDATALEN - 1) */
#define GATEWAY_MAX_ROLE_BYTES 63

/* A duty, as the operations guide names them; each runs as its own role. */
typedef enum Duty
{
	DUTY_NONE = 0,				/* nobody: no credentials */
	DUTY_FAN,					/* a fan, by JWT: runs as the fan role (app) */
	DUTY_TOKEN,					/* whoever holds an offer link (token) */
	DUTY_APP,					/* a service key of duty app */
	DUTY_BOOKING,				/* ... booking */
	DUTY_ADMIN,					/* ... admin */
	DUTY_MONITOR				/* ... monitor */
} Duty;

/* A service key from the keys file. */
typedef struct ServiceKey
{
	Duty		duty;
	char		role[GATEWAY_MAX_ROLE_BYTES + 1];	/* "" = the login role */
	char	   *secret;
} ServiceKey;

/* Settings, from flags and environment (main.c). */
typedef struct GatewayConfig
{
	const char *dsn;
	char	   *listen_host;
	int			listen_port;
	int			threads;		/* HTTP worker threads */
	int			pool_size;		/* database connections, at most */
	int			pool_wait_ms;	/* longest wait for a free connection */
	int			statement_timeout_ms;
	int			retries;		/* of a transient failure, before 503 */
	int			max_body;		/* bytes */
	int			max_connections;
	int			idle_timeout_s;
	int			shutdown_timeout_s;
	double		join_rate;		/* joins per second per client address; 0 off */
	int			join_burst;
	unsigned char *jwt_secret;	/* NULL: fans cannot log in */
	size_t		jwt_secret_len;
	int			jwt_leeway_s;
	char		fan_role[GATEWAY_MAX_ROLE_BYTES + 1];
	char		token_role[GATEWAY_MAX_ROLE_BYTES + 1];
	ServiceKey *keys;
	int			nkeys;
	bool		quiet;			/* no access log */
} GatewayConfig;

extern GatewayConfig gateway_config;

/* Who is calling, once authenticated (auth.c). */
typedef struct Caller
{
	Duty		duty;
	const char *role;			/* to run as; "" = the login role */
	char		user_id[GATEWAY_MAX_ID_BYTES + 1];	/* a fan's sub */
	const char *auth_error;		/* credentials given, but refused: why */
} Caller;

/* How authentication went. */
typedef enum AuthResult
{
	AUTH_NONE,					/* no Authorization header */
	AUTH_OK,
	AUTH_INVALID				/* present, but not a key nor a valid JWT */
} AuthResult;

extern AuthResult gateway_authenticate(const char *authorization, Caller *caller,
									   const char **why);
extern void gateway_link_caller(Caller *caller);
extern const char *gateway_duty_name(Duty duty);
extern bool gateway_parse_duty(const char *name, Duty *duty);

/* A response being built: a status, a body, and a few headers. */
typedef struct Reply
{
	int			status;
	char	   *body;			/* malloc'ed, NUL-terminated */
	const char *content_type;
	char		retry_after[16];	/* "" = none */
	char		location[96];	/* "" = none */
	bool		html;			/* an offer page: its own security headers */
	char		nonce[40];		/* the page's script and style nonce */
} Reply;

/* A problem (RFC 9457) reply; detail may be NULL. */
extern void gateway_problem(Reply *reply, int status, const char *slug, const char *title,
							const char *detail, const char *sqlstate);
extern void gateway_json_reply(Reply *reply, int status, json_t *body);

/* One call: the SQL, its parameters, and what came back (db.c). */
#define CALL_MAX_PARAMS 8
typedef struct DbCall
{
	const char *sql;
	int			nparams;
	const char *params[CALL_MAX_PARAMS];
	/* out: the first row's columns, as text (NULL for SQL NULL) */
	int			nrows;
	int			ncols;
	char	   *values[16];
	/* out: the error, if any */
	char		sqlstate[6];
	char	   *message;
	char	   *detail;
	char	   *hint;
	bool		setup_failed;	/* setting the role failed: a configuration error */
} DbCall;

extern void gateway_pool_init(void);
extern void gateway_pool_close(void);
/* cancel what every connection in use runs; returns how many */
extern int	gateway_pool_cancel_all(void);

/*
 * Run one statement as the caller's role, in a transaction of its own,
 * retrying transient failures; true if it ran.  Otherwise reply has the
 * problem already.
 */
extern bool gateway_db_call(const Caller *caller, DbCall *call, Reply *reply);
extern void gateway_db_call_free(DbCall *call);
/* map an error of the database to a reply (the one SQLSTATE table) */
extern void gateway_reply_for_error(const DbCall *call, Reply *reply);

/* the offer page of a token (page.c) */
extern void gateway_offer_page(const char *token, Reply *reply);

/* HTTP (http.c) */
extern bool gateway_http_start(void);
extern void gateway_http_quiesce(void);
extern int	gateway_http_in_flight(void);
extern void gateway_http_stop(void);

/* helpers (main.c) */
extern void gateway_log(const char *fmt,...) __attribute__((format(printf, 1, 2)));
extern void *gateway_malloc(size_t size);
extern char *gateway_strdup(const char *s);
extern char *gateway_asprintf(const char *fmt,...) __attribute__((format(printf, 1, 2)));
extern void gateway_random_hex(char *out, size_t bytes);
extern bool gateway_shutting_down(void);

#endif							/* WAITLIST_GATEWAY_H */
