/*-------------------------------------------------------------------------
 *
 * token.c
 *	  Signed offer tokens: the keys in waitlist.token_key, signing a token
 *	  that names an offer, and verifying one before an accept or decline.
 *
 * A token is base64url(payload) "." base64url(mac), without padding.  The
 * payload is, in network byte order: a version byte, the key id (4 bytes),
 * the offer id (8), the offer's expires_at in microseconds since the Unix
 * epoch (8), the resource id's length (2) and its bytes.  The mac is
 * HMAC-SHA256 of the payload under the key, computed by PostgreSQL's own
 * HMAC (common/hmac.h) and compared in constant time.  Key material comes
 * from pg_strong_random().
 *
 * The signing key is the one key without verifies_until.  It is read once
 * per transaction, not per token: a promotion signs every offer it makes in
 * one statement.  Reading it takes a ROW SHARE lock on waitlist.token_key
 * that the transaction keeps; a rotation takes EXCLUSIVE, so once it has
 * the lock no transaction is still signing with the old key, and it sees
 * all their offers when it sets how long the old key verifies.  The
 * rotation never queues for the lock: queued, it would hold up every
 * promotion behind one transaction left open after signing.  It tries for
 * a few seconds and otherwise fails, changing nothing.
 *
 * IDENTIFICATION
 *	  src/token.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "common/hmac.h"
#include "common/int.h"
#include "common/sha2.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "store.h"

#define TOKEN_VERSION		1
#define TOKEN_KEY_BYTES		32
#define TOKEN_MAC_BYTES		PG_SHA256_DIGEST_LENGTH
/* version, key id, offer id, expires_at, resource id length */
#define TOKEN_FIXED_BYTES	(1 + 4 + 8 + 8 + 2)
#define TOKEN_MAX_PAYLOAD	(TOKEN_FIXED_BYTES + WAITLIST_MAX_ID_BYTES)

StaticAssertDecl(WAITLIST_MAX_ID_BYTES <= PG_UINT16_MAX,
				 "a resource id's length must fit the token's two bytes");
StaticAssertDecl(WAITLIST_TOKEN_MAX_CHARS >= ((TOKEN_MAX_PAYLOAD + 2) / 3) * 4 + 1 +
				 ((TOKEN_MAC_BYTES + 2) / 3) * 4,
				 "WAITLIST_TOKEN_MAX_CHARS must hold the longest token");

/* Microseconds from the Unix epoch to PostgreSQL's. */
#define UNIX_TO_PG_EPOCH_USECS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)

/* The signing key, as this transaction read it. */
static int32 signing_key_id;
static uint8 signing_key[TOKEN_KEY_BYTES];
static LocalTransactionId signing_key_lxid = InvalidLocalTransactionId;

static WaitlistPlan lock_keys_plan = {
	"LOCK TABLE waitlist.token_key IN ROW SHARE MODE", 0, {InvalidOid}
};

static WaitlistPlan signing_key_plan = {
	"SELECT key_id, secret FROM waitlist.token_key WHERE verifies_until IS NULL",
	0, {InvalidOid}
};

static WaitlistPlan verifying_key_plan = {
	"SELECT secret FROM waitlist.token_key"
	" WHERE key_id OPERATOR(pg_catalog.=) $1"
	"   AND (verifies_until IS NULL"
	"        OR verifies_until OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp())",
	1, {INT4OID}
};

static WaitlistPlan token_offer_plan = {
	"SELECT expires_at FROM waitlist.offer"
	" WHERE resource_id OPERATOR(pg_catalog.=) $1 AND offer_id OPERATOR(pg_catalog.=) $2",
	2, {TEXTOID, INT8OID}
};

/* How long a rotation tries to get the keys' lock, and how often. */
#define TOKEN_ROTATE_TRY_MS		5000
#define TOKEN_ROTATE_POLL_MS	10

/*
 * The old key verifies until the last offer it can have signed a token for
 * expires: every offer there is was made before the lock was granted.
 * Keys past their verifies_until are erased.
 */
static WaitlistPlan retire_key_plan = {
	"WITH erased AS ("
	"  DELETE FROM waitlist.token_key k"
	"  WHERE k.verifies_until OPERATOR(pg_catalog.<=) pg_catalog.now()"
	") UPDATE waitlist.token_key k"
	"  SET verifies_until = GREATEST(pg_catalog.now(),"
	"        (SELECT pg_catalog.max(o.expires_at) FROM waitlist.offer o"
	"         WHERE o.expires_at OPERATOR(pg_catalog.>) pg_catalog.now()))"
	"  WHERE k.verifies_until IS NULL",
	0, {InvalidOid}
};

