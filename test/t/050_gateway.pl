# waitlist-gateway, the HTTP API: every endpoint and the SQLSTATE-to-status
# table, who may call what (fans' JWTs, services' keys per duty, offer
# links), a fan acting on another fan's entry or offer (403, and nothing
# changes), bad bodies (400, 413, 415, 422), limits (429), a slow and a lost
# database (503 after the bounded retry, and the retry that succeeds), the
# access log, SIGTERM in the middle of a request, and every response checked
# against docs/openapi.json.

use strict;
use warnings;

use File::Basename qw(dirname);
use IO::Socket::INET;
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(time usleep);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest qw(use_node sql slurp wait_for);
use GatewayTest;
use OpenAPI;

my $openapi = openapi_load(dirname(__FILE__) . '/../../docs/openapi.json');
is_deeply([ openapi_document_problems($openapi) ], [], 'docs/openapi.json is a sound OpenAPI 3 document');

my $node = gateway_node('gateway');
sql(q{
CREATE SCHEMA box;
CREATE TABLE box.bookings (offer_id bigint PRIMARY KEY, user_id text NOT NULL);
CREATE FUNCTION box.book(resource_id text, user_id text, offer_id bigint, idempotency_key text)
RETURNS text LANGUAGE sql AS $$
    INSERT INTO box.bookings VALUES (offer_id, user_id) RETURNING 'R-' || offer_id
$$;
GRANT USAGE ON SCHEMA box TO gw_fans, gw_links, gw_app;
GRANT SELECT, INSERT ON box.bookings TO gw_fans, gw_links, gw_app;
SELECT waitlist_create_resource('show', '10 minutes', booking_function => 'box.book(text, text, bigint, text)');
SELECT waitlist_create_resource('brief', '1 second');
SELECT waitlist_create_resource('tiny', max_waiting => 1);
SELECT waitlist_create_resource('closing', offers_close_at => now() + interval '1 second');
SELECT waitlist_create_resource('limited', join_rate_per_second => 0.01, join_burst => 1);
SELECT waitlist_create_resource('saga', booking => 'external');
SELECT waitlist_create_resource('quiet');
});

my $g = start_gateway($node, '--statement-timeout', '400', '--retries', '2');

