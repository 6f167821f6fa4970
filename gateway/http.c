/*
 * http.c: the HTTP side (libmicrohttpd): routing, request bodies and their
 * limit, the per-address join limit, replies, and the access log.
 *
 * libmicrohttpd parses HTTP; a pool of --threads threads answers requests,
 * each handler running one database call (db.c) at a time.  A body is
 * gathered up to --max-body bytes (413 beyond, decided from Content-Length
 * when there is one, before reading the body); JSON bodies are parsed by
 * jansson.  Every reply carries Cache-Control: no-store (they are about one
 * fan, or change with every call) and nosniff.
 *
 * The access log has a line per request: address, method, path (an offer
 * token is cut to its first characters: it is the link's secret), status,
 * bytes, milliseconds and the caller's duty.
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "gateway.h"

/* bytes of a too large body read (and dropped) before the connection is cut */
#define DISCARD_MAX (1024 * 1024)
/* longest path kept for the access log */
#define LOG_PATH_MAX 160

typedef struct Request
{
	char	   *body;
	size_t		len;
	bool		too_large;
	size_t		discarded;		/* bytes of a too large body dropped */
	bool		replied;		/* a reply was queued before the body was read */
	struct timespec start;
	int			status;
	size_t		bytes;
	Duty		duty;
	char		method[8];
	char		path[LOG_PATH_MAX];
} Request;

static struct MHD_Daemon *daemon_handle;
static int	in_flight = 0;

/* ------------------------------------------------------------------------
 * The join limit per client address: token buckets in a fixed table.
 * Addresses whose hashes share a slot share its bucket: approximate, and
 * bounded in memory whatever the number of addresses.
 * ------------------------------------------------------------------------ */

#define JOIN_SLOTS 4096

typedef struct JoinBucket
{
	double		tokens;
	double		at;				/* seconds, monotonic */
	bool		used;
} JoinBucket;

static JoinBucket join_buckets[JOIN_SLOTS];
static pthread_mutex_t join_lock = PTHREAD_MUTEX_INITIALIZER;
/* a seed per run: which addresses share a slot cannot be planned */
static uint32_t join_seed;

static double
monotonic_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* true if the address may join now; else *retry_s says when it may */
static bool
admit_join(const char *address, int *retry_s)
{
	uint32_t	hash = 2166136261u ^ join_seed;
	const unsigned char *p;
	JoinBucket *b;
	double		now = monotonic_seconds();
	bool		ok;
	int			colons = 0;

	if (gateway_config.join_rate <= 0)
		return true;
	/* an IPv6 address counts by its /64: one host has a whole /64 */
	for (p = (const unsigned char *) address; *p; p++)
	{
		if (*p == ':' && ++colons == 4 && strstr(address, "::") == NULL)
			break;
		hash = (hash ^ *p) * 16777619u;
	}
	pthread_mutex_lock(&join_lock);
	b = &join_buckets[hash % JOIN_SLOTS];
	if (!b->used)
	{
		b->used = true;
		b->tokens = gateway_config.join_burst;
		b->at = now;
	}
	b->tokens += (now - b->at) * gateway_config.join_rate;
	if (b->tokens > gateway_config.join_burst)
		b->tokens = gateway_config.join_burst;
	b->at = now;
	ok = b->tokens >= 1;
	if (ok)
		b->tokens -= 1;
	else
		*retry_s = (int) ((1 - b->tokens) / gateway_config.join_rate) + 1;
	pthread_mutex_unlock(&join_lock);
	return ok;
}

/* ------------------------------------------------------------------------
 * Replies
 * ------------------------------------------------------------------------ */

void
gateway_json_reply(Reply *reply, int status, json_t *body)
{
	reply->status = status;
	reply->content_type = "application/json";
	reply->body = json_dumps(body, JSON_COMPACT);
	json_decref(body);
}

/* A problem (RFC 9457) as a JSON object; detail may be NULL. */
static json_t *
problem_body(int status, const char *slug, const char *title, const char *detail,
			 const char *sqlstate)
{
	json_t	   *body = json_object();
	char		type[96];

	snprintf(type, sizeof(type), "urn:waitlist:problem:%s", slug);
	json_object_set_new(body, "type", json_string(type));
	json_object_set_new(body, "title", json_string(title));
	json_object_set_new(body, "status", json_integer(status));
	/* a message with invalid UTF-8 has no JSON string: leave it out */
	if (detail != NULL)
	{
		json_t	   *text = json_string(detail);

		if (text != NULL)
			json_object_set_new(body, "detail", text);
	}
	if (sqlstate != NULL)
		json_object_set_new(body, "sqlstate", json_string(sqlstate));
	return body;
}

static void
problem_reply(Reply *reply, int status, json_t *body)
{
	free(reply->body);
	gateway_json_reply(reply, status, body);
	reply->content_type = "application/problem+json";
}

