# The promotion workers in worker mode: they start with the server, promote
# released capacity without anyone calling waitlist_promote(), expire offers
# at their deadline without anyone calling waitlist_sweep(), ignore releases
# that roll back, hand declined and revoked units on, report their counters,
# leave databases other than waitlist.database to inline promotion, and
# split the resources between several workers.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest;

my $node = PostgreSQL::Test::Cluster->new('worker');
use_node($node);
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'waitlist'
waitlist.database = 'postgres'
waitlist.promotion_mode = 'worker'
waitlist.naptime = '500ms'
});
$node->start;

# --- the worker starts --------------------------------------------------

wait_until(
	"SELECT count(*) FROM pg_stat_activity"
	  . " WHERE backend_type = 'waitlist worker' AND datname = 'postgres'",
	'1', 'one waitlist worker runs, connected to waitlist.database');

sql('CREATE EXTENSION waitlist');

is(sql('SHOW waitlist.promotion_mode'), 'worker', 'promotion_mode is worker');

# --- a release is promoted by the worker ----------------------------------

sql("SELECT waitlist_create_resource('r-promote', '1 hour')");
my $p1 = sql("SELECT waitlist_join('r-promote', 'p1')");
my $p2 = sql("SELECT waitlist_join('r-promote', 'p2')");

# Inside the releasing transaction nothing is promoted yet: the event is only
# recorded, PENDING, for the worker.
my $inside = sql(
	qq{BEGIN;
SELECT waitlist_release('r-promote', 1, 'ev-promote');
SELECT state FROM waitlist.capacity_event WHERE resource_id = 'r-promote' AND event_id = 'ev-promote';
SELECT state FROM waitlist_status($p1);
SELECT free_units FROM waitlist.resource WHERE resource_id = 'r-promote';
COMMIT;});
is($inside, "t\nPENDING\nWAITING\n0",
	'in worker mode the release records a PENDING event and promotes nothing itself');

wait_until(entry_state($p1), 'OFFERED',
	'the worker offers the released unit to the first waiter');
is( sql(
		"SELECT state, processed_at IS NOT NULL, attempts FROM waitlist.capacity_event"
		  . " WHERE resource_id = 'r-promote' AND event_id = 'ev-promote'"),
	'PROCESSED|t|0',
	'the event is PROCESSED');
is(sql(entry_state($p2)), 'WAITING', 'the second waiter still waits');
is( sql(
		"SELECT count(*), count(*) FILTER (WHERE state = 'OPEN') FROM waitlist.offer"
		  . " WHERE resource_id = 'r-promote'"),
	'1|1',
	'exactly one offer for one unit');
is( sql(
		"SELECT free_units, units_released FROM waitlist.resource WHERE resource_id = 'r-promote'"
	),
	'0|1',
	'the unit was folded in and spent on the offer');
is( sql(
		"SELECT count(*) FROM waitlist.outbox WHERE resource_id = 'r-promote'"
		  . " AND event_type = 'offer_created' AND entry_id = $p1"),
	'1',
	'the worker wrote the offer_created outbox row');

# A repeated event id changes nothing, in worker mode too.
is(sql("SELECT waitlist_release('r-promote', 1, 'ev-promote')"),
	'f', 'a repeated event id is refused');

# --- offers expire at their deadline without waitlist_sweep() -------------

sql("SELECT waitlist_create_resource('r-expire', '2 seconds')");
my $x1 = sql("SELECT waitlist_join('r-expire', 'x1')");
my $x2 = sql("SELECT waitlist_join('r-expire', 'x2')");
sql("SELECT waitlist_release('r-expire', 1, 'ev-expire')");

# (polls accept the later states too, so that a slow poll cannot miss a
# two-second window)
wait_until(entry_state($x1), 'EXPIRED',
	'the 2-second offer expires without anyone calling waitlist_sweep');
