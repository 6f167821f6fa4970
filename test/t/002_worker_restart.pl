# The promotion workers across configuration reloads and crashes: a SIGHUP
# changes waitlist.naptime, a worker killed with SIGKILL comes back and
# processes the events that were pending when it died, and an immediate
# shutdown in the middle of a burst of releases loses no committed event
# and processes none twice.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest;

my $node = PostgreSQL::Test::Cluster->new('restart');
use_node($node);
$node->init;
# The nap starts at an hour, so that only commits wake the workers until the
# reload below shortens it.
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'waitlist'
waitlist.database = 'postgres'
waitlist.promotion_mode = 'worker'
waitlist.workers = 2
waitlist.naptime = '1h'
restart_after_crash = on
});
$node->start;

my $workers_running =
  "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'waitlist worker'";

wait_until($workers_running, '2', 'two workers run');
sql('CREATE EXTENSION waitlist');
is(sql('SHOW waitlist.naptime'), '1h', 'naptime starts at one hour');

# Commits wake the owner whatever the nap.
sql("SELECT waitlist_create_resource('nap', '1 hour')");
my $n1 = sql("SELECT waitlist_join('nap', 'n1')");
sql("SELECT waitlist_release('nap', 1, 'ev-nap')");
wait_until(entry_state($n1), 'OFFERED', 'a release wakes the owner at commit');

# --- SIGHUP changes the nap -----------------------------------------------

# Free units with somebody waiting and no commit that wakes a worker (as a
# promotion cut short would leave them): only a worker's periodic round
# finds them.
sub leave_idle_unit
{
	my ($resource) = @_;
	sql("SELECT waitlist_create_resource('$resource', '1 hour')");
	my $entry = sql("SELECT waitlist_join('$resource', 'idle-user')");
	sql(
		"UPDATE waitlist.resource SET free_units = 1, units_released = 1"
		  . " WHERE resource_id = '$resource'");
	return $entry;
}

my $idle1 = leave_idle_unit('idle-1');

sql("ALTER SYSTEM SET waitlist.naptime = '200ms'");
sql('SELECT pg_reload_conf()');
wait_until('SHOW waitlist.naptime', '200ms', 'the reload sets naptime to 200ms');

wait_until(entry_state($idle1), 'OFFERED',
	'after the reload the workers find the idle unit');

# With the one-hour nap this would wait for an hour: the new nap is in force.
my $idle2 = leave_idle_unit('idle-2');
wait_until(entry_state($idle2), 'OFFERED',
	'the workers now wake on the short nap and promote an idle unit');

is( sql(
		"SELECT count(*) FROM waitlist_worker_status()"
		  . " WHERE pid IS NOT NULL AND last_wake > now() - interval '10 seconds'"),
	'2',
	'both workers are alive and waking after the reload');

# --- a terminated worker is restarted on its own --------------------------

my ($term_pid, $other_pid) = split /\|/,
  sql("SELECT string_agg(pid::text, '|' ORDER BY worker) FROM waitlist_worker_status()");
is(sql("SELECT pg_terminate_backend($term_pid)"), 't', 'terminate worker 0');
wait_until(
	"SELECT pid NOT IN ($term_pid) FROM waitlist_worker_status() WHERE worker = 0",
	't', 'worker 0 comes back with a new pid');
is(sql("SELECT pid FROM waitlist_worker_status() WHERE worker = 1"),
	$other_pid, 'without restarting the other worker');

sql("SELECT waitlist_create_resource('after-term', '1 hour')");
my $t1 = sql("SELECT waitlist_join('after-term', 't1')");
sql("SELECT waitlist_release('after-term', 1, 'ev-after-term')");
wait_until(entry_state($t1), 'OFFERED', 'promotion works after the restart');

# --- SIGKILL of a worker --------------------------------------------------

sql("SELECT waitlist_create_resource('crash', '1 hour')");
my @crash = map { sql("SELECT waitlist_join('crash', 'c$_')") } 1 .. 3;

my $owner = sql("SELECT waitlist.resource_worker('crash', 2)");
my $old_pid =
  sql("SELECT pid FROM waitlist_worker_status() WHERE worker = $owner");