void
gateway_problem(Reply *reply, int status, const char *slug, const char *title,
				const char *detail, const char *sqlstate)
{
	problem_reply(reply, status, problem_body(status, slug, title, detail, sqlstate));
}

/* 413, for a body over --max-body */
static void
body_too_large(Reply *reply)
{
	char	   *detail = gateway_asprintf("The body may be at most %d bytes.",
										  gateway_config.max_body);

	gateway_problem(reply, 413, "body-too-large", "Body too large", detail, NULL);
	free(detail);
}

static enum MHD_Result
send_reply(struct MHD_Connection *connection, Request *req, Reply *reply, const char *allow)
{
	struct MHD_Response *response;
	enum MHD_Result ret;
	size_t		len = reply->body ? strlen(reply->body) : 0;

	response = MHD_create_response_from_buffer(len, reply->body ? reply->body : (void *) "",
											   reply->body ? MHD_RESPMEM_MUST_FREE
											   : MHD_RESPMEM_PERSISTENT);
	if (response == NULL)
		return MHD_NO;
	reply->body = NULL;			/* the response owns it now */
	if (len > 0 || reply->content_type != NULL)
		MHD_add_response_header(response, "Content-Type",
								reply->content_type ? reply->content_type : "application/json");
	MHD_add_response_header(response, "Cache-Control", "no-store");
	MHD_add_response_header(response, "X-Content-Type-Options", "nosniff");
	if (reply->retry_after[0] != '\0')
		MHD_add_response_header(response, "Retry-After", reply->retry_after);
	if (reply->location[0] != '\0')
		MHD_add_response_header(response, "Location", reply->location);
	if (allow != NULL)
		MHD_add_response_header(response, "Allow", allow);
	if (reply->status == 401)
		MHD_add_response_header(response, "WWW-Authenticate", "Bearer realm=\"waitlist\"");
	if (reply->html)
	{
		char	   *csp = gateway_asprintf("default-src 'none'; script-src 'nonce-%s'; "
										   "style-src 'nonce-%s'; connect-src 'self'; "
										   "img-src 'none'; base-uri 'none'; form-action 'none'; "
										   "frame-ancestors 'none'",
										   reply->nonce, reply->nonce);

		MHD_add_response_header(response, "Content-Security-Policy", csp);
		MHD_add_response_header(response, "Referrer-Policy", "no-referrer");
		MHD_add_response_header(response, "X-Frame-Options", "DENY");
		free(csp);
	}
	if (gateway_shutting_down())
		MHD_add_response_header(response, "Connection", "close");
	req->status = reply->status;
	req->bytes = len;
	ret = MHD_queue_response(connection, (unsigned int) reply->status, response);
	MHD_destroy_response(response);
	return ret;
}

/* ------------------------------------------------------------------------
 * Request helpers
 * ------------------------------------------------------------------------ */

static const char *
header(struct MHD_Connection *connection, const char *name)
{
	return MHD_lookup_connection_value(connection, MHD_HEADER_KIND, name);
}

static void
client_address(struct MHD_Connection *connection, char *out, size_t outlen)
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

	out[0] = '\0';
	if (info == NULL || info->client_addr == NULL ||
		getnameinfo(info->client_addr,
					info->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					: sizeof(struct sockaddr_in),
					out, (socklen_t) outlen, NULL, 0, NI_NUMERICHOST) != 0)
		snprintf(out, outlen, "-");
}

