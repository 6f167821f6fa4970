# The outbox relay, waitlist-relay, against a local webhook receiver
# (test/relay/receiver.pl on 127.0.0.1): every event is POSTed as signed JSON
# with its outbox id as Idempotency-Key and acked; a receiver that fails
# first gets retries with the same key; one that always fails dead-letters
# the rows after waitlist.outbox_max_attempts; a hanging receiver times out
# and is retried; NOTIFY wakes the relay; it reconnects after losing its
# connection; in-flight requests stay within --concurrency and claims within
# the channel rate; SIGTERM stops it cleanly; and no event is lost.

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256_hex);
use JSON::PP;
use Time::HiRes qw(time usleep);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest qw(use_node sql slurp wait_for);
use RelayTest;

my $secret = 'relay-test-secret';
$ENV{WAITLIST_RELAY_SECRET} = $secret;

my $node = PostgreSQL::Test::Cluster->new('relay');
use_node($node);
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'waitlist'
waitlist.notify_channel = 'waitlist_outbox'
waitlist.outbox_retry_base = '50ms'
waitlist.outbox_max_attempts = 3
});
$node->start;

sql('CREATE EXTENSION waitlist');

my $control = start_receiver($node);

# --- events -------------------------------------------------------------------

# A resource with $n waiting fans and $n units released: $n offer_created
# rows, one per fan.  Returns their outbox ids.
sub make_events
{
	my ($resource, $n) = @_;
	sql(
		qq{SELECT waitlist_create_resource('$resource', '1 hour');
SELECT count(waitlist_join('$resource', '$resource-u' || g)) FROM generate_series(1, $n) g;
SELECT waitlist_release('$resource', $n, '$resource-ev');});
	return outbox_ids($resource);
}

sub outbox_ids
{
	my ($resource) = @_;
	return split /\n/,
	  sql("SELECT outbox_id FROM waitlist.outbox WHERE resource_id = '$resource' ORDER BY outbox_id");
}

sub states
{
	my ($resource) = @_;
	return sql(
		"SELECT string_agg(state || '/' || attempts, ',' ORDER BY outbox_id)"
		  . " FROM waitlist.outbox WHERE resource_id = '$resource'");
}

sub all_in_state
{
	my ($resource, $state) = @_;
	return sql(
		"SELECT bool_and(state = '$state') FROM waitlist.outbox WHERE resource_id = '$resource'")
	  eq 't';
}

# Every request carries the right key, a valid signature over its body and
# the JSON content type.
sub check_signed
{
	my ($what, @requests) = @_;
	my $bad = 0;
	foreach my $r (@requests)
	{
		my $body = eval { decode_json($r->{body}) } // {};
		$bad++
		  unless $r->{sig} eq 'sha256=' . hmac_sha256_hex($r->{body}, $secret)
		  && $r->{type} eq 'application/json'
		  && defined $body->{outbox_id}
		  && $r->{key} eq $body->{outbox_id};
	}
	ok(@requests > 0 && $bad == 0,
		"$what: every request is signed JSON, keyed by its outbox id");
}

# --- --once delivers everything deliverable, in order per fan ------------------

