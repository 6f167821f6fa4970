/*
 * auth.c: who is calling.
 *
 * "Authorization: Bearer CREDENTIAL" carries either a service key of the
 * keys file (compared in constant time with every key, so that timing
 * tells nothing about which, if any, is near), which names a duty and the
 * role it runs as, or a fan's JWT.  A JWT must be HS256 (no other
 * algorithm, "none" least of all), signed with the configured secret
 * (libjwt verifies the signature), unexpired (exp is required), not before
 * its nbf, and carry the fan's user id as a string sub of 1 to 200 bytes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jwt.h>

#include "gateway.h"

static const struct
{
	Duty		duty;
	const char *name;
}			duty_names[] = {
	{DUTY_NONE, "none"},
	{DUTY_FAN, "fan"},
	{DUTY_TOKEN, "token"},
	{DUTY_APP, "app"},
	{DUTY_BOOKING, "booking"},
	{DUTY_ADMIN, "admin"},
	{DUTY_MONITOR, "monitor"},
};

const char *
gateway_duty_name(Duty duty)
{
	size_t		i;

	for (i = 0; i < sizeof(duty_names) / sizeof(duty_names[0]); i++)
		if (duty_names[i].duty == duty)
			return duty_names[i].name;
	return "?";
}

bool
gateway_parse_duty(const char *name, Duty *duty)
{
	size_t		i;

	for (i = 0; i < sizeof(duty_names) / sizeof(duty_names[0]); i++)
		if (strcmp(duty_names[i].name, name) == 0)
		{
			*duty = duty_names[i].duty;
			return true;
		}
	return false;
}

/* Equal strings, in time that depends on the lengths only. */
static bool
same_secret(const char *a, const char *b)
{
	size_t		la = strlen(a),
				lb = strlen(b),
				i;
	unsigned char diff = la != lb;

	for (i = 0; i < la; i++)
		diff |= (unsigned char) a[i] ^ (unsigned char) b[i % (lb ? lb : 1)];
	return diff == 0;
}

typedef enum ClaimResult
{
	CLAIM_ABSENT,
	CLAIM_INVALID,
	CLAIM_OK
} ClaimResult;

/*
 * A NumericDate claim (RFC 7519: seconds since the epoch, which may have a
 * fraction; libjwt reads integers only, so the claim is read as JSON).
 */
static ClaimResult
numeric_date(jwt_t *jwt, const char *claim, double *out)
{
	char	   *text = jwt_get_grants_json(jwt, claim);
	json_t	   *value;
	ClaimResult result = CLAIM_INVALID;

	if (text == NULL)
		return CLAIM_ABSENT;
	value = json_loads(text, JSON_DECODE_ANY, NULL);
	if (value != NULL && json_is_number(value))
	{
		*out = json_number_value(value);
		result = CLAIM_OK;
	}
	json_decref(value);
	free(text);
	return result;
}

static AuthResult
fan_from_jwt(const char *token, Caller *caller, const char **why)
{
	jwt_t	   *jwt = NULL;
	const char *sub;
	double		exp,
				nbf;
	time_t		now = time(NULL);
	AuthResult	result = AUTH_INVALID;

	if (gateway_config.jwt_secret == NULL)
	{
		*why = "no such key, and fans' tokens are not accepted here";
		return AUTH_INVALID;
	}
	if (jwt_decode(&jwt, token, gateway_config.jwt_secret,
				   (int) gateway_config.jwt_secret_len) != 0 || jwt == NULL)
	{
		*why = "the token is not a JWT signed with this gateway's key";
		goto done;
	}
	if (jwt_get_alg(jwt) != JWT_ALG_HS256)
	{
		*why = "the token is not signed with HS256";
		goto done;
	}
	switch (numeric_date(jwt, "exp", &exp))
	{
		case CLAIM_ABSENT:
			*why = "the token has no exp";
			goto done;
		case CLAIM_INVALID:
			*why = "the token's exp is not a number";
			goto done;
		case CLAIM_OK:
			break;
	}
	if ((double) now > exp + gateway_config.jwt_leeway_s)
	{
		*why = "the token has expired";
		goto done;
	}
	switch (numeric_date(jwt, "nbf", &nbf))
	{
		case CLAIM_ABSENT:
			break;
		case CLAIM_INVALID:
			*why = "the token's nbf is not a number";
			goto done;
		case CLAIM_OK:
			if ((double) now + gateway_config.jwt_leeway_s < nbf)
			{
				*why = "the token is not valid yet";
				goto done;
			}
			break;
	}
	sub = jwt_get_grant(jwt, "sub");
	if (sub == NULL || sub[0] == '\0' || strlen(sub) > GATEWAY_MAX_ID_BYTES)
	{
		*why = "the token's sub is not a user id of 1 to 200 bytes";
		goto done;
	}
	caller->duty = DUTY_FAN;
	caller->role = gateway_config.fan_role;
	strcpy(caller->user_id, sub);
	result = AUTH_OK;
done:
	if (jwt != NULL)
		jwt_free(jwt);
	return result;
}

/* Whoever holds an offer link: the token is the credential. */
void
gateway_link_caller(Caller *caller)
{
	caller->duty = DUTY_TOKEN;
	caller->role = gateway_config.token_role;
	caller->user_id[0] = '\0';
	caller->auth_error = NULL;
}

AuthResult
gateway_authenticate(const char *authorization, Caller *caller, const char **why)
{
	const char *credential;
	const ServiceKey *found = NULL;
	int			i;

	caller->duty = DUTY_NONE;
	caller->role = "";
	caller->user_id[0] = '\0';
	caller->auth_error = NULL;
	*why = NULL;
	if (authorization == NULL)
		return AUTH_NONE;
	if (strncasecmp(authorization, "Bearer ", 7) != 0)
	{
		*why = "use Authorization: Bearer";
		return AUTH_INVALID;
	}
	credential = authorization + 7;
	while (*credential == ' ')
		credential++;
	/* every key is compared, whichever matches */
	for (i = 0; i < gateway_config.nkeys; i++)
		if (same_secret(credential, gateway_config.keys[i].secret) && found == NULL)
			found = &gateway_config.keys[i];
	if (found != NULL)
	{
		caller->duty = found->duty;
		caller->role = found->role;
		return AUTH_OK;
	}
	return fan_from_jwt(credential, caller, why);
}