static WaitlistPlan new_key_plan = {
	"INSERT INTO waitlist.token_key (key_id, secret)"
	" SELECT COALESCE(pg_catalog.max(k.key_id), 0) OPERATOR(pg_catalog.+) 1, $1"
	" FROM waitlist.token_key k"
	" RETURNING key_id",
	1, {BYTEAOID}
};

/*
 * The lock of a rotation, taken only when no transaction holds the signers'
 * lock, so that promotions never wait behind a rotation that waits.
 */
static void
lock_keys_for_rotation(void)
{
	Oid			relid = get_relname_relid("token_key", get_namespace_oid("waitlist", false));
	TimestampTz give_up = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													  TOKEN_ROTATE_TRY_MS);

	if (!OidIsValid(relid))
		elog(ERROR, "table waitlist.token_key does not exist");
	while (!ConditionalLockRelationOid(relid, ExclusiveLock))
	{
		if (GetCurrentTimestamp() >= give_up)
			ereport(ERROR,
					(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
					 errmsg("could not rotate the waitlist token key"),
					 errdetail("Transactions that signed offer tokens with the current key were still open after %d ms.",
							   TOKEN_ROTATE_TRY_MS),
					 errhint("Retry; a transaction left open after it made offers or called waitlist_offer_token() holds rotations off until it ends.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 TOKEN_ROTATE_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* Fresh key material, as a bytea. */
bytea *
waitlist_new_token_key(void)
{
	bytea	   *secret = palloc(VARHDRSZ + TOKEN_KEY_BYTES);

	SET_VARSIZE(secret, VARHDRSZ + TOKEN_KEY_BYTES);
	if (!pg_strong_random(VARDATA(secret), TOKEN_KEY_BYTES))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random token key")));
	return secret;
}

/*
 * Copy a key's secret out of an SPI result; a row not written by us (a
 * superuser's) with a secret of another length signs and verifies nothing.
 */
static void
copy_secret(HeapTuple tuple, TupleDesc tupdesc, int column, uint8 *dst)
{
	bool		isnull;
	bytea	   *secret = DatumGetByteaPP(SPI_getbinval(tuple, tupdesc, column, &isnull));

	if (isnull || VARSIZE_ANY_EXHDR(secret) != TOKEN_KEY_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("waitlist token key has no valid secret"),
				 errdetail("A token key's secret is %d random bytes.", TOKEN_KEY_BYTES),
				 errhint("Make a new key with waitlist_rotate_token_key().")));
	memcpy(dst, VARDATA_ANY(secret), TOKEN_KEY_BYTES);
}

/*
 * The signing key, read (and the rotation lock taken) on the first token of
 * a transaction.  Runs its own SPI connection: it is called from inside the
 * promotion statement too.
 */
static void
load_signing_key(void)
{
	bool		isnull;

	if (signing_key_lxid == MyProc->lxid)
		return;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	waitlist_execute(&lock_keys_plan, NULL, NULL, false, 0);
	waitlist_execute(&signing_key_plan, NULL, NULL, true, 0);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("waitlist has no token signing key"),
				 errdetail("Exactly one row of waitlist.token_key must have no verifies_until; %llu do.",
						   (unsigned long long) SPI_processed),
				 errhint("Make a new key with waitlist_rotate_token_key().")));
	signing_key_id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 1, &isnull));
	copy_secret(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, signing_key);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	signing_key_lxid = MyProc->lxid;
}

/*
 * Forget the signing key read in this transaction: after a rotation, and
 * when a subtransaction aborts (the lock taken in it is gone, and with it
 * the promise that a rotation waits for us).
 */
void
waitlist_forget_token_key(void)
{
	signing_key_lxid = InvalidLocalTransactionId;
}

static void
compute_mac(const uint8 *key, const uint8 *payload, size_t len, uint8 *mac)
{
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);

	if (ctx == NULL)
		elog(ERROR, "out of memory");
	if (pg_hmac_init(ctx, key, TOKEN_KEY_BYTES) < 0 ||
		pg_hmac_update(ctx, payload, len) < 0 ||
		pg_hmac_final(ctx, mac, TOKEN_MAC_BYTES) < 0)
	{
		const char *reason = pg_hmac_error(ctx);

		pg_hmac_free(ctx);
		elog(ERROR, "could not compute the token's HMAC: %s", reason);
	}
	pg_hmac_free(ctx);
}

