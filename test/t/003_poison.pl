# Poison capacity events: a resource whose promotion fails every time has
# its event retried a bounded number of times, backing off from
# waitlist.event_retry_base (1 s) and doubling, and then marked DEAD with
# the error, while the worker goes on promoting other resources;
# waitlist_retry_event() revives the event once the cause is gone.
# Transient failures, which count no attempt, are in 008_event_failures.pl.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest;

my $max_attempts = 3;

my $node = PostgreSQL::Test::Cluster->new('poison');
use_node($node);
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'waitlist'
waitlist.database = 'postgres'
waitlist.promotion_mode = 'worker'
waitlist.max_event_attempts = $max_attempts
});
$node->start;

ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'waitlist worker'",
		'1'),
	'the worker runs');
sql('CREATE EXTENSION waitlist');

# Every offer of the resource 'poison' fails.
sql(
	q{CREATE FUNCTION public.refuse_poison_offer() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.resource_id = 'poison' THEN
    RAISE EXCEPTION 'offers of resource % are refused', NEW.resource_id;
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER refuse_poison_offer AFTER INSERT ON waitlist.offer
  FOR EACH ROW EXECUTE FUNCTION public.refuse_poison_offer();});
my $message = 'offers of resource poison are refused';

sql("SELECT waitlist_create_resource('poison', '1 hour')");
sql("SELECT waitlist_create_resource('healthy', '1 hour')");
my $p1 = sql("SELECT waitlist_join('poison', 'p1')");
my $h1 = sql("SELECT waitlist_join('healthy', 'h1')");
my $h2 = sql("SELECT waitlist_join('healthy', 'h2')");

# both released in one transaction
is( sql(
		"SELECT waitlist_release('poison', 1, 'ev-poison'), waitlist_release('healthy', 1, 'ev-healthy-1')"
	),
	't|t',
	'both releases recorded');

wait_until(entry_state($h1), 'OFFERED',
	'the healthy resource released at the same time is promoted');
wait_until(
	"SELECT state FROM waitlist.capacity_event WHERE resource_id = 'poison' AND event_id = 'ev-poison'",
	'DEAD', 'the poison event ends DEAD');

is( sql(
		"SELECT attempts, processed_at IS NULL, position('$message' IN last_error) > 0"
		  . " FROM waitlist.capacity_event WHERE resource_id = 'poison' AND event_id = 'ev-poison'"
	),
	"$max_attempts|t|t",
	"DEAD after waitlist.max_event_attempts ($max_attempts) attempts, with the error as last_error"
);
is(sql(entry_state($p1)), 'WAITING', 'the poison waiter was not offered');
is( sql(
		"SELECT free_units, units_released FROM waitlist.resource WHERE resource_id = 'poison'"
	),
	'0|0',
	'the failed attempts were rolled back: no units folded');
is(sql("SELECT count(*) FROM waitlist.offer WHERE resource_id = 'poison'"),
	'0', 'no poison offer exists');

my @tries =
  slurp_file($node->logfile) =~ /^\S+ (\d+):(\d+):([\d.]+) \S+ \[\d+\] ERROR:\s+\Q$message\E/mg;
my @at;
push @at, $tries[$_] * 3600 + $tries[ $_ + 1 ] * 60 + $tries[ $_ + 2 ]
  for grep { $_ % 3 == 0 } 0 .. $#tries;
is(scalar(@at), $max_attempts, 'the worker tried exactly max_event_attempts times');
# the default backoff: 1 s, then 2 s, each with 10 % jitter
cmp_ok($at[1] - $at[0], '>=', 0.85, 'the second try came after about a second');
cmp_ok($at[2] - $at[1], '>=', 1.75, 'the third after about two seconds more');

is( sql(
		"SELECT position('$message' IN last_error) > 0 FROM waitlist_worker_status()"),
	't',
	'waitlist_worker_status() shows the error');

# the worker keeps promoting other resources after the event died
sql("SELECT waitlist_release('healthy', 1, 'ev-healthy-2')");
wait_until(entry_state($h2), 'OFFERED',
	'a later release of the healthy resource is still promoted');
is( sql(
		"SELECT count(*) FROM waitlist.capacity_event WHERE resource_id = 'healthy' AND state = 'PROCESSED'"
	),
	'2',
	'the healthy events are PROCESSED');
is( sql(
		"SELECT state FROM waitlist.capacity_event WHERE resource_id = 'poison' AND event_id = 'ev-poison'"
	),
	'DEAD',
	'the dead event stays DEAD');

# --- the cause goes away; the event is revived ----------------------------

sql('DROP TRIGGER refuse_poison_offer ON waitlist.offer');
is(sql("SELECT waitlist_retry_event('ev-poison')"),
	'1', 'waitlist_retry_event() revives the dead event');

wait_until(entry_state($p1), 'OFFERED', 'the revived event is promoted');
is( sql(
		"SELECT state, processed_at IS NOT NULL, last_error IS NULL FROM waitlist.capacity_event"
		  . " WHERE resource_id = 'poison' AND event_id = 'ev-poison'"),
	'PROCESSED|t|t',
	'the revived event is PROCESSED and its error cleared');
is( sql(
		"SELECT free_units, units_released FROM waitlist.resource WHERE resource_id = 'poison'"
	),
	'0|1',
	'its unit was folded once and spent on the offer');
is( sql(
		"SELECT count(*) FROM waitlist.offer WHERE resource_id = 'poison' AND state = 'OPEN'"
	),
	'1',
	'one open offer for the one unit');

is(sql("SELECT waitlist_retry_event('ev-poison')"),
	'0', 'retrying an event that is not dead revives nothing');
my ($ret, $stdout, $stderr) =
  $node->psql('postgres', "SELECT waitlist_retry_event('no-such-event')");
isnt($ret, 0, 'retrying an unknown event fails');
like($stderr, qr/capacity event "no-such-event" does not exist/,
	'with a clear message');

$node->stop;
done_testing();