{
	my @ids = make_events('once', 2);
	# the first fan declines: a second row for that fan, and an offer for a third
	sql("SELECT waitlist_join('once', 'once-u3')");
	sql("SELECT waitlist_decline(offer_id) FROM waitlist.offer WHERE resource_id = 'once' AND offer_id = (SELECT min(offer_id) FROM waitlist.offer WHERE resource_id = 'once')");
	@ids = outbox_ids('once');
	is(scalar(@ids), 4, 'four events: two offers, a decline and the next offer');

	is(relay_once('/ok'), 0, '--once exits 0');
	is(states('once'), join(',', ('DELIVERED/0') x 4), 'all four delivered at the first attempt');

	my @got = grep { my $k = $_->{key}; grep { $_ eq $k } @ids } requests();
	is(join(',', sort { $a <=> $b } map { $_->{key} } @got),
		join(',', @ids), 'the receiver got each event exactly once');
	check_signed('--once', @got);

	# the body is the row
	my $first = decode_json($got[0]{body});
	my $row = sql(
		"SELECT resource_id, user_id, channel, event_type, attempts, payload::text,"
		  . " created_at = '$first->{created_at}'::timestamptz"
		  . " FROM waitlist.outbox WHERE outbox_id = $first->{outbox_id}");
	my @col = split /\|/, $row, 7;
	is( join('|',
			$first->{resource_id}, $first->{user_id}, $first->{channel},
			$first->{event_type}, $first->{attempts}),
		join('|', @col[0 .. 4]),
		'the body carries the row\'s ids, channel, event type and attempts');
	is_deeply($first->{payload}, decode_json($col[5]), 'the body carries the payload');
	is($col[6], 't', 'the body carries created_at');

	# per fan, in creation order: the decline after the offer it declines
	my %seen;
	my $order_ok = 1;
	foreach my $r (@got)
	{
		my $ev = decode_json($r->{body});
		$order_ok = 0
		  if defined $seen{ $ev->{user_id} } && $seen{ $ev->{user_id} } > $ev->{outbox_id};
		$seen{ $ev->{user_id} } = $ev->{outbox_id};
	}
	ok($order_ok, "each fan's events arrive in creation order");
	is( join(',',
			map { decode_json($_->{body})->{event_type} }
			grep { decode_json($_->{body})->{user_id} eq 'once-u1' } @got),
		'offer_created,offer_declined',
		'the first fan hears of the offer before the decline');
}

# --- the relay calls the extension's own functions, whatever its path says ------

{
	# another role's schema first in the relay's search_path, with functions
	# named like the API's: 1.0's relay called them, and delivered nothing
	sql(q{CREATE SCHEMA trap;
CREATE TABLE trap.calls (f text);
CREATE FUNCTION trap.waitlist_outbox_claim(text, integer, interval, text[],
    OUT outbox_id bigint, OUT lease_token bigint, OUT resource_id text, OUT user_id text,
    OUT channel text, OUT event_type text, OUT payload jsonb, OUT created_at timestamptz,
    OUT attempts integer)
RETURNS SETOF record LANGUAGE plpgsql AS $$ BEGIN INSERT INTO trap.calls VALUES ('claim'); END $$;
CREATE FUNCTION trap.waitlist_outbox_ack(bigint, bigint) RETURNS boolean
LANGUAGE sql AS $$ INSERT INTO trap.calls VALUES ('ack') RETURNING true $$;});
	make_events('trapped', 2);
	relay_once('/ok', '--dbname',
		$node->connstr('postgres') . " options='-csearch_path=trap,public'");
	my $log = relay_log();
	is(states('trapped'), 'DELIVERED/0,DELIVERED/0',
		'a relay whose search_path starts with another schema delivers through the extension');
	is(sql('SELECT count(*) FROM trap.calls'), '0', 'and calls none of that schema\'s functions')
	  or diag(slurp($log));
	sql('DROP SCHEMA trap CASCADE');
}

# --- NOTIFY wakes the relay; 500s are retried with the same key -----------------

{
	# with a one-minute poll interval only the NOTIFY can wake it in time
	my $relay = start_relay('/fail/2', '--poll-interval', '60000');
	my $t0 = time;
	my @ids = make_events('flaky', 3);
	ok(wait_for(sub { all_in_state('flaky', 'DELIVERED') }, 20),
		'events that fail twice are delivered at the third attempt')
	  or diag(states('flaky'));
	my ($first) = requests_for($ids[0]);
	ok(defined $first && $first->{t} - $t0 < 5,
		'the first attempt came at once: the NOTIFY woke the relay');
	is(states('flaky'), join(',', ('DELIVERED/2') x 3), 'each row took two failed attempts');
	is( sql("SELECT count(*) FROM waitlist.outbox WHERE resource_id = 'flaky' AND last_error IS NULL"),
		'3', 'the ack clears last_error');
	foreach my $id (@ids)
	{
		my @r = requests_for($id);
		is( join(',', map { "$_->{key}:$_->{answer}:" . decode_json($_->{body})->{attempts} } @r),
			"$id:500:0,$id:500:1,$id:200:2",
			"outbox $id: two 500s then 200, all with Idempotency-Key $id");
	}
	check_signed('retries', map { requests_for($_) } @ids);

	my ($status, $secs) = stop_relay($relay, 'TERM');
	is($status, 0, 'SIGTERM: the relay exits 0');
	cmp_ok($secs, '<', 3, 'SIGTERM: ... promptly');
}