/* A positive bigint in a path ("42"); false if it is not one. */
static bool
parse_id(const char *s, size_t len, char *out, size_t outlen)
{
	char		digits[24];
	size_t		i;

	if (len == 0 || len >= sizeof(digits) || len >= outlen)
		return false;
	for (i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	memcpy(digits, s, len);
	digits[len] = '\0';
	errno = 0;
	(void) strtoll(digits, NULL, 10);
	if (errno == ERANGE)
		return false;
	memcpy(out, digits, len + 1);
	return true;
}

/* The body as a JSON object (an empty body is {}); false: reply has a 400. */
static bool
body_object(Request *req, struct MHD_Connection *connection, json_t **out, Reply *reply)
{
	const char *type = header(connection, "Content-Type");
	json_error_t error;
	json_t	   *body;

	if (req->len == 0)
	{
		*out = json_object();
		return true;
	}
	if (type == NULL || strncasecmp(type, "application/json", 16) != 0 ||
		(type[16] != '\0' && type[16] != ';' && type[16] != ' '))
	{
		gateway_problem(reply, 415, "unsupported-media-type", "Unsupported media type",
						"Send the body as application/json.", NULL);
		return false;
	}
	body = json_loadb(req->body, req->len, JSON_REJECT_DUPLICATES, &error);
	if (body == NULL || !json_is_object(body))
	{
		char	   *detail = body == NULL
			? gateway_asprintf("The body is not JSON: %s (line %d, column %d).",
							   error.text, error.line, error.column)
			: gateway_strdup("The body must be a JSON object.");

		json_decref(body);
		gateway_problem(reply, 400, "malformed-json", "Malformed JSON", detail, NULL);
		free(detail);
		return false;
	}
	*out = body;
	return true;
}

/*
 * Check the members of a body: only those named in allowed (a
 * comma-separated list), strings and integers where the names say so.
 * false: reply has a 422.
 */
static bool
check_members(json_t *body, const char *strings, const char *integers, Reply *reply)
{
	const char *key;
	json_t	   *value;

	json_object_foreach(body, key, value)
	{
		char		pattern[64];
		bool		is_string,
					is_integer;

		snprintf(pattern, sizeof(pattern), ",%s,", key);
		is_string = strstr(strings, pattern) != NULL;
		is_integer = strstr(integers, pattern) != NULL;
		if ((!is_string && !is_integer) || strlen(key) > 40 || strchr(key, ',') != NULL)
		{
			char	   *detail = gateway_asprintf("The body has a member \"%.40s\" this call does not take.",
												  key);

			gateway_problem(reply, 422, "invalid-input", "Invalid input", detail, NULL);
			free(detail);
			return false;
		}
		if ((is_string && !json_is_string(value)) ||
			(is_integer && (!json_is_integer(value) ||
							json_integer_value(value) < -2147483648LL ||
							json_integer_value(value) > 2147483647LL)))
		{
			char	   *detail = gateway_asprintf("\"%s\" must be %s.", key,
												  is_string ? "a string" : "an integer");

			gateway_problem(reply, 422, "invalid-input", "Invalid input", detail, NULL);
			free(detail);
			return false;
		}
	}
	return true;
}

static const char *
member_string(json_t *body, const char *name)
{
	return json_string_value(json_object_get(body, name));
}

/* an integer member as text, or NULL */
static const char *
member_integer(json_t *body, const char *name, char *buf, size_t buflen)
{
	json_t	   *v = json_object_get(body, name);

	if (v == NULL)
		return NULL;
	snprintf(buf, buflen, "%lld", (long long) json_integer_value(v));
	return buf;
}

static json_t *
json_text(const char *s)
{
	json_t	   *v = s ? json_string(s) : NULL;

	return v ? v : json_null();
}

static json_t *
json_bigint(const char *s)
{
	return s ? json_integer(strtoll(s, NULL, 10)) : json_null();
}

static json_t *
json_bool(const char *s)
{
	return s ? json_boolean(strcmp(s, "t") == 0) : json_null();
}

/* ------------------------------------------------------------------------
 * Who may call what
 * ------------------------------------------------------------------------ */

/*
 * Does the caller have one of the duties in mask (bits of Duty)?  If not,
 * reply says why: 401 without credentials, 403 with the wrong ones.
 */
static bool
allowed(const Caller *caller, unsigned mask, Reply *reply)
{
	if (mask & (1u << caller->duty))
		return true;
	if (caller->duty == DUTY_NONE && caller->auth_error != NULL)
		gateway_problem(reply, 401, "unauthenticated", "Authentication failed",
						caller->auth_error, NULL);
	else if (caller->duty == DUTY_NONE)
		gateway_problem(reply, 401, "unauthenticated", "Authentication required",
						"Send Authorization: Bearer with a fan's token or a service key.", NULL);
	else
		gateway_problem(reply, 403, "forbidden", "Forbidden",
						"These credentials do not allow this call.", NULL);
	return false;
}

#define DUTIES(...) duty_mask((Duty[]){__VA_ARGS__, DUTY_NONE})
static unsigned
duty_mask(const Duty *duties)
{
	unsigned	m = 0;

	for (; *duties != DUTY_NONE; duties++)
		m |= 1u << *duties;
	return m;
}

static void
not_yours(Reply *reply, const char *what)
{
	char	   *detail = gateway_asprintf("This %s is not yours.", what);

	gateway_problem(reply, 403, "not-yours", "Forbidden", detail, NULL);
	free(detail);
}

/* ------------------------------------------------------------------------
 * The endpoints
 * ------------------------------------------------------------------------ */

#define TIMESTAMP(x) "pg_catalog.to_char((" x ") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/*
 * The members of an entry that join and status share: its ids, and what
 * waitlist_status() says of it, from columns 3 to 7 of both statements
 * (state, position, offer_id, offer_expires_at, band).
 */
static json_t *
entry_object(const char *entry_id, const char *resource_id, const char *user_id,
			 char *const *values)
{
	json_t	   *out = json_object();

	json_object_set_new(out, "entry_id", json_bigint(entry_id));
	json_object_set_new(out, "resource_id", json_text(resource_id));
	json_object_set_new(out, "user_id", json_text(user_id));
	json_object_set_new(out, "state", json_text(values[2]));
	json_object_set_new(out, "position", json_bigint(values[3]));
	json_object_set_new(out, "band", json_text(values[6]));
	json_object_set_new(out, "offer_id", json_bigint(values[4]));
	json_object_set_new(out, "offer_expires_at", json_text(values[5]));
	return out;
}

static void
join(const Caller *caller, const char *resource_id, Request *req,
	 struct MHD_Connection *connection, Reply *reply)
{
	json_t	   *body;
	const char *user_id;
	char		priority_buf[16],
				quantity_buf[16];
	const char *priority,
			   *quantity;
	DbCall		call = {0};

	if (!allowed(caller, DUTIES(DUTY_FAN, DUTY_APP), reply) ||
		!body_object(req, connection, &body, reply))
		return;
	if (!check_members(body, ",user_id,", ",priority,quantity,", reply))
		goto done;
	user_id = member_string(body, "user_id");
	priority = member_integer(body, "priority", priority_buf, sizeof(priority_buf));
	quantity = member_integer(body, "quantity", quantity_buf, sizeof(quantity_buf));
	if (caller->duty == DUTY_FAN)
	{
		char		address[64];
		int			retry_s = 1;

		if (user_id != NULL && strcmp(user_id, caller->user_id) != 0)
		{
			gateway_problem(reply, 403, "not-yours", "Forbidden",
							"A fan joins as the user their token names.", NULL);
			goto done;
		}
		/* the application decides priorities, not the fan */
		if (priority != NULL)
		{
			gateway_problem(reply, 403, "forbidden", "Forbidden",
							"A fan cannot choose their priority.", NULL);
			goto done;
		}
		user_id = caller->user_id;
		client_address(connection, address, sizeof(address));
		if (!admit_join(address, &retry_s))
		{
			gateway_problem(reply, 429, "rate-limited", "Too many joins",
							"This address has joined too often; try again later.", NULL);
			snprintf(reply->retry_after, sizeof(reply->retry_after), "%d", retry_s);
			goto done;
		}
	}
	else if (user_id == NULL)
	{
		gateway_problem(reply, 422, "invalid-input", "Invalid input",
						"A service joins for a user: the body needs \"user_id\".", NULL);
		goto done;
	}

	call.sql = "SELECT j.entry_id, o.joined_in_transaction, s.state, s.position, s.offer_id, "
		TIMESTAMP("s.offer_expires_at") ", s.band "
		"FROM waitlist_join($1::pg_catalog.text, $2::pg_catalog.text, coalesce($3::pg_catalog.int4, 0), coalesce($4::pg_catalog.int4, 1)) AS j(entry_id), "
		"LATERAL waitlist_entry_owner(j.entry_id) o, LATERAL waitlist_status(j.entry_id) s";
	call.nparams = 4;
	call.params[0] = resource_id;
	call.params[1] = user_id;
	call.params[2] = priority;
	call.params[3] = quantity;
	if (gateway_db_call(caller, &call, reply))
	{
		bool		created = call.values[1] && strcmp(call.values[1], "t") == 0;
		json_t	   *out = entry_object(call.values[0], resource_id, user_id, call.values);

		json_object_set_new(out, "created", json_boolean(created));
		snprintf(reply->location, sizeof(reply->location), "/v1/waitlist/%s", call.values[0]);
		gateway_json_reply(reply, created ? 201 : 200, out);
	}
	gateway_db_call_free(&call);
done:
	json_decref(body);
}

static void
entry_status(const Caller *caller, const char *entry_id, Reply *reply)
{
	DbCall		call = {0};

	if (!allowed(caller, DUTIES(DUTY_FAN, DUTY_APP), reply))
		return;
	/* read-only both: the owner is checked here, before anything is shown */
	call.sql = "SELECT o.user_id, o.resource_id, s.state, s.position, s.offer_id, "
		TIMESTAMP("s.offer_expires_at") ", s.band, "
		"pg_catalog.date_part('epoch', s.estimated_wait)::bigint, s.estimate_note "
		"FROM waitlist_entry_owner($1::pg_catalog.int8) o, waitlist_status($1::pg_catalog.int8) s";
	call.nparams = 1;
	call.params[0] = entry_id;
	if (gateway_db_call(caller, &call, reply))
	{
		if (caller->duty == DUTY_FAN && strcmp(call.values[0], caller->user_id) != 0)
			not_yours(reply, "entry");
		else
		{
			json_t	   *out = entry_object(entry_id, call.values[1], call.values[0], call.values);

			json_object_set_new(out, "estimated_wait_seconds", json_bigint(call.values[7]));
			json_object_set_new(out, "estimate_note", json_text(call.values[8]));
			gateway_json_reply(reply, 200, out);
		}
	}
	gateway_db_call_free(&call);
}

static void
entry_leave(const Caller *caller, const char *entry_id, Reply *reply)
{
	DbCall		call = {0};

	if (!allowed(caller, DUTIES(DUTY_FAN, DUTY_APP), reply))
		return;
	call.params[0] = entry_id;
	if (caller->duty == DUTY_FAN)
	{
		/* the leave only runs if the entry is the fan's, in one transaction */
		call.sql = "SELECT o.user_id OPERATOR(pg_catalog.=) $2::pg_catalog.text, "
			"CASE WHEN o.user_id OPERATOR(pg_catalog.=) $2::pg_catalog.text THEN waitlist_leave($1::pg_catalog.int8) END "
			"FROM waitlist_entry_owner($1::pg_catalog.int8) o";
		call.nparams = 2;
		call.params[1] = caller->user_id;
	}
	else
	{
		call.sql = "SELECT true, waitlist_leave($1::pg_catalog.int8)";
		call.nparams = 1;
	}
	if (gateway_db_call(caller, &call, reply))
	{
		if (strcmp(call.values[0], "t") != 0)
			not_yours(reply, "entry");
		else
			reply->status = 204;
	}
	gateway_db_call_free(&call);
}

/* accept or decline, by offer id or by token */
static void
offer_decide(const Caller *caller, const char *id, bool by_token, bool accept,
			 struct MHD_Connection *connection, Reply *reply)
{
	const char *key = header(connection, "Idempotency-Key");
	Caller		as_token;
	DbCall		call = {0};

	if (by_token)
	{
		/* the link is the credential: whoever holds it may answer */
		gateway_link_caller(&as_token);
		caller = &as_token;
	}
	else if (!allowed(caller, DUTIES(DUTY_FAN, DUTY_APP), reply))
		return;
	if (accept && (key == NULL || key[0] == '\0' || strlen(key) > GATEWAY_MAX_ID_BYTES))
	{
		gateway_problem(reply, 400, "idempotency-key-required", "Idempotency-Key required",
						"An accept needs an Idempotency-Key header of 1 to 200 bytes, the same "
						"on every retry.", NULL);
		return;
	}
	/*
	 * $1 the offer (its id or token); an accept's key, then a fan's user id.
	 * Every parameter is cast to its type: an untyped one would be text, and
	 * a text overload of an API function would be chosen over the API's.
	 */
	call.params[0] = id;
	call.nparams = 1;
	if (accept)
		call.params[call.nparams++] = key;
	if (!by_token && caller->duty == DUTY_FAN)
		call.params[call.nparams++] = caller->user_id;
	if (by_token)
		call.sql = accept
			? "SELECT true, a.state, a.reservation_ref, NULL FROM waitlist_accept_token($1::pg_catalog.text, $2::pg_catalog.text) a"
			: "SELECT true, 'DECLINED', NULL, waitlist_decline_token($1::pg_catalog.text)";
	else if (caller->duty == DUTY_FAN)
		/* the call only runs if the offer is the fan's, in one transaction */
		call.sql = accept
			? "SELECT q.mine, q.r OPERATOR(pg_catalog.->>) 'state',"
			" q.r OPERATOR(pg_catalog.->>) 'reservation_ref', NULL FROM"
			" (SELECT o.user_id OPERATOR(pg_catalog.=) $3::pg_catalog.text AS mine,"
			"  CASE WHEN o.user_id OPERATOR(pg_catalog.=) $3::pg_catalog.text"
			"   THEN pg_catalog.row_to_json(waitlist_accept($1::pg_catalog.int8, $2::pg_catalog.text)) END AS r"
			"  FROM waitlist_offer_owner($1::pg_catalog.int8) o OFFSET 0) q"
			: "SELECT o.user_id OPERATOR(pg_catalog.=) $2::pg_catalog.text, 'DECLINED', NULL, "
			"CASE WHEN o.user_id OPERATOR(pg_catalog.=) $2::pg_catalog.text THEN waitlist_decline($1::pg_catalog.int8) END "
			"FROM waitlist_offer_owner($1::pg_catalog.int8) o";
	else
		call.sql = accept
			? "SELECT true, a.state, a.reservation_ref, NULL FROM waitlist_accept($1::pg_catalog.int8, $2::pg_catalog.text) a"
			: "SELECT true, 'DECLINED', NULL, waitlist_decline($1::pg_catalog.int8)";
	if (gateway_db_call(caller, &call, reply))
	{
		const char *state = call.values[1] ? call.values[1] : "";

		if (strcmp(call.values[0], "t") != 0)
			not_yours(reply, "offer");
		else if (accept && (strcmp(state, "FAILED") == 0 || strcmp(state, "EXPIRED") == 0))
		{
			bool		failed = strcmp(state, "FAILED") == 0;
			json_t	   *problem = problem_body(409, failed ? "booking-failed" : "offer-expired",
											   failed ? "Booking failed" : "Offer expired",
											   failed
											   ? "The seat could not be booked; the fan is back in line."
											   : "The booking did not complete in time; the offer expired.",
											   NULL);

			/* the problem carries the state too */
			json_object_set_new(problem, "state", json_string(state));
			problem_reply(reply, 409, problem);
		}
		else
		{
			json_t	   *out = json_object();

			if (!by_token)
				json_object_set_new(out, "offer_id", json_bigint(id));
			json_object_set_new(out, "state", json_text(state));
			if (accept)
				json_object_set_new(out, "reservation_ref", json_text(call.values[2]));
			else
				json_object_set_new(out, "declined", json_bool(call.values[3]));
			gateway_json_reply(reply, accept && strcmp(state, "ACCEPTING") == 0 ? 202 : 200, out);
		}
	}
	gateway_db_call_free(&call);
}

static void
release(const Caller *caller, const char *resource_id, Request *req,
		struct MHD_Connection *connection, Reply *reply)
{
	json_t	   *body;
	char		quantity_buf[16];
	const char *event_id,
			   *quantity;
	DbCall		call = {0};

	if (!allowed(caller, DUTIES(DUTY_BOOKING), reply) ||
		!body_object(req, connection, &body, reply))
		return;
	if (!check_members(body, ",event_id,", ",quantity,", reply))
		goto done;
	event_id = member_string(body, "event_id");
	quantity = member_integer(body, "quantity", quantity_buf, sizeof(quantity_buf));
	if (event_id == NULL)
	{
		gateway_problem(reply, 422, "invalid-input", "Invalid input",
						"A release needs \"event_id\", the booking system's id of the "
						"cancellation: a repeated id is recorded once.", NULL);
		goto done;
	}
	call.sql = "SELECT waitlist_release($1::pg_catalog.text, coalesce($2::pg_catalog.int4, 1), $3::pg_catalog.text)";
	call.nparams = 3;
	call.params[0] = resource_id;
	call.params[1] = quantity;
	call.params[2] = event_id;
	if (gateway_db_call(caller, &call, reply))
	{
		json_t	   *out = json_object();

		json_object_set_new(out, "resource_id", json_text(resource_id));
		json_object_set_new(out, "event_id", json_text(event_id));
		json_object_set_new(out, "recorded", json_bool(call.values[0]));
		gateway_json_reply(reply, 200, out);
	}
	gateway_db_call_free(&call);
done:
	json_decref(body);
}

static void
metrics(const Caller *caller, Reply *reply)
{
	DbCall		call = {0};

	if (!allowed(caller, DUTIES(DUTY_MONITOR, DUTY_ADMIN), reply))
		return;
	call.sql = "SELECT waitlist_metrics()";
	if (gateway_db_call(caller, &call, reply))
	{
		reply->status = 200;
		reply->content_type = "text/plain; version=0.0.4; charset=utf-8";
		reply->body = gateway_strdup(call.values[0] ? call.values[0] : "");
	}
	gateway_db_call_free(&call);
}

static void
healthz(Reply *reply)
{
	Caller		nobody = {DUTY_NONE, "", ""};
	DbCall		call = {0};

	call.sql = "SELECT 1";
	if (gateway_db_call(&nobody, &call, reply))
		gateway_json_reply(reply, 200, json_pack("{s:s}", "status", "ok"));
	gateway_db_call_free(&call);
}

/* ------------------------------------------------------------------------
 * Routing
 * ------------------------------------------------------------------------ */

static bool
has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool
has_suffix(const char *s, size_t len, const char *suffix)
{
	size_t		sl = strlen(suffix);

	return len > sl && memcmp(s + len - sl, suffix, sl) == 0;
}

/* A path parameter that is not empty and has no NUL; copied into out. */
static bool
path_param(const char *s, size_t len, char *out, size_t outlen)
{
	if (len == 0 || len >= outlen)
		return false;
	memcpy(out, s, len);
	out[len] = '\0';
	return true;
}

static const char *
route(const char *method, const char *url, const Caller *caller, Request *req,
	  struct MHD_Connection *connection, Reply *reply)
{
	size_t		len = strlen(url);
	/* libmicrohttpd sends no body for HEAD */
	bool		is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	bool		is_post = strcmp(method, "POST") == 0;
	bool		is_delete = strcmp(method, "DELETE") == 0;
	char		param[1024];

	if (strcmp(url, "/healthz") == 0)
	{
		if (!is_get)
			return "GET, HEAD";
		healthz(reply);
	}
	else if (strcmp(url, "/metrics") == 0)
	{
		if (!is_get)
			return "GET, HEAD";
		metrics(caller, reply);
	}
	else if (has_prefix(url, "/o/") && path_param(url + 3, len - 3, param, sizeof(param)) &&
			 strchr(param, '/') == NULL)
	{
		if (!is_get)
			return "GET, HEAD";
		gateway_offer_page(param, reply);
	}
	else if (has_prefix(url, "/v1/resources/") && has_suffix(url, len, "/waitlist:join") &&
			 path_param(url + 14, len - 14 - 14, param, sizeof(param)))
	{
		if (!is_post)
			return "POST";
		join(caller, param, req, connection, reply);
	}
	else if (has_prefix(url, "/v1/resources/") && has_suffix(url, len, "/capacity:release") &&
			 path_param(url + 14, len - 14 - 17, param, sizeof(param)))
	{
		if (!is_post)
			return "POST";
		release(caller, param, req, connection, reply);
	}
	else if (has_prefix(url, "/v1/waitlist/") &&
			 parse_id(url + 13, len - 13, param, sizeof(param)))
	{
		if (is_get)
			entry_status(caller, param, reply);
		else if (is_delete)
			entry_leave(caller, param, reply);
		else
			return "GET, HEAD, DELETE";
	}
	else if (has_prefix(url, "/v1/offers/") &&
			 (has_suffix(url, len, ":accept") || has_suffix(url, len, ":decline")))
	{
		bool		accept = has_suffix(url, len, ":accept");
		size_t		idlen = len - 11 - (accept ? 7 : 8);
		bool		by_token;

		if (!path_param(url + 11, idlen, param, sizeof(param)) || strchr(param, '/') != NULL)
			goto unknown;
		if (!is_post)
			return "POST";
		by_token = !parse_id(param, idlen, param, sizeof(param));
		offer_decide(caller, param, by_token, accept, connection, reply);
	}
	else
	{
unknown:
		gateway_problem(reply, 404, "no-such-endpoint", "Not found",
						"No endpoint has this path; see the OpenAPI document.", NULL);
	}
	return NULL;
}

/* the path for the log: an offer token is the link's secret */
static void
log_path(const char *url, char *out, size_t outlen)
{
	const char *token = NULL;

	if (has_prefix(url, "/o/"))
		token = url + 3;
	else if (has_prefix(url, "/v1/offers/") && !(url[11] >= '0' && url[11] <= '9'))
		token = url + 11;
	if (token != NULL)
	{
		const char *colon = strrchr(token, ':');

		snprintf(out, outlen, "%.*s%.8s...%s", (int) (token - url), url, token,
				 colon ? colon : "");
	}
	else
		snprintf(out, outlen, "%s", url);
	for (; *out; out++)
		if ((unsigned char) *out < 0x20 || (unsigned char) *out > 0x7e || *out == '"')
			*out = '?';
}

static enum MHD_Result
handle(void *cls, struct MHD_Connection *connection, const char *url, const char *method,
	   const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	Request    *req = *con_cls;
	Reply		reply = {0};
	Caller		caller;
	const char *why;
	const char *allow;
	enum MHD_Result ret;

	if (req == NULL)
	{
		const char *length = header(connection, "Content-Length");

		req = calloc(1, sizeof(Request));
		if (req == NULL)
			return MHD_NO;
		*con_cls = req;
		__atomic_add_fetch(&in_flight, 1, __ATOMIC_SEQ_CST);
		clock_gettime(CLOCK_MONOTONIC, &req->start);
		snprintf(req->method, sizeof(req->method), "%s", method);
		log_path(url, req->path, sizeof(req->path));
		if (gateway_shutting_down())
		{
			gateway_problem(&reply, 503, "shutting-down", "Shutting down",
							"The gateway is stopping; try again.", NULL);
			strcpy(reply.retry_after, "1");
			req->replied = true;
			return send_reply(connection, req, &reply, NULL);
		}
		if (length != NULL && strtoll(length, NULL, 10) > gateway_config.max_body)
		{
			body_too_large(&reply);
			req->replied = true;
			return send_reply(connection, req, &reply, NULL);
		}
		return MHD_YES;
	}
	if (*upload_data_size > 0)
	{
		/*
		 * Too large (answered 413 once it is read): the rest is read and
		 * dropped, up to a bound; a longer stream is cut off unanswered.
		 */
		if (req->too_large)
		{
			req->discarded += *upload_data_size;
			*upload_data_size = 0;
			return req->discarded > DISCARD_MAX ? MHD_NO : MHD_YES;
		}
		if (!req->replied)
		{
			if (req->len + *upload_data_size > (size_t) gateway_config.max_body)
			{
				req->too_large = true;
				req->discarded = *upload_data_size;
			}
			else
			{
				char	   *grown = realloc(req->body, req->len + *upload_data_size + 1);

				if (grown == NULL)
					return MHD_NO;
				req->body = grown;
				memcpy(req->body + req->len, upload_data, *upload_data_size);
				req->len += *upload_data_size;
				req->body[req->len] = '\0';
			}
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (req->replied)
		return MHD_YES;
	req->replied = true;
	if (req->too_large)
	{
		body_too_large(&reply);
		return send_reply(connection, req, &reply, NULL);
	}

	/*
	 * Bad credentials are refused by the endpoints that need credentials;
	 * those that need none (offer links, health) ignore them.
	 */
	if (gateway_authenticate(header(connection, "Authorization"), &caller, &why) == AUTH_INVALID)
		caller.auth_error = why;
	req->duty = caller.duty;
	allow = route(method, url, &caller, req, connection, &reply);
	if (allow != NULL)
	{
		char	   *detail = gateway_asprintf("This path takes %s.", allow);

		gateway_problem(&reply, 405, "method-not-allowed", "Method not allowed", detail, NULL);
		free(detail);
	}
	if (reply.status == 0)
	{
		gateway_log("no reply for %s %s", method, req->path);
		gateway_problem(&reply, 500, "internal", "Internal error", NULL, NULL);
	}
	ret = send_reply(connection, req, &reply, allow);
	return ret;
}

static void
completed(void *cls, struct MHD_Connection *connection, void **con_cls,
		  enum MHD_RequestTerminationCode toe)
{
	Request    *req = *con_cls;
	struct timespec end;
	char		address[64];

	if (req == NULL)
		return;
	if (!gateway_config.quiet)
	{
		clock_gettime(CLOCK_MONOTONIC, &end);
		client_address(connection, address, sizeof(address));
		gateway_log("%s \"%s %s\" %d %zu %.1fms %s%s", address, req->method, req->path,
					req->status, req->bytes,
					(double) (end.tv_sec - req->start.tv_sec) * 1e3 +
					(double) (end.tv_nsec - req->start.tv_nsec) / 1e6,
					gateway_duty_name(req->duty),
					toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (aborted)");
	}
	free(req->body);
	free(req);
	*con_cls = NULL;
	__atomic_sub_fetch(&in_flight, 1, __ATOMIC_SEQ_CST);
}

/* ------------------------------------------------------------------------
 * The server
 * ------------------------------------------------------------------------ */

/* libmicrohttpd's own messages, as lines of our log */
static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	char		message[512];
	size_t		len;

	vsnprintf(message, sizeof(message), fmt, ap);
	len = strlen(message);
	while (len > 0 && (message[len - 1] == '\n' || message[len - 1] == ' '))
		message[--len] = '\0';
	gateway_log("%s", message);
}

bool
gateway_http_start(void)
{
	char		seed[9];

	struct addrinfo hints = {0},
			   *addr = NULL;
	char		port[8];
	int			rc;
	const union MHD_DaemonInfo *info;

	gateway_random_hex(seed, 4);
	join_seed = (uint32_t) strtoul(seed, NULL, 16);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
	snprintf(port, sizeof(port), "%d", gateway_config.listen_port);
	rc = getaddrinfo(gateway_config.listen_host, port, &hints, &addr);
	if (rc != 0)
	{
		gateway_log("cannot listen on %s: %s", gateway_config.listen_host, gai_strerror(rc));
		return false;
	}
	daemon_handle = MHD_start_daemon(MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD |
									 MHD_USE_ITC | MHD_USE_ERROR_LOG |
									 (addr->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0),
									 (uint16_t) gateway_config.listen_port,
									 NULL, NULL, handle, NULL,
									 MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
									 MHD_OPTION_SOCK_ADDR, addr->ai_addr,
									 MHD_OPTION_THREAD_POOL_SIZE, (unsigned int) gateway_config.threads,
									 MHD_OPTION_CONNECTION_LIMIT, (unsigned int) gateway_config.max_connections,
									 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) gateway_config.idle_timeout_s,
									 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) 65536,
									 MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
									 MHD_OPTION_END);
	freeaddrinfo(addr);
	if (daemon_handle == NULL)
	{
		gateway_log("cannot listen on %s:%d", gateway_config.listen_host,
					gateway_config.listen_port);
		return false;
	}
	info = MHD_get_daemon_info(daemon_handle, MHD_DAEMON_INFO_BIND_PORT);
	gateway_log("listening on %s:%u (%d threads, up to %d database connections)",
				gateway_config.listen_host, info ? info->port : (unsigned) gateway_config.listen_port,
				gateway_config.threads, gateway_config.pool_size);
	return true;
}

void
gateway_http_quiesce(void)
{
	MHD_socket	fd = MHD_quiesce_daemon(daemon_handle);

	if (fd != MHD_INVALID_SOCKET)
		close(fd);
}

int
gateway_http_in_flight(void)
{
	return __atomic_load_n(&in_flight, __ATOMIC_SEQ_CST);
}

void
gateway_http_stop(void)
{
	MHD_stop_daemon(daemon_handle);
}