# Every response is checked against the OpenAPI document.
sub api
{
	my ($method, $path, %opt) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $res = call_gateway($g, $method, $path, %opt);
	my @problems = openapi_response_problems($openapi, $method, $path, $res->{status},
		$res->{headers}{'content-type'} // '', $res->{content} // '');
	is_deeply(\@problems, [], "$method $path $res->{status} is as docs/openapi.json says")
	  or diag($res->{content});
	return $res;
}

sub problem_is
{
	my ($res, $status, $sqlstate, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	is($res->{status}, $status, "$name: $status");
	is($res->{headers}{'content-type'}, 'application/problem+json', "$name: a problem");
	is($res->{json}{sqlstate}, $sqlstate, "$name: SQLSTATE " . ($sqlstate // 'none'))
	  if @_ > 2;
}

my $fan1 = fan_jwt('fan-1');
my $fan2 = fan_jwt('fan-2');

# --- health ---
my $res = api('GET', '/healthz');
is($res->{status}, 200, 'healthz');
is($res->{json}{status}, 'ok', 'healthz says ok');

# --- join ---
$res = api('POST', '/v1/resources/show/waitlist:join', auth => $fan1);
is($res->{status}, 201, 'a fan joins: 201');
my $entry1 = $res->{json}{entry_id};
ok($entry1 > 0, 'with the entry id');
is($res->{json}{user_id}, 'fan-1', 'as the user the JWT names');
is($res->{json}{state}, 'WAITING', 'waiting');
is($res->{json}{position}, 1, 'first in line');
is($res->{headers}{location}, "/v1/waitlist/$entry1", 'Location names the entry');
is($res->{headers}{'cache-control'}, 'no-store', 'not cached');

$res = api('POST', '/v1/resources/show/waitlist:join', auth => $fan1);
is($res->{status}, 200, 'a double tap: 200');
is($res->{json}{entry_id}, $entry1, 'the same entry');
is($res->{json}{created}, JSON::PP::false, 'not created');
is(sql("SELECT count(*) FROM waitlist.entry WHERE user_id = 'fan-1'"), 1, 'one entry in the database');
is(sql("SELECT string_agg(DISTINCT actor, ',') FROM waitlist.transition WHERE entity = 'entry' AND entity_id = $entry1"),
	'gw_fans', "a fan's join runs as the fan role");

$res = api('POST', '/v1/resources/show/waitlist:join', auth => $KEYS{app},
	json => { user_id => 'fan-2', priority => 0 });
is($res->{status}, 201, 'a service of duty app joins for a user');
my $entry2 = $res->{json}{entry_id};
is($res->{json}{position}, 2, 'second in line');

problem_is(api('POST', '/v1/resources/show/waitlist:join', auth => $KEYS{app}, json => {}),
	422, undef, 'a service join without user_id');
problem_is(api('POST', '/v1/resources/show/waitlist:join', auth => $fan1, json => { user_id => 'fan-9' }),
	403, undef, 'a fan joining as someone else');
problem_is(api('POST', '/v1/resources/show/waitlist:join', auth => $fan1, json => { priority => 100 }),
	403, undef, 'a fan choosing a priority');
problem_is(api('POST', '/v1/resources/show/waitlist:join', auth => $KEYS{booking}, json => { user_id => 'x' }),
	403, undef, 'the booking duty joining');
problem_is(api('POST', '/v1/resources/show/waitlist:join'), 401, undef, 'a join without credentials');
is(sql("SELECT count(*) FROM waitlist.entry WHERE user_id IN ('fan-9', 'x')"), 0,
	'refused joins wrote nothing');

problem_is(api('POST', '/v1/resources/nowhere/waitlist:join', auth => $fan1), 404, '42704', 'unknown resource');
api('POST', '/v1/resources/tiny/waitlist:join', auth => $fan1);
problem_is(api('POST', '/v1/resources/tiny/waitlist:join', auth => $fan2), 410, 'WL001', 'a full waitlist');
usleep(1_100_000);
problem_is(api('POST', '/v1/resources/closing/waitlist:join', auth => $fan1), 410, 'WL019', 'a closed waitlist');
is(api('POST', '/v1/resources/limited/waitlist:join', auth => $fan1)->{status}, 201, 'a rate-limited resource admits its burst');
$res = api('POST', '/v1/resources/limited/waitlist:join', auth => $fan2);
problem_is($res, 429, 'WL018', "a join beyond the resource's rate");
like($res->{headers}{'retry-after'}, qr/^[1-9][0-9]*$/, 'with Retry-After in seconds');
problem_is(api('POST', '/v1/resources/show/waitlist:join', auth => $KEYS{app},
		json => { user_id => 'fan-3', quantity => 5 }),
	422, '22023', 'a party larger than the resource takes');
problem_is(api('POST', '/v1/resources/show/waitlist:join', auth => $KEYS{app},
		json => { user_id => 'u' x 201 }),
	422, '22001', 'a user id over 200 bytes');

# --- bad requests ---
problem_is(api('POST', '/v1/resources/show/waitlist:join', auth => $fan1, body => '{"user_id": ',
		headers => { 'Content-Type' => 'application/json' }),
	400, undef, 'malformed JSON');
problem_is(api('POST', '/v1/resources/show/waitlist:join', auth => $fan1, body => '[1]',
		headers => { 'Content-Type' => 'application/json' }),
	400, undef, 'JSON that is not an object');
problem_is(api('POST', '/v1/resources/show/waitlist:join', auth => $fan1, body => '{"a":1,"a":2}',
		headers => { 'Content-Type' => 'application/json' }),
	400, undef, 'JSON with a duplicate member');
problem_is(api('POST', '/v1/resources/show/waitlist:join', auth => $fan1, body => 'user_id=fan-1',
		headers => { 'Content-Type' => 'application/x-www-form-urlencoded' }),
	415, undef, 'a body that is not JSON');
problem_is(api('POST', '/v1/resources/show/waitlist:join', auth => $KEYS{app},
		json => { user_id => 'fan-3', seats => 2 }),
	422, undef, 'an unknown member');
problem_is(api('POST', '/v1/resources/show/waitlist:join', auth => $KEYS{app},
		json => { user_id => 'fan-3', 'priority,quantity' => 2 }),
	422, undef, 'a member whose name lists members');
problem_is(api('POST', '/v1/resources/show/waitlist:join', auth => $fan1, body => '{}',
		headers => { 'Content-Type' => 'application/jsonx' }),
	415, undef, 'a media type that only starts like JSON');
problem_is(api('POST', '/v1/resources/show/waitlist:join', auth => $KEYS{app},
		json => { user_id => 42 }),
	422, undef, 'a member of the wrong type');
problem_is(api('POST', '/v1/resources/show/waitlist:join', auth => $KEYS{app},
		json => { user_id => 'fan-3', priority => 2**40 }),
	422, undef, 'an integer out of range');
problem_is(api('POST', '/v1/resources/show/waitlist:join', auth => $KEYS{app},
		json => { user_id => 'fan-3' . ('x' x 20000) }),
	413, undef, 'a body over --max-body');
is(call_gateway($g, 'GET', '/healthz', headers => { 'X-Padding' => 'x' x 70000 })->{status},
	431, 'headers over the memory limit of a connection: 431');
is(call_gateway($g, 'GET', '/v1/waitlist/' . ('1' x 70000))->{status}, 414, 'a path as long: 414');
{
	# a chunked body has no Content-Length to refuse it by
	my @chunks = (('{"user_id":"fan-3","x":"' . ('y' x 8000)) x 3, '"}');
	my $chunked = HTTP::Tiny->new(timeout => 30)->request('POST',
		gateway_url($g, '/v1/resources/show/waitlist:join'),
		{ headers => { Authorization => "Bearer $KEYS{app}", 'Content-Type' => 'application/json' },
		  content => sub { shift @chunks } });
	is($chunked->{status}, 413, 'a chunked body over --max-body: 413');
}
is(sql("SELECT count(*) FROM waitlist.entry WHERE user_id LIKE 'fan-3%'"), 0, 'bad requests wrote nothing');
problem_is(api('GET', '/v1/nothing/here'), 404, undef, 'an unknown path');
$res = api('PUT', '/v1/waitlist/1', auth => $fan1);
problem_is($res, 405, undef, 'a method a path does not take');
is($res->{headers}{allow}, 'GET, HEAD, DELETE', 'Allow lists the methods it takes');

# --- who is calling ---
problem_is(api('GET', "/v1/waitlist/$entry1", auth => fan_jwt('fan-1', secret => 'x' x 40)),
	401, undef, 'a JWT signed with another key');
problem_is(api('GET', "/v1/waitlist/$entry1", auth => fan_jwt('fan-1', alg => 'none')),
	401, undef, 'an unsigned JWT (alg none)');
problem_is(api('GET', "/v1/waitlist/$entry1", auth => fan_jwt('fan-1', alg => 'HS512')),
	401, undef, 'a JWT of another algorithm');
problem_is(api('GET', "/v1/waitlist/$entry1", auth => fan_jwt('fan-1', exp => time - 3600)),
	401, undef, 'an expired JWT');
problem_is(api('GET', "/v1/waitlist/$entry1", auth => fan_jwt('fan-1', exp => undef)),
	401, undef, 'a JWT without exp');
problem_is(api('GET', "/v1/waitlist/$entry1", auth => fan_jwt('fan-1', nbf => time + 3600)),
	401, undef, 'a JWT not valid yet');
problem_is(api('GET', "/v1/waitlist/$entry1", auth => fan_jwt(undef)),
	401, undef, 'a JWT without sub');
problem_is(api('GET', "/v1/waitlist/$entry1", auth => 'not-a-key-of-ours-at-all'),
	401, undef, 'an unknown key');
problem_is(api('GET', "/v1/waitlist/$entry1", headers => { Authorization => "Basic Zm9vOmJhcg==" }),
	401, undef, 'another authentication scheme');

is(api('GET', '/healthz', auth => 'garbage')->{status}, 200,
	'credentials are ignored where none are needed');
is(call_gateway($g, 'HEAD', '/healthz')->{status}, 200, 'HEAD where GET is taken');

# --- status ---
$res = api('GET', "/v1/waitlist/$entry1", auth => $fan1);
is($res->{status}, 200, 'a fan reads their entry');
is($res->{json}{position}, 1, 'with their position');
is($res->{json}{resource_id}, 'show', 'and resource');
problem_is(api('GET', "/v1/waitlist/$entry1", auth => $fan2), 403, undef, "another fan's entry");
problem_is(api('GET', '/v1/waitlist/999999', auth => $fan1), 404, '42704', 'an unknown entry');
is(api('GET', "/v1/waitlist/$entry2", auth => $KEYS{app})->{status}, 200, 'a service reads any entry');
problem_is(api('GET', "/v1/waitlist/$entry2", auth => $KEYS{monitor}), 403, undef,
	'the monitor duty reads aggregates, not entries');
sql(q{SELECT waitlist_alter_resource('show', position_visibility => 'none')});
$res = api('GET', "/v1/waitlist/$entry1", auth => $fan1);
is($res->{json}{position}, undef, "the resource's position visibility is honoured");
sql(q{SELECT waitlist_alter_resource('show', position_visibility => 'exact')});

# --- release and offers ---
$res = api('POST', '/v1/resources/show/capacity:release', auth => $KEYS{booking},
	json => { quantity => 1, event_id => 'cancel-1' });
is($res->{status}, 200, 'the booking duty releases a seat');
is($res->{json}{recorded}, JSON::PP::true, 'recorded');
is(sql(q{SELECT count(*) FROM waitlist.capacity_event WHERE event_id = 'cancel-1'}), 1, 'in the database');
$res = api('POST', '/v1/resources/show/capacity:release', auth => $KEYS{booking},
	json => { quantity => 1, event_id => 'cancel-1' });
is($res->{status}, 200, 'a repeated release: 200');
is($res->{json}{recorded}, JSON::PP::false, 'not recorded again');
problem_is(api('POST', '/v1/resources/show/capacity:release', auth => $KEYS{app},
		json => { quantity => 1, event_id => 'cancel-2' }),
	403, undef, 'the app duty releasing');
problem_is(api('POST', '/v1/resources/show/capacity:release', auth => $KEYS{booking},
		json => { quantity => 0, event_id => 'cancel-2' }),
	422, '22023', 'a release of no seats');
problem_is(api('POST', '/v1/resources/show/capacity:release', auth => $KEYS{booking},
		json => { quantity => 1 }),
	422, undef, 'a release without event_id');
is(sql("SELECT count(*) FROM waitlist.capacity_event WHERE event_id = 'cancel-2'"), 0,
	'refused releases wrote nothing');

ok(wait_for(sub { api('GET', "/v1/waitlist/$entry1", auth => $fan1)->{json}{state} eq 'OFFERED' }, 30),
	'the first fan is offered the seat');
my $offer1 = api('GET', "/v1/waitlist/$entry1", auth => $fan1)->{json}{offer_id};
ok($offer1, 'the status names the offer');

problem_is(api('POST', "/v1/offers/$offer1:accept", auth => $fan1), 400, undef,
	'an accept without Idempotency-Key');
problem_is(api('POST', "/v1/offers/$offer1:accept", auth => $fan2, headers => { 'Idempotency-Key' => 'k-2' }),
	403, undef, "another fan accepting the offer");
problem_is(api('POST', "/v1/offers/$offer1:decline", auth => $fan2), 403, undef,
	"another fan declining the offer");
is(sql("SELECT state FROM waitlist.offer WHERE offer_id = $offer1"), 'OPEN',
	"the other fan's calls changed nothing");
is(sql('SELECT count(*) FROM box.bookings'), 0, 'and booked nothing');

$res = api('POST', "/v1/offers/$offer1:accept", auth => $fan1, headers => { 'Idempotency-Key' => 'k-1' });
is($res->{status}, 200, 'the fan accepts');
is($res->{json}{state}, 'ACCEPTED', 'accepted');
is($res->{json}{reservation_ref}, "R-$offer1", 'with the reservation');
$res = api('POST', "/v1/offers/$offer1:accept", auth => $fan1, headers => { 'Idempotency-Key' => 'k-1' });
is($res->{status}, 200, 'a double tap on accept');
is($res->{json}{reservation_ref}, "R-$offer1", 'the same reservation');
is(sql('SELECT count(*) FROM box.bookings'), 1, 'booked once');
problem_is(api('POST', "/v1/offers/$offer1:decline", auth => $fan1), 409, 'WL003', 'a decline of an accepted offer');
problem_is(api('POST', '/v1/offers/424242:accept', auth => $KEYS{app}, headers => { 'Idempotency-Key' => 'k' }),
	404, '42704', 'an unknown offer');

# the second fan: offered by a release, declines
api('POST', '/v1/resources/show/capacity:release', auth => $KEYS{booking},
	json => { quantity => 1, event_id => 'cancel-3' });
ok(wait_for(sub { api('GET', "/v1/waitlist/$entry2", auth => $fan2)->{json}{state} eq 'OFFERED' }, 30),
	'the second fan is offered a seat');
my $offer2 = api('GET', "/v1/waitlist/$entry2", auth => $fan2)->{json}{offer_id};
$res = api('POST', "/v1/offers/$offer2:decline", auth => $fan2);
is($res->{status}, 200, 'the fan declines');
is($res->{json}{declined}, JSON::PP::true, 'declined');
$res = api('POST', "/v1/offers/$offer2:decline", auth => $fan2);
is($res->{json}{declined}, JSON::PP::false, 'a repeated decline declines nothing');

# an offer past its deadline
api('POST', '/v1/resources/brief/waitlist:join', auth => $fan1);
api('POST', '/v1/resources/brief/capacity:release', auth => $KEYS{booking},
	json => { quantity => 1, event_id => 'brief-1' });
ok(wait_for(sub { sql(q{SELECT count(*) FROM waitlist.offer WHERE resource_id = 'brief'}) == 1 }, 30),
	'an offer of one second');
my $brief = sql(q{SELECT offer_id FROM waitlist.offer WHERE resource_id = 'brief'});
ok(wait_for(sub { sql("SELECT expires_at < clock_timestamp() FROM waitlist.offer WHERE offer_id = $brief") eq 't' }, 10),
	'its deadline passes');
problem_is(api('POST', "/v1/offers/$brief:accept", auth => $fan1, headers => { 'Idempotency-Key' => 'late' }),
	409, 'WL002', 'an accept after the deadline');

# --- offers by signed token: no login, the link is the credential ---
api('POST', '/v1/resources/show/waitlist:join', auth => $KEYS{app}, json => { user_id => 'fan-4' });
api('POST', '/v1/resources/show/waitlist:join', auth => $KEYS{app}, json => { user_id => 'fan-5' });
api('POST', '/v1/resources/show/capacity:release', auth => $KEYS{booking},
	json => { quantity => 2, event_id => 'cancel-4' });
ok(wait_for(sub { sql(q{SELECT count(*) FROM waitlist.offer WHERE user_id IN ('fan-4', 'fan-5') AND state = 'OPEN'}) == 2 }, 30),
	'two more fans are offered seats');
my $token4 = sql(q{SELECT waitlist_offer_token(offer_id) FROM waitlist.offer WHERE user_id = 'fan-4'});
my $token5 = sql(q{SELECT waitlist_offer_token(offer_id) FROM waitlist.offer WHERE user_id = 'fan-5'});
(my $tampered = $token4) =~ s/(.)$/$1 eq 'A' ? 'B' : 'A'/e;
problem_is(api('POST', '/v1/offers/99999999999999999999:accept', headers => { 'Idempotency-Key' => 't-1' }),
	404, 'WL011', 'an offer id beyond bigint is no token either');
problem_is(api('POST', "/v1/offers/$tampered:accept", headers => { 'Idempotency-Key' => 't-1' }),
	403, 'WL012', 'a tampered token');
problem_is(api('POST', '/v1/offers/not-a-token:accept', headers => { 'Idempotency-Key' => 't-1' }),
	404, 'WL011', 'a malformed token');
$res = api('POST', "/v1/offers/$token4:accept", headers => { 'Idempotency-Key' => 't-1' });
is($res->{status}, 200, 'an accept by token, without login');
is($res->{json}{state}, 'ACCEPTED', 'accepted');
like($res->{json}{reservation_ref}, qr/^R-\d+$/, 'booked');
$res = api('POST', "/v1/offers/$token5:decline");
is($res->{status}, 200, 'a decline by token');
is(sql(q{SELECT state FROM waitlist.offer WHERE user_id = 'fan-5'}), 'DECLINED', 'declined');

# --- the accept saga: 202 while the booking service books ---
api('POST', '/v1/resources/saga/waitlist:join', auth => $fan1);
api('POST', '/v1/resources/saga/capacity:release', auth => $KEYS{booking},
	json => { quantity => 1, event_id => 'saga-1' });
ok(wait_for(sub { sql(q{SELECT count(*) FROM waitlist.offer WHERE resource_id = 'saga'}) == 1 }, 30),
	'an offer of an externally booked resource');
my $saga = sql(q{SELECT offer_id FROM waitlist.offer WHERE resource_id = 'saga'});
$res = api('POST', "/v1/offers/$saga:accept", auth => $fan1, headers => { 'Idempotency-Key' => 's-1' });
is($res->{status}, 202, 'an accept that starts the saga: 202');
is($res->{json}{state}, 'ACCEPTING', 'ACCEPTING');
is(api('POST', "/v1/offers/$saga:accept", auth => $fan1, headers => { 'Idempotency-Key' => 's-2' })->{status},
	202, 'asked again while it runs: 202');
problem_is(api('DELETE', "/v1/waitlist/" . sql("SELECT entry_id FROM waitlist.offer WHERE offer_id = $saga"), auth => $fan1),
	409, '55000', 'leaving while the booking runs');

# --- leave ---
my $entry6 = api('POST', '/v1/resources/quiet/waitlist:join', auth => fan_jwt('fan-6'))->{json}{entry_id};
problem_is(api('DELETE', "/v1/waitlist/$entry6", auth => $fan2), 403, undef, "another fan's leave");
is(sql("SELECT state FROM waitlist.entry WHERE entry_id = $entry6"), 'WAITING', 'changed nothing');
$res = api('DELETE', "/v1/waitlist/$entry6", auth => fan_jwt('fan-6'));
is($res->{status}, 204, 'a fan leaves: 204');
is($res->{content} // '', '', 'with no body');
is(sql("SELECT state FROM waitlist.entry WHERE entry_id = $entry6"), 'CANCELLED', 'cancelled');
is(api('DELETE', "/v1/waitlist/$entry6", auth => fan_jwt('fan-6'))->{status}, 204, 'leaving again: 204');
problem_is(api('DELETE', '/v1/waitlist/999999', auth => $fan1), 404, '42704', 'leaving an unknown entry');

# --- metrics ---
$res = api('GET', '/metrics', auth => $KEYS{monitor});
is($res->{status}, 200, 'the monitor duty reads the metrics');
like($res->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4}, 'in the Prometheus text format');
like($res->{content}, qr/^waitlist_resources \d+$/m, 'with the metrics');
problem_is(api('GET', '/metrics'), 401, undef, 'metrics without credentials');
problem_is(api('GET', '/metrics', auth => $fan1), 403, undef, 'metrics for a fan');

# --- the access log ---
my $log = gateway_log($g);
like($log, qr{127\.0\.0\.1 "POST /v1/resources/show/waitlist:join" 201 \d+ [\d.]+ms fan}, 'an access log line per request');
like($log, qr{"POST /v1/offers/\Q@{[substr($token4, 0, 8)]}\E\.\.\.:accept" 200}, 'with the offer token cut short');
unlike($log, qr/\Q$token4\E/, 'never the whole token');

# --- the per-address join limit of the gateway ---
my $limited = start_gateway($node, '--join-rate', '0.01', '--join-burst', '2');
is(call_gateway($limited, 'POST', '/v1/resources/show/waitlist:join', auth => fan_jwt("burst-$_"))->{status},
	201, "a join of the address's burst ($_)")
  foreach 1 .. 2;
$res = call_gateway($limited, 'POST', '/v1/resources/show/waitlist:join', auth => fan_jwt('burst-3'));
is($res->{status}, 429, 'beyond the burst: 429');
like($res->{headers}{'retry-after'}, qr/^[1-9][0-9]*$/, 'with Retry-After');
is(call_gateway($limited, 'POST', '/v1/resources/show/waitlist:join', auth => $KEYS{app},
		json => { user_id => 'burst-4' })->{status},
	201, 'services are not limited by address');
is(stop_gateway($limited), 0, 'that gateway stops');

# --- a slow database: the bounded retry, then 503 ---
# A transaction that locks the entries against writes keeps every join
# waiting for $seconds.
sub hold_entries
{
	my ($seconds) = @_;
	my ($in, $out, $err) = ('', '', '');
	my $h = IPC::Run::start(
		[ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c',
			"BEGIN; LOCK TABLE waitlist.entry IN EXCLUSIVE MODE; SELECT pg_sleep($seconds); COMMIT;" ],
		\$in, \$out, \$err);
	ok(wait_for(sub { sql(q{SELECT count(*) FROM pg_locks WHERE relation = 'waitlist.entry'::regclass
	                         AND mode = 'ExclusiveLock' AND granted}) == 1 }, 10),
		'a transaction holds the entries');
	return $h;
}
my $holder = hold_entries(4);
$res = api('POST', '/v1/resources/show/waitlist:join', auth => fan_jwt('slow-1'));
problem_is($res, 503, '57014', 'a join the database cannot finish in time');
is($res->{headers}{'retry-after'}, '1', 'with Retry-After');
like(gateway_log($g), qr/giving up after 3 attempt\(s\): 57014/, 'after the first attempt and two retries');
$holder->finish;
is(sql(q{SELECT count(*) FROM waitlist.entry WHERE user_id = 'slow-1'}), 0, 'and nothing was written');

$holder = hold_entries(0.5);
$res = api('POST', '/v1/resources/show/waitlist:join', auth => fan_jwt('slow-2'));
is($res->{status}, 201, 'a join that a retry gets through');
$holder->finish;
is(sql(q{SELECT count(*) FROM waitlist.entry WHERE user_id = 'slow-2'}), 1, 'joined once');

# --- the pool's bound: no more connections than --pool-size ---
my $small = start_gateway($node, '--pool-size', '2', '--threads', '6', '--pool-wait', '300',
	'--statement-timeout', '20000');
$holder = hold_entries(3);
my @clients = map {
	my $out = '';
	my $h = IPC::Run::start(
		[ $^X, '-MHTTP::Tiny', '-MJSON::PP', '-e',
			'my $r = HTTP::Tiny->new(timeout => 30)->post($ARGV[0], {headers => {Authorization => "Bearer $ARGV[1]"}});'
			. ' my $b = eval { decode_json($r->{content}) } || {}; print "$r->{status} ", $b->{type} // "", "\n"',
			gateway_url($small, '/v1/resources/show/waitlist:join'), fan_jwt("pool-$_") ],
		'<', \undef, '>', \$out);
	{ h => $h, out => \$out }
} 1 .. 5;
my $lock_waiters = q{SELECT count(*) FROM pg_stat_activity WHERE usename = 'gw_login' AND wait_event_type = 'Lock'};
ok(wait_for(sub { sql($lock_waiters) == 2 }, 10), 'two requests wait in the database');
usleep(600_000);
is(sql($lock_waiters), 2, 'and no more: the others found no connection');
$_->{h}->finish foreach @clients;
$holder->finish;
is(join(',', sort map { ${ $_->{out} } =~ s/\n//r } @clients),
	'201 ,201 ,503 urn:waitlist:problem:busy,503 urn:waitlist:problem:busy,503 urn:waitlist:problem:busy',
	'two joined once the lock was gone, three got 503 busy after --pool-wait');
is(sql(q{SELECT count(*) FROM waitlist.entry WHERE user_id LIKE 'pool-%'}), 2, 'two entries, no more');
is(stop_gateway($small), 0, 'that gateway stops');

# --- a database that went away, and came back ---
$node->stop('fast');
problem_is(api('GET', '/healthz'), 503, '08006', 'healthz without the database');
problem_is(api('POST', '/v1/resources/show/waitlist:join', auth => fan_jwt('down-1')), 503, '08006',
	'a join without the database');
$node->start;
is(api('GET', '/healthz')->{status}, 200, 'healthz once the database is back');
is(api('POST', '/v1/resources/show/waitlist:join', auth => fan_jwt('down-1'))->{status}, 201,
	'the pool connects again');

# --- SIGTERM in the middle of a request ---
is(stop_gateway($g), 0, 'the first gateway stops');
$g = start_gateway($node, '--statement-timeout', '20000');
$holder = hold_entries(1.5);
my $url = gateway_url($g, '/v1/resources/show/waitlist:join');
my $jwt = fan_jwt('term-1');
my ($client_out, $client_err) = ('', '');
my $client = IPC::Run::start(
	[ $^X, '-MHTTP::Tiny', '-e',
		'my $r = HTTP::Tiny->new(timeout => 30)->post($ARGV[0], {headers => {Authorization => "Bearer $ARGV[1]"}}); print "$r->{status}\n"',
		$url, $jwt ],
	'<', \undef, '>', \$client_out, '2>', \$client_err);
ok(wait_for(sub { sql(q{SELECT count(*) FROM pg_stat_activity WHERE usename = 'gw_login' AND wait_event_type = 'Lock'}) > 0 }, 10),
	'a request waits in the database');
$g->{h}->signal('TERM');
ok(wait_for(sub { gateway_log($g) =~ /received .*: finishing 1 request/ }, 10), 'SIGTERM: the gateway finishes what is in flight');
$client->finish;
is($client_out, "201\n", 'the request in flight is answered');
is(stop_gateway($g), 0, 'the gateway exits 0');
like(gateway_log($g), qr/stopped/, 'and says so');
$holder->finish;
is(sql(q{SELECT count(*) FROM waitlist.entry WHERE user_id = 'term-1'}), 1, 'the join in flight landed');
ok(!IO::Socket::INET->new(PeerAddr => "127.0.0.1:$g->{port}", Timeout => 2), 'nothing listens any more');

# a second SIGTERM: what is in flight is cancelled, and answered
$g = start_gateway($node, '--statement-timeout', '20000', '--shutdown-timeout', '60');
$holder = hold_entries(3);
($client_out, $client_err) = ('', '');
$client = IPC::Run::start(
	[ $^X, '-MHTTP::Tiny', '-e',
		'my $r = HTTP::Tiny->new(timeout => 30)->post($ARGV[0], {headers => {Authorization => "Bearer $ARGV[1]"}}); print "$r->{status}\n"',
		gateway_url($g, '/v1/resources/show/waitlist:join'), fan_jwt('term-2') ],
	'<', \undef, '>', \$client_out, '2>', \$client_err);
ok(wait_for(sub { sql(q{SELECT count(*) FROM pg_stat_activity WHERE usename = 'gw_login' AND wait_event_type = 'Lock'}) > 0 }, 10),
	'another request waits in the database');
$g->{h}->signal('TERM');
ok(wait_for(sub { gateway_log($g) =~ /finishing 1 request/ }, 10), 'SIGTERM');
$g->{h}->signal('TERM');
$client->finish;
is($client_out, "503\n", 'a second SIGTERM cancels the request in flight: 503');
is(stop_gateway($g), 0, 'and the gateway exits 0');
like(gateway_log($g), qr/second signal: cancelling 1 request/, 'saying why');
$holder->finish;
is(sql(q{SELECT count(*) FROM waitlist.entry WHERE user_id = 'term-2'}), 0, 'the cancelled join left nothing');

# --- the command line ---
my ($out, $err);
IPC::Run::run([ 'waitlist-gateway', '--help' ], '>', \$out, '2>', \$err);
is($?, 0, '--help exits 0');
like($out, qr/--listen=HOST:PORT/, 'and lists the flags');
IPC::Run::run([ 'waitlist-gateway', '--jwt-secret-file', "$g->{dir}/jwt" ], '>', \$out, '2>', \$err);
is($? >> 8, 2, 'fans accepted without a fan role: a usage error');
like($err, qr/--fan-role is needed/, 'that says so');
IPC::Run::run([ 'waitlist-gateway', '--pool-size', '0' ], '>', \$out, '2>', \$err);
is($? >> 8, 2, 'a setting out of bounds is a usage error');
like($err, qr/--pool-size must be an integer between 1 and 1000/, 'that says the bounds');

$node->stop;
done_testing();