wait_until("SELECT state <> 'WAITING' FROM waitlist_status($x2)",
	't', 'the expired unit goes to the next waiter');
is( sql(
		"SELECT string_agg(o.state, ',' ORDER BY o.offer_id) FROM waitlist.offer o"
		  . " WHERE o.resource_id = 'r-expire' AND o.entry_id = $x1"),
	'EXPIRED',
	'the first waiter had one offer, now EXPIRED');
is( sql(
		"SELECT count(*) FROM waitlist.outbox WHERE resource_id = 'r-expire'"
		  . " AND event_type = 'offer_expired' AND entry_id = $x1"),
	'1',
	'one offer_expired outbox row');
is( sql(
		"SELECT n.created_at >= f.decided_at AND n.expires_at > f.expires_at"
		  . " FROM waitlist.offer f, waitlist.offer n"
		  . " WHERE f.resource_id = 'r-expire' AND f.entry_id = $x1"
		  . " AND n.resource_id = 'r-expire' AND n.entry_id = $x2"),
	't', 'the next waiter was offered after the expiry, with a fresh deadline');

# with nobody left in line, the next expiry leaves the unit free ...
wait_until(entry_state($x2), 'EXPIRED', 'the second offer expires as well');
is( sql(
		"SELECT free_units FROM waitlist.resource WHERE resource_id = 'r-expire'"),
	'1',
	'the unit stays free when nobody waits');

# ... and a newcomer gets it from the worker (with a long deadline now, so
# that it is still open when declined below)
sql("SELECT waitlist_alter_resource('r-expire', offer_ttl => '1 hour')");
my $x3 = sql("SELECT waitlist_join('r-expire', 'x3')");
wait_until(entry_state($x3), 'OFFERED',
	'a join while a unit is free gets it from the worker');
# settle it before its deadline, so that the expiry counter below is exact
is(sql("SELECT waitlist_decline(offer_id) FROM waitlist_status($x3)"),
	't', 'the newcomer declines');

# --- declines and leaves hand the unit on through the worker -------------

sql("SELECT waitlist_create_resource('r-handoff', '1 hour')");
my @h = map { sql("SELECT waitlist_join('r-handoff', 'h$_')") } 1 .. 3;
sql("SELECT waitlist_release('r-handoff', 1, 'ev-handoff')");
wait_until(entry_state($h[0]), 'OFFERED', 'first in line offered');
is(sql("SELECT waitlist_decline(offer_id) FROM waitlist_status($h[0])"),
	't', 'the first declines');
wait_until(entry_state($h[1]), 'OFFERED', 'the declined unit goes to the next waiter');
is(sql("SELECT waitlist_leave($h[1])"), 't', 'the second leaves while offered');
wait_until(entry_state($h[2]), 'OFFERED', 'the revoked unit goes to the third waiter');
is( sql(
		"SELECT string_agg(state, ',' ORDER BY offer_id) FROM waitlist.offer WHERE resource_id = 'r-handoff'"
	),
	'DECLINED,REVOKED,OPEN',
	'one unit, handed on twice');
is( sql(
		"SELECT free_units, units_released FROM waitlist.resource WHERE resource_id = 'r-handoff'"
	),
	'0|1',
	'the unit was never counted twice');

# --- a release that rolls back makes no offer -----------------------------

sql("SELECT waitlist_create_resource('r-rollback', '1 hour')");
my $rb = sql("SELECT waitlist_join('r-rollback', 'rb1')");
sql("SELECT waitlist_create_resource('r-marker', '1 hour')");
my $mk = sql("SELECT waitlist_join('r-marker', 'mk1')");

sql(
	qq{BEGIN;
SELECT waitlist_release('r-rollback', 1, 'ev-rollback');
ROLLBACK;});
sql(
	qq{BEGIN;
SAVEPOINT s;
SELECT waitlist_release('r-rollback', 1, 'ev-rollback-sub');
ROLLBACK TO SAVEPOINT s;
COMMIT;});
my $after_rollback = sql('SELECT clock_timestamp()');