# --- a receiver that always fails: dead letters after 3 attempts -----------------

{
	my $relay = start_relay('/fail');
	my @ids = make_events('dead', 2);
	ok(wait_for(sub { all_in_state('dead', 'DEAD') }, 20),
		'rows that always fail are dead-lettered')
	  or diag(states('dead'));
	is(states('dead'), 'DEAD/3,DEAD/3', 'after waitlist.outbox_max_attempts = 3 attempts');
	is( sql("SELECT string_agg(last_error, ',') FROM waitlist.outbox WHERE resource_id = 'dead'"),
		'HTTP 500: simulated failure,HTTP 500: simulated failure',
		'last_error holds the status and the start of the response');
	usleep(600_000);
	is( join(',', map { scalar(requests_for($_)) } @ids),
		'3,3', 'three requests each, and none after the row died');
	check_signed('dead letters', map { requests_for($_) } @ids);
	my ($status) = stop_relay($relay, 'TERM');
	is($status, 0, 'the relay exits 0');

	# revived, a dead letter is delivered like any row
	is(sql("SELECT waitlist_outbox_retry($ids[0])"), 't', 'a dead letter is revived');
	is(relay_once('/ok'), 0, '--once delivers it');
	is(states('dead'), 'DELIVERED/0,DEAD/3', 'the revived row is delivered, the other stays dead');
	is(join(',', map { $_->{answer} } requests_for($ids[0])),
		'500,500,500,200', 'with the same Idempotency-Key as before');
}

# --- a hanging receiver: timeouts, then success ----------------------------------

{
	my $relay = start_relay('/hang/1');
	my @ids = make_events('hang', 2);
	ok(wait_for(sub { all_in_state('hang', 'DELIVERED') }, 20),
		'events whose first attempt hangs are delivered')
	  or diag(states('hang'));
	is(states('hang'), 'DELIVERED/1,DELIVERED/1', 'after one failed attempt each');
	foreach my $id (@ids)
	{
		is(join(',', map { $_->{answer} } requests_for($id)),
			'hang,200', "outbox $id: the hanging request, then the retry with the same key");
	}
	my ($status) = stop_relay($relay, 'TERM');
	is($status, 0, 'the relay exits 0');
	like(slurp($relay->{log}), qr/outbox $ids[0] failed, will be retried: .*timed out/i,
		'the relay reported the timeout as the failure');
}

# --- SIGTERM with a request in flight --------------------------------------------

{
	# everything hangs until the control file goes
	open(my $cf, '>', $control) or die;
	print $cf "/hang\n";
	close $cf;

	my $relay = start_relay('/ok', '--timeout', '1500', '--lease', '3');
	my ($id) = make_events('term', 1);
	ok(wait_for(sub { scalar(requests_for($id)) == 1 }, 20), 'a request hangs');
	my ($status, $secs) = stop_relay($relay, 'TERM');
	is($status, 0, 'SIGTERM with a request in flight: exit 0');
	cmp_ok($secs, '<', 4, '... once the request has timed out');
	is(states('term'), 'PENDING/1', 'the timed out request was reported as a failure');

	# two signals: the relay leaves at once; the lease runs out and the row returns
	$relay = start_relay('/ok', '--timeout', '1500', '--lease', '3');
	ok(wait_for(sub { scalar(requests_for($id)) == 2 }, 20), 'the retry hangs too');
	($status, $secs) = stop_relay($relay, 'TERM', 'TERM');
	is($status, 0, 'a second SIGTERM: exit 0');
	cmp_ok($secs, '<', 1.2, '... at once, abandoning the request');
	is( sql("SELECT state, attempts, lease_expires_at > clock_timestamp() FROM waitlist.outbox WHERE outbox_id = $id"),
		'PENDING|1|t', 'the abandoned row is still leased');

	unlink $control;
	$relay = start_relay('/ok');
	ok(wait_for(sub { all_in_state('term', 'DELIVERED') }, 20),
		'after the lease runs out another relay delivers it');
	is(join(',', map { $_->{answer} } requests_for($id)),
		'hang,hang,200', 'every attempt with the same Idempotency-Key');

	# --- the relay reconnects after losing its connection ---

	my $old_pid = sql(
		"SELECT pid FROM pg_stat_activity WHERE application_name = 'waitlist-relay'");
	is(sql("SELECT pg_terminate_backend($old_pid)"), 't', 'the relay\'s connection is terminated');
	ok( wait_for(
			sub {
				sql(    "SELECT count(*) FROM pg_stat_activity"
					  . " WHERE application_name = 'waitlist-relay' AND pid <> $old_pid") eq '1';
			},
			20),
		'the relay reconnects');
	make_events('reconnect', 2);
	ok(wait_for(sub { all_in_state('reconnect', 'DELIVERED') }, 20),
		'and delivers what comes after');
	like(slurp($relay->{log}), qr/database connection lost/, 'the relay logged the lost connection');
	($status) = stop_relay($relay, 'TERM');
	is($status, 0, 'the relay exits 0');
}