/* base64url without padding; returns the length written (dst has room). */
static int
encode_b64url(const uint8 *src, int len, char *dst, int dstlen)
{
	int			n = pg_b64_encode((const char *) src, len, dst, dstlen);
	int			i;

	if (n < 0)
		elog(ERROR, "could not encode a token");
	while (n > 0 && dst[n - 1] == '=')
		n--;
	for (i = 0; i < n; i++)
	{
		if (dst[i] == '+')
			dst[i] = '-';
		else if (dst[i] == '/')
			dst[i] = '_';
	}
	dst[n] = '\0';
	return n;
}

/*
 * Decode base64url without padding into dst; -1 unless src is exactly the
 * encoding of what it decodes to (so no two texts name one payload).
 */
static int
decode_b64url(const char *src, int len, uint8 *dst, int dstlen)
{
	char		std[WAITLIST_TOKEN_MAX_CHARS + 4];
	char		again[WAITLIST_TOKEN_MAX_CHARS + 4];
	int			i;
	int			n;

	if (len <= 0 || len % 4 == 1 || len > WAITLIST_TOKEN_MAX_CHARS ||
		pg_b64_dec_len(len + 3) > dstlen)
		return -1;
	for (i = 0; i < len; i++)
	{
		char		c = src[i];

		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
				   (c >= '0' && c <= '9')))
			return -1;
		std[i] = c;
	}
	while (i % 4 != 0)
		std[i++] = '=';
	n = pg_b64_decode(std, i, (char *) dst, dstlen);
	if (n < 0 || encode_b64url(dst, n, again, sizeof(again)) != len ||
		memcmp(again, src, len) != 0)
		return -1;
	return n;
}

/*
 * Sign a token for an offer into dst (WAITLIST_TOKEN_MAX_CHARS + 1 bytes)
 * with this transaction's signing key.
 */
void
waitlist_sign_offer_token(text *resource_id, int64 offer_id, TimestampTz expires_at,
						  char *dst)
{
	uint8		payload[TOKEN_MAX_PAYLOAD];
	uint8		mac[TOKEN_MAC_BYTES];
	int			idlen = VARSIZE_ANY_EXHDR(resource_id);
	int64		unix_usecs;
	uint32		u32;
	uint64		u64;
	uint16		u16;
	int			n;

	if (idlen > WAITLIST_MAX_ID_BYTES)
		elog(ERROR, "resource id of %d bytes in an offer", idlen);
	if (TIMESTAMP_NOT_FINITE(expires_at) ||
		pg_add_s64_overflow(expires_at, UNIX_TO_PG_EPOCH_USECS, &unix_usecs))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("waitlist offer %lld has no finite expires_at", (long long) offer_id)));
	load_signing_key();

	payload[0] = TOKEN_VERSION;
	u32 = pg_hton32((uint32) signing_key_id);
	memcpy(payload + 1, &u32, 4);
	u64 = pg_hton64((uint64) offer_id);
	memcpy(payload + 5, &u64, 8);
	u64 = pg_hton64((uint64) unix_usecs);
	memcpy(payload + 13, &u64, 8);
	u16 = pg_hton16((uint16) idlen);
	memcpy(payload + 21, &u16, 2);
	memcpy(payload + TOKEN_FIXED_BYTES, VARDATA_ANY(resource_id), idlen);
	compute_mac(signing_key, payload, TOKEN_FIXED_BYTES + idlen, mac);

	n = encode_b64url(payload, TOKEN_FIXED_BYTES + idlen, dst, WAITLIST_TOKEN_MAX_CHARS + 1);
	dst[n++] = '.';
	(void) encode_b64url(mac, TOKEN_MAC_BYTES, dst + n, WAITLIST_TOKEN_MAX_CHARS + 1 - n);
}

static void
token_malformed(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_WAITLIST_TOKEN_MALFORMED),
			 errmsg("malformed waitlist offer token"),
			 errdetail_internal("%s", detail),
			 errhint("Use the token exactly as waitlist_offer_token() or the offer_created event gave it.")));
}

static void
token_not_verified(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_WAITLIST_TOKEN_INVALID),
			 errmsg("waitlist offer token does not verify"),
			 errdetail_internal("%s", detail),
			 errhint("Use the token exactly as waitlist_offer_token() or the offer_created event gave it.")));
}

/*
 * Check a token and return the offer it names: its format (WL011), its
 * signature under a key that still verifies (WL012), its deadline (WL013),
 * and that the offer exists, belongs to the resource the token names and
 * still has the deadline it carries (WL014).  Writes nothing.  Runs inside
 * an API frame.
 */