ok($old_pid =~ /^\d+$/, "the owner of 'crash' (worker $owner) runs as pid $old_pid");

# Make the owner, woken by the release, block while it promotes the
# resource (its offers wait for a lock another session holds; a held row
# would only make the worker pass the resource over): the event is pending
# when the worker is killed.
sql(q{CREATE FUNCTION wait_for_crash_lock() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(4242);
  RETURN NULL;
END $$;
CREATE TRIGGER wait_for_crash_lock AFTER INSERT ON waitlist.offer
  FOR EACH ROW WHEN (NEW.resource_id = 'crash') EXECUTE FUNCTION wait_for_crash_lock();});
my $locker = $node->background_psql('postgres');
$locker->query_safe("SELECT pg_advisory_lock(4242);");

sql("SELECT waitlist_release('crash', 2, 'ev-crash')");
wait_until(
	"SELECT wait_event_type FROM pg_stat_activity WHERE pid = $old_pid",
	'Lock', 'the owner is stuck folding the event');
is( sql(
		"SELECT state FROM waitlist.capacity_event WHERE resource_id = 'crash' AND event_id = 'ev-crash'"
	),
	'PENDING',
	'the event is pending when the worker is killed');

my $log_offset = -s $node->logfile;
ok(kill('KILL', $old_pid), 'SIGKILL the worker');
# everything restarts: the locker's session goes too
$node->wait_for_log(
	qr/all server processes terminated; reinitializing/, $log_offset);
eval { $locker->quit; };

wait_until(
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'waitlist worker'"
	  . " AND pid <> $old_pid",
	'2', 'the workers come back with new pids');
wait_until(
	"SELECT state FROM waitlist.capacity_event WHERE resource_id = 'crash' AND event_id = 'ev-crash'",
	'PROCESSED', 'the event pending at the crash is processed after it');
is(join(',', map { sql(entry_state($_)) } @crash),
	'OFFERED,OFFERED,WAITING',
	'two units went to the first two waiters');
is( sql(
		"SELECT free_units, units_released FROM waitlist.resource WHERE resource_id = 'crash'"
	),
	'0|2',
	'the event was folded exactly once');

# still working after the crash
sql("SELECT waitlist_release('crash', 1, 'ev-crash-2')");
wait_until(entry_state($crash[2]), 'OFFERED',
	'a release after the crash is promoted');
is(sql('SHOW waitlist.naptime'), '200ms', 'the reloaded nap survives the crash');

# --- immediate shutdown during a burst of releases ------------------------

# Two resources owned by one worker and one owned by the other, whose row
# is held so that its events are certainly pending at the shutdown while the
# other worker keeps folding.
my %by_owner;
foreach my $i (1 .. 40)
{
	my $w = sql("SELECT waitlist.resource_worker('burst-$i', 2)");
	push @{ $by_owner{$w} }, "burst-$i";
}
my @active = @{ $by_owner{0} }[ 0 .. 1 ];
my $held = $by_owner{1}[0];
my @burst = (@active, $held);
# one line short enough to run out of waiters, two long enough not to
my %waiters = ($active[0] => 10, $active[1] => 300, $held => 300);

foreach my $r (@burst)
{
	sql(    "SELECT waitlist_create_resource('$r', '1 hour');"
		  . "SELECT count(waitlist_join('$r', 'u' || g)) FROM generate_series(1, $waiters{$r}) g"
	);
}
my $waiters_of = "CASE r.resource_id "
  . join(' ', map { "WHEN '$_' THEN $waiters{$_}" } @burst) . " END";
my $burst_list = "ARRAY['" . join("','", @burst) . "']";

$locker = $node->background_psql('postgres');
$locker->query_safe(
	"BEGIN; SELECT 1 FROM waitlist.resource WHERE resource_id = '$held' FOR UPDATE;");