# --- concurrency, and the channel rate limit -------------------------------------

{
	# 8 events, each answered after 400 ms, 4 at a time
	my $relay = start_relay('/delay/400', '--concurrency', '4', '--timeout', '1500');
	my @ids = make_events('parallel', 8);
	ok(wait_for(sub { all_in_state('parallel', 'DELIVERED') }, 20), 'parallel events delivered');
	my @r = map { requests_for($_) } @ids;
	my ($max) = sort { $b <=> $a } map { $_->{open} } @r;
	ok($max >= 2 && $max <= 4, "requests ran in parallel, at most 4 at a time (max $max)");
	my ($status) = stop_relay($relay, 'TERM');
	is($status, 0, 'the relay exits 0');

	# 10 per second, burst 2: 16 events take 1.4 s at least
	sql("SELECT waitlist_set_channel_rate('webhook', 10, 2)");
	$relay = start_relay('/ok', '--concurrency', '8');
	@ids = make_events('rated', 16);
	ok(wait_for(sub { all_in_state('rated', 'DELIVERED') }, 20), 'rate-limited events delivered');
	my @t = sort { $a <=> $b } map { $_->{t} } map { requests_for($_) } @ids;
	my $span = $t[-1] - $t[0];
	cmp_ok($span, '>=', 1.1, sprintf('the channel rate spread them out (%.2f s)', $span));
	# at most rate * w + burst in any window w (one more for arrival jitter)
	my $most = 0;
	foreach my $i (0 .. $#t)
	{
		my $in_second = grep { $_ >= $t[$i] && $_ < $t[$i] + 1 } @t;
		$most = $in_second if $in_second > $most;
	}
	cmp_ok($most, '<=', 13, "at most rate + burst in any second ($most)");
	($status) = stop_relay($relay, 'TERM');
	is($status, 0, 'the relay exits 0');
	sql("SELECT waitlist_set_channel_rate('webhook', NULL)");
}

# --- no event lost, none delivered twice ----------------------------------------

is( sql(
		"SELECT count(*) FILTER (WHERE state = 'DELIVERED') + count(*) FILTER (WHERE state = 'DEAD')"
		  . " = count(*), count(*) FILTER (WHERE state = 'DEAD') FROM waitlist.outbox"),
	't|1',
	'every event ended delivered or dead-lettered (one dead letter left)');
my %ok_answers;
$ok_answers{ $_->{key} }++ foreach grep { $_->{answer} eq '200' } requests();
my $delivered = sql(
	"SELECT string_agg(outbox_id::text, ',' ORDER BY outbox_id) FROM waitlist.outbox WHERE state = 'DELIVERED'");
is(join(',', sort { $a <=> $b } keys %ok_answers),
	$delivered, 'the receiver accepted exactly the delivered events');
is(scalar(grep { $_ != 1 } values %ok_answers), 0, 'each of them once');

stop_receiver();
$node->stop;
done_testing();
