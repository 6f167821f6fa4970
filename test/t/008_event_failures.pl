# Failures that say nothing about a capacity event count no attempt at it:
# a lock timeout, a deadlock, a serialization failure, and a cancel of the
# worker (pg_cancel_backend(), SQLSTATE 57014, which a statement timeout
# raises too) are retried after a short backoff, however often they occur,
# and the event is promoted once they stop.  Failures of the event itself
# are counted and end DEAD (test/t/003_poison.pl).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest;

my $max_attempts = 3;

my $node = worker_node(
	'event_failures', qq{
waitlist.naptime = '1s'
waitlist.max_event_attempts = $max_attempts
waitlist.event_retry_base = '100ms'
});
my $pid = sql("SELECT pid FROM waitlist_worker_status()");

# How offers of a resource fail: with the SQLSTATE in "fail", or by
# sleeping while "sleep" is set.
sql(
	q{CREATE TABLE public.fault (resource_id text PRIMARY KEY, fail text, sleep boolean NOT NULL DEFAULT false);
CREATE FUNCTION public.faulty_offer() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  f public.fault;
BEGIN
  SELECT * INTO f FROM public.fault WHERE resource_id = NEW.resource_id;
  IF f.sleep THEN
    PERFORM pg_sleep(60);
  END IF;
  IF f.fail IS NOT NULL THEN
    RAISE EXCEPTION 'simulated failure % of resource %', f.fail, NEW.resource_id
      USING ERRCODE = f.fail;
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER faulty_offer AFTER INSERT ON waitlist.offer
  FOR EACH ROW EXECUTE FUNCTION public.faulty_offer();});

sub log_count
{
	my ($re) = @_;
	my $n = () = slurp_file($node->logfile) =~ /$re/g;
	return $n;
}

# --- transient errors -------------------------------------------------------

foreach my $sqlstate ('55P03', '40P01', '40001')
{
	my $r = "transient-$sqlstate";
	my $failure = qr/ERROR:\s+simulated failure \Q$sqlstate\E of resource \Q$r\E/;

	sql("INSERT INTO public.fault (resource_id, fail) VALUES ('$r', '$sqlstate')");
	sql("SELECT waitlist_create_resource('$r', '1 hour')");
	my $fan = sql("SELECT waitlist_join('$r', 'fan')");
	sql("SELECT waitlist_release('$r', 1, 'ev')");

	my $failures = $max_attempts + 3;
	my $deadline = time() + 30;
	usleep(100_000) while log_count($failure) < $failures && time() < $deadline;
	cmp_ok(log_count($failure), '>=', $failures,
		"$sqlstate: the worker keeps retrying (more than max_event_attempts times)");
	is( sql(
			"SELECT state, attempts FROM waitlist.capacity_event WHERE resource_id = '$r'"),
		'PENDING|0',
		"$sqlstate: the event stays PENDING with no attempt counted");

	sql("DELETE FROM public.fault WHERE resource_id = '$r'");
	wait_until(entry_state($fan), 'OFFERED',
		"$sqlstate: once the failures stop, the event is promoted");
	is( sql(
			"SELECT state, attempts FROM waitlist.capacity_event WHERE resource_id = '$r'"),
		'PROCESSED|0',
		"$sqlstate: and PROCESSED without a counted attempt");
}

# --- a cancelled worker ---------------------------------------------------------

sql("INSERT INTO public.fault (resource_id, sleep) VALUES ('cancel', true)");
sql("SELECT waitlist_create_resource('cancel', '1 hour')");
my $fan = sql("SELECT waitlist_join('cancel', 'fan')");
sql("SELECT waitlist_release('cancel', 1, 'ev')");
wait_until("SELECT wait_event FROM pg_stat_activity WHERE pid = $pid",
	'PgSleep', 'the worker is busy promoting the event');

# the cause goes away while the worker still sleeps in it; then it is cancelled
sql("UPDATE public.fault SET sleep = false WHERE resource_id = 'cancel'");
is(sql("SELECT pg_cancel_backend($pid)"), 't', 'pg_cancel_backend() on the worker');
wait_until(entry_state($fan), 'OFFERED', 'the event is promoted on the next try');
is( sql(
		"SELECT state, attempts, last_error IS NULL FROM waitlist.capacity_event WHERE resource_id = 'cancel'"
	),
	'PROCESSED|0|t',
	'the cancel counted no attempt');
ok(log_count(qr/ERROR:\s+canceling statement due to user request/) >= 1,
	'the cancel was logged');
is(sql("SELECT pid FROM waitlist_worker_status()"), $pid,
	'the worker was cancelled, not restarted');

# a cancel while the worker is idle costs nothing either
is(sql("SELECT pg_cancel_backend($pid)"), 't', 'pg_cancel_backend() on the idle worker');
sql("SELECT waitlist_create_resource('after', '1 hour')");
my $after = sql("SELECT waitlist_join('after', 'fan')");
sql("SELECT waitlist_release('after', 1, 'ev')");
wait_until(entry_state($after), 'OFFERED', 'the worker goes on promoting');
is(sql("SELECT pid FROM waitlist_worker_status()"), $pid, 'in the same process');

is(sql("SELECT count(*) FROM waitlist_check()"), '0', 'waitlist_check() is clean');

$node->stop;
done_testing();