# each release its own transaction, 1 or 2 units, round robin; paced so
# that the shutdown comes before the long lines are used up
my $releaser = $node->background_psql('postgres', on_error_stop => 0);
$releaser->query_until(
	qr/burst started/, qq{\\echo burst started
DO \$\$
DECLARE
  r text[] := $burst_list;
BEGIN
  FOR i IN 1..100000 LOOP
    PERFORM waitlist_release(r[1 + i % 3], 1 + i % 2, 'ev-burst-' || i);
    COMMIT;
    PERFORM pg_sleep(0.001);
  END LOOP;
END
\$\$;
});

wait_until(
	"SELECT count(*) >= 150"
	  . " AND count(*) FILTER (WHERE state = 'PENDING') > 0"
	  . " AND count(*) FILTER (WHERE state = 'PROCESSED') > 0"
	  . " FROM waitlist.capacity_event WHERE resource_id = ANY ($burst_list)",
	't', 'the burst is under way, some events processed and some pending');

$node->stop('immediate');
eval { $releaser->quit; };
eval { $locker->quit; };
$node->start;

wait_until($workers_running, '2', 'the workers run again after the restart');
wait_until(
	"SELECT count(*) FROM waitlist.capacity_event WHERE state <> 'PROCESSED'",
	'0', 'every committed event is processed after the restart');

my $events = sql(
	"SELECT count(*) FROM waitlist.capacity_event WHERE resource_id = ANY ($burst_list)");
note("$events events were committed before the immediate shutdown");
cmp_ok($events, '>=', 150, 'the burst events survived the crash');

note(
	sql(qq{SELECT string_agg(format('%s: %s units, %s offers', r.resource_id, r.units_released,
         (SELECT count(*) FROM waitlist.offer o WHERE o.resource_id = r.resource_id)), '; ')
  FROM waitlist.resource r WHERE r.resource_id = ANY ($burst_list)}));

# per resource: units folded exactly once, offers = min(units, waiters)
is( sql(
		qq{SELECT count(*) FROM waitlist.resource r
  LEFT JOIN (SELECT resource_id, sum(quantity) AS units FROM waitlist.capacity_event
             WHERE state = 'PROCESSED' GROUP BY resource_id) e USING (resource_id)
  LEFT JOIN (SELECT resource_id, count(*) AS offers FROM waitlist.offer
             GROUP BY resource_id) o USING (resource_id)
 WHERE r.resource_id = ANY ($burst_list)
   AND r.units_released = e.units
   AND coalesce(o.offers, 0) = least(e.units, $waiters_of)
   AND r.free_units = e.units - coalesce(o.offers, 0)}
	),
	'3',
	'units_released = sum of processed events, offers = min(units, waiters), the rest is free'
);

is( sql(
		qq{SELECT count(*) FROM (
  SELECT resource_id, entry_id FROM waitlist.offer
  WHERE resource_id = ANY ($burst_list)
  GROUP BY resource_id, entry_id HAVING count(*) > 1
     OR count(*) FILTER (WHERE state = 'OPEN') > 1) d}
	),
	'0',
	'no entry has two offers, let alone two OPEN ones');

is( sql(
		qq{SELECT count(*) FROM waitlist.entry e
 WHERE e.resource_id = ANY ($burst_list)
   AND (e.state = 'OFFERED') <> EXISTS (SELECT 1 FROM waitlist.offer o
        WHERE o.resource_id = e.resource_id AND o.entry_id = e.entry_id AND o.state = 'OPEN')}
	),
	'0',
	'an entry is OFFERED exactly when it has an OPEN offer');

# FIFO: the offered entries are the first in line
is( sql(
		qq{SELECT count(*) FROM waitlist.entry w
 WHERE w.resource_id = ANY ($burst_list) AND w.state = 'WAITING'
   AND EXISTS (SELECT 1 FROM waitlist.entry o
               WHERE o.resource_id = w.resource_id AND o.state = 'OFFERED' AND o.seq > w.seq)}
	),
	'0',
	'nobody waiting was passed over');

is( sql(
		qq{SELECT count(*) = (SELECT count(*) FROM waitlist.offer WHERE resource_id = ANY ($burst_list))
 FROM waitlist.outbox WHERE resource_id = ANY ($burst_list) AND event_type = 'offer_created'}
	),
	't',
	'one offer_created outbox row per offer');

$node->stop;
done_testing();