# Give the worker every chance to act: a committed release it does process,
# and then rounds for more than two naps after the rollbacks.
sql("SELECT waitlist_release('r-marker', 1, 'ev-marker')");
wait_until(entry_state($mk), 'OFFERED', 'a later committed release is promoted');
wait_until(
	"SELECT bool_and(last_wake > '$after_rollback'::timestamptz + interval '1.2 seconds')"
	  . " FROM waitlist_worker_status()",
	't',
	'the worker kept running for more than two naps after the rollbacks');

is(sql(entry_state($rb)), 'WAITING',
	'a rolled back release offers nothing');
is( sql(
		"SELECT count(*) FROM waitlist.offer WHERE resource_id = 'r-rollback'"),
	'0',
	'no offer for the rolled back release');
is( sql(
		"SELECT count(*) FROM waitlist.capacity_event WHERE resource_id = 'r-rollback'"
	),
	'0',
	'no capacity_event survives the rollback');
is( sql(
		"SELECT free_units, units_released FROM waitlist.resource WHERE resource_id = 'r-rollback'"
	),
	'0|0',
	'the resource got no units');

# --- waitlist_worker_status() ---------------------------------------------

my $worker_pid = sql(
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'waitlist worker'");
is( sql(
		"SELECT worker, pid, resources_owned, last_wake IS NOT NULL,"
		  . " events_processed, offers_made >= 4, offers_expired FROM waitlist_worker_status()"
	),
	"0|$worker_pid|5|t|4|t|2",
	'waitlist_worker_status() shows the worker, its share and its counters');

# --- a database the workers do not serve promotes inline ------------------

sql('CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION waitlist');
$node->safe_psql('other', "SELECT waitlist_create_resource('o', '1 hour')");
my $o1 = $node->safe_psql('other', "SELECT waitlist_join('o', 'o1')");
my $o2 = $node->safe_psql('other', "SELECT waitlist_join('o', 'o2')");
is( $node->safe_psql(
		'other',
		qq{SELECT waitlist_release('o', 1, 'ev-other');
SELECT state FROM waitlist.capacity_event WHERE event_id = 'ev-other';
SELECT state FROM waitlist_status($o1);}),
	"t\nPROCESSED\nOFFERED",
	'outside waitlist.database a release is promoted inline, worker mode or not');

# An event that died while this database was still served (before
# waitlist.database was changed) is retried by the caller: no worker would
# ever take it.
$node->safe_psql('other',
	    "INSERT INTO waitlist.capacity_event (resource_id, event_id, quantity, state, attempts, last_error)"
	  . " VALUES ('o', 'ev-other-dead', 1, 'DEAD', 5, 'failed earlier')");
is( $node->safe_psql(
		'other',
		qq{SELECT waitlist_retry_event('ev-other-dead');
SELECT state FROM waitlist.capacity_event WHERE event_id = 'ev-other-dead';
SELECT state FROM waitlist_status($o2);}),
	"1\nPROCESSED\nOFFERED",
	'outside waitlist.database a revived event is processed inline');

# --- two workers split the resources --------------------------------------

$node->append_conf('postgresql.conf', "waitlist.workers = 2");
$node->restart;

wait_until(
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'waitlist worker'",
	'2', 'two waitlist workers run');

my @multi = map { "multi-$_" } 1 .. 8;
my %first;
my %second;
foreach my $r (@multi)
{
	sql("SELECT waitlist_create_resource('$r', '1 hour')");
	$first{$r} = sql("SELECT waitlist_join('$r', 'a')");
	$second{$r} = sql("SELECT waitlist_join('$r', 'b')");
}
is( sql(
		"SELECT count(DISTINCT waitlist.resource_worker(resource_id, 2)) FROM waitlist.resource"
		  . " WHERE resource_id LIKE 'multi-%'"),
	'2',
	'the test resources are spread over both workers');

# all released in one transaction: both owners are woken at commit
sql(
	"SELECT count(*) FROM (SELECT waitlist_release(r, 1, 'ev-' || r) FROM unnest(ARRAY['"
	  . join("','", @multi)
	  . "']) r) s");

foreach my $r (@multi)
{
	wait_until(entry_state($first{$r}), 'OFFERED', "$r promoted by its worker");
}
foreach my $r (@multi)
{
	is(sql(entry_state($second{$r})), 'WAITING', "$r: one offer for one unit");
}
is( sql(
		"SELECT count(*) FROM waitlist.capacity_event"
		  . " WHERE resource_id LIKE 'multi-%' AND state = 'PROCESSED'"),
	'8',
	'every event of the multi resources is PROCESSED');

is( sql(
		"SELECT count(*), count(DISTINCT pid), sum(resources_owned)"
		  . " FROM waitlist_worker_status() WHERE pid IS NOT NULL"),
	'2|2|' . sql('SELECT count(*) FROM waitlist.resource'),
	'waitlist_worker_status() shows two running workers sharing all resources');

# each event was folded by the worker that owns its resource
is( sql(
		"SELECT string_agg((w.events_processed = (SELECT count(*) FROM waitlist.resource r"
		  . " WHERE r.resource_id LIKE 'multi-%'"
		  . " AND waitlist.resource_worker(r.resource_id, 2) = w.worker))::text, ',' ORDER BY w.worker)"
		  . " FROM waitlist_worker_status() w"),
	'true,true',
	'each worker processed exactly the events of the resources it owns');

# --- the worker's offers carry tokens signed with the current key --------

sql("SELECT waitlist_create_resource('r-token', '1 hour')");
my @tk = map { sql("SELECT waitlist_join('r-token', 'tk$_')") } 1 .. 3;
sql("SELECT waitlist_release('r-token', 1, 'ev-token-1')");
wait_until(entry_state($tk[0]), 'OFFERED', 'the worker offers to the first token fan');

# the key id of a token: bytes 2 to 5 of its base64url payload
my $key_of = sub {
	my ($token_sql) = @_;
	return sql(
		"SELECT ('x' || encode(substr(decode(translate(p, '-_', '+/') || repeat('=', (4 - length(p) % 4) % 4), 'base64'), 2, 4), 'hex'))::bit(32)::integer"
		  . " FROM (SELECT split_part(($token_sql), '.', 1) AS p) t");
};
my $token_of = sub {
	my ($entry) = @_;
	return "SELECT payload->>'token' FROM waitlist.outbox WHERE resource_id = 'r-token'"
	  . " AND event_type = 'offer_created' AND entry_id = $entry LIMIT 1";
};
is( sql(
		"SELECT (" . $token_of->($tk[0]) . ") = waitlist_offer_token(offer_id) FROM waitlist_status($tk[0])"),
	't',
	'the offer_created payload of a worker-made offer carries the offer\'s token');
my $new_key = sql("SELECT waitlist_rotate_token_key()");
sql("SELECT waitlist_release('r-token', 1, 'ev-token-2')");
wait_until(entry_state($tk[1]), 'OFFERED', 'the worker offers to the second token fan');
is($key_of->($token_of->($tk[1])), $new_key,
	'after a rotation the running worker signs with the new key');
is(sql("SELECT state FROM waitlist_accept_token((" . $token_of->($tk[0]) . "), 'tk1-tap')"),
	'ACCEPTED', 'the old key\'s token accepts its offer');
is(sql("SELECT waitlist_decline_token((" . $token_of->($tk[1]) . "))"),
	't', 'the new key\'s token declines its offer');
wait_until(entry_state($tk[2]), 'OFFERED', 'the declined unit goes to the third fan');

$node->stop;
done_testing();