int64
waitlist_verify_offer_token(text *token, text **resource_id)
{
	const char *s = VARDATA_ANY(token);
	int			len = VARSIZE_ANY_EXHDR(token);
	const char *dot;
	uint8		payload[TOKEN_MAX_PAYLOAD + 3];
	uint8		mac[TOKEN_MAC_BYTES + 3];
	uint8		expected[TOKEN_MAC_BYTES];
	uint8		secret[TOKEN_KEY_BYTES];
	int			payload_len;
	uint32		u32;
	uint64		u64;
	uint16		u16;
	int32		key_id;
	int64		offer_id;
	int64		unix_usecs;
	TimestampTz expires_at;
	Datum		values[2];
	bool		isnull;

	if (len > WAITLIST_TOKEN_MAX_CHARS)
		token_malformed("The token is longer than any waitlist offer token.");
	dot = memchr(s, '.', len);
	if (dot == NULL)
		token_malformed("The token has no signature part.");
	payload_len = decode_b64url(s, dot - s, payload, sizeof(payload));
	if (payload_len < 0 ||
		decode_b64url(dot + 1, len - (dot - s) - 1, mac, sizeof(mac)) != TOKEN_MAC_BYTES)
		token_malformed("The token is not two parts of base64url.");
	if (payload[0] != TOKEN_VERSION)
		token_malformed("The token's format version is not one this version of waitlist reads.");
	if (payload_len < TOKEN_FIXED_BYTES)
		token_malformed("The token is truncated.");
	memcpy(&u16, payload + 21, 2);
	if (payload_len != TOKEN_FIXED_BYTES + pg_ntoh16(u16) ||
		pg_ntoh16(u16) == 0 || pg_ntoh16(u16) > WAITLIST_MAX_ID_BYTES)
		token_malformed("The token's length does not match its contents.");

	memcpy(&u32, payload + 1, 4);
	key_id = (int32) pg_ntoh32(u32);
	values[0] = Int32GetDatum(key_id);
	waitlist_execute(&verifying_key_plan, values, NULL, true, 0);
	if (SPI_processed != 1)
		token_not_verified("The key it was signed with is retired or unknown.");
	copy_secret(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, secret);
	compute_mac(secret, payload, payload_len, expected);
	explicit_bzero(secret, sizeof(secret));
	if (timingsafe_bcmp(expected, mac, TOKEN_MAC_BYTES) != 0)
		token_not_verified("Its signature does not match its contents.");

	memcpy(&u64, payload + 5, 8);
	offer_id = (int64) pg_ntoh64(u64);
	memcpy(&u64, payload + 13, 8);
	unix_usecs = (int64) pg_ntoh64(u64);
	if (pg_sub_s64_overflow(unix_usecs, UNIX_TO_PG_EPOCH_USECS, &expires_at))
		elog(ERROR, "signed token of offer %lld with an impossible deadline",
			 (long long) offer_id);
	if (expires_at <= GetCurrentTimestamp())
		ereport(ERROR,
				(errcode(ERRCODE_WAITLIST_TOKEN_EXPIRED),
				 errmsg("waitlist offer token has expired"),
				 errdetail("The offer it names had to be answered before its expires_at.")));

	*resource_id = cstring_to_text_with_len((const char *) payload + TOKEN_FIXED_BYTES,
											payload_len - TOKEN_FIXED_BYTES);
	values[0] = PointerGetDatum(*resource_id);
	values[1] = Int64GetDatum(offer_id);
	waitlist_execute(&token_offer_plan, values, NULL, true, 0);
	if (SPI_processed != 1 ||
		DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										  1, &isnull)) != expires_at)
		ereport(ERROR,
				(errcode(ERRCODE_WAITLIST_TOKEN_NO_OFFER),
				 errmsg("waitlist offer token names no such offer"),
				 errdetail("No offer of the token's resource has its offer id and deadline; the offer may have been archived or its deadline changed."),
				 errhint("Ask for a new token with waitlist_offer_token().")));
	return offer_id;
}

/*
 * Make a new signing key; the old one verifies until the last offer that
 * exists expires.  Returns the new key's id.  Runs inside an API frame, at
 * READ COMMITTED (the caller checks): the statement after the lock must see
 * every offer committed before it.
 */
int32
waitlist_rotate_token_keys(void)
{
	Datum		values[1];
	bool		isnull;

	lock_keys_for_rotation();
	waitlist_execute(&retire_key_plan, NULL, NULL, false, 0);
	values[0] = PointerGetDatum(waitlist_new_token_key());
	waitlist_execute(&new_key_plan, values, NULL, false, 0);
	waitlist_forget_token_key();
	if (SPI_processed != 1)
		elog(ERROR, "token key rotation inserted %llu keys",
			 (unsigned long long) SPI_processed);
	return DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									   1, &isnull));
}
