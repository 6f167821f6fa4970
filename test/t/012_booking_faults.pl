# Booking functions that fail: one that errors transiently (the offer stays
# open and a retry books it, once), one that sleeps past the offer's
# deadline while the worker tries to expire the offer (exactly one of
# ACCEPTED or EXPIRED, the seat booked if and only if ACCEPTED; the worker
# neither spins nor stops serving other resources meanwhile, nor when a
# release of that resource comes in), and one whose seat is gone
# (unique_violation or WL004: the offer FAILS, nobody is booked twice, no
# unit is lost), also with two accepts racing for one seat.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest;
use POSIX ();
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('booking_faults');
use_node($node);
$node->init;
# one worker, so that it owns every resource here
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'waitlist'
waitlist.database = 'postgres'
waitlist.promotion_mode = 'worker'
waitlist.workers = 1
waitlist.naptime = '200ms'
track_commit_timestamp = on
});
$node->start;

sub offer_of
{
	my ($entry_id) = @_;
	return sql("SELECT offer_id FROM waitlist_status($entry_id)");
}

sub check_resource
{
	my ($resource, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $found = sql(
		"SELECT invariant || ' ' || coalesce(entity_id::text, '') || ': ' || detail"
		  . " FROM waitlist_check('$resource') ORDER BY 1");
	is($found, '', "$what: waitlist_check('$resource') returns no rows")
	  or diag $found;
}

ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'waitlist worker'",
		'1'),
	'the worker runs');

# The booking system: a seat is booked at most once.  The seat a fan wants
# is the part of the idempotency key before the colon.  booking_calls
# counts the calls of every booking function, also of the rolled back ones.
sql(
	q{CREATE EXTENSION waitlist;
CREATE TABLE seat (
  resource_id text NOT NULL,
  seat_no text NOT NULL,
  offer_id bigint NOT NULL,
  user_id text NOT NULL,
  PRIMARY KEY (resource_id, seat_no));
CREATE SEQUENCE booking_calls;

CREATE FUNCTION book(resource_id text, user_id text, offer_id bigint, key text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  wanted text := split_part(key, ':', 1);
BEGIN
  PERFORM nextval('booking_calls');
  IF wanted = 'sold' THEN
    RAISE EXCEPTION 'seat sold by another channel' USING ERRCODE = 'WL004';
  END IF;
  INSERT INTO seat VALUES (book.resource_id, wanted, book.offer_id, book.user_id);
  RETURN book.resource_id || '/' || wanted;
END $$;

-- the first call fails with serialization_failure, the second with a
-- plain error: the booking system is briefly unavailable
CREATE SEQUENCE flaky_calls;
CREATE FUNCTION book_flaky(resource_id text, user_id text, offer_id bigint, key text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  call bigint := nextval('flaky_calls');
BEGIN
  IF call = 1 THEN
    RAISE EXCEPTION 'booking system busy' USING ERRCODE = 'serialization_failure';
  ELSIF call = 2 THEN
    RAISE EXCEPTION 'booking system unavailable';
  END IF;
  RETURN book(resource_id, user_id, offer_id, key);
END $$;

-- takes longer than the offer is open
CREATE FUNCTION book_slow(resource_id text, user_id text, offer_id bigint, key text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_sleep(3);
  RETURN book(resource_id, user_id, offer_id, key);
END $$;

-- an accept as a fan's app sees it: the outcome, or the error's SQLSTATE
CREATE FUNCTION try_accept(offer bigint, key text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  a record;
BEGIN
  SELECT * INTO a FROM waitlist_accept(offer, key);
  RETURN a.state || ' ' || coalesce(a.reservation_ref, '-');
EXCEPTION WHEN OTHERS THEN
  RETURN 'ERROR ' || SQLSTATE;
END $$;});

# --- a transient error: the offer stays open, a retry books once ------------

sql(
	q{SELECT waitlist_create_resource('flaky', '1 hour',
  booking_function => 'book_flaky(text,text,bigint,text)')});
my $f1 = sql("SELECT waitlist_join('flaky', 'f1')");
my $f2 = sql("SELECT waitlist_join('flaky', 'f2')");
sql("SELECT waitlist_release('flaky', 1, 'ev-flaky')");
$node->poll_query_until('postgres', entry_state($f1), 'OFFERED')
  or die 'f1 was not offered';
my $fo = offer_of($f1);

my $offer_untouched = qq{SELECT o.state || ' ' || e.state || ' '
  || (SELECT count(*) FROM waitlist.accept_request a WHERE a.offer_id = $fo) || ' '
  || (SELECT string_agg(event_type, ',' ORDER BY outbox_id) FROM waitlist.outbox b
      WHERE b.resource_id = 'flaky' AND b.offer_id = $fo) || ' '
  || (SELECT count(*) FROM seat WHERE resource_id = 'flaky')
  FROM waitlist.offer o JOIN waitlist.entry e USING (resource_id, entry_id)
  WHERE o.offer_id = $fo};

is(sql("SELECT try_accept($fo, 'A1:tap')"),
	'ERROR 40001', 'the booking function\'s serialization_failure aborts the accept');
is(sql($offer_untouched), 'OPEN OFFERED 0 offer_created 0',
	'the offer stays OPEN, no accept request, outbox row or seat is left behind');
is(sql("SELECT try_accept($fo, 'A1:tap')"),
	'ERROR P0001', 'a plain error from the booking function aborts the retry too');
is(sql($offer_untouched), 'OPEN OFFERED 0 offer_created 0', 'the offer is still OPEN');

is(sql("SELECT try_accept($fo, 'A1:tap')"),
	'ACCEPTED flaky/A1', 'the next retry with the same key books the seat');
is(sql("SELECT try_accept($fo, 'A1:tap')"),
	'ACCEPTED flaky/A1', 'a repeated tap returns the same reservation');
is(sql("SELECT try_accept($fo, 'A2:other-device')"),
	'ACCEPTED flaky/A1', 'a tap with another key returns the one reservation there is');
is(sql("SELECT last_value FROM flaky_calls"),
	'3', 'the booking function ran three times: two failures and one booking');
is( sql(
		qq{SELECT o.state || ' ' || e.state || ' ' || o.reservation_ref || ' '
  || (SELECT string_agg(event_type, ',' ORDER BY outbox_id) FROM waitlist.outbox b
      WHERE b.resource_id = 'flaky' AND b.offer_id = $fo) || ' '
  || (SELECT string_agg(seat_no || '=' || offer_id, ',') FROM seat WHERE resource_id = 'flaky')
  FROM waitlist.offer o JOIN waitlist.entry e USING (resource_id, entry_id)
  WHERE o.offer_id = $fo}),
	"ACCEPTED ACCEPTED flaky/A1 offer_created,offer_accepted A1=$fo",
	'offer and entry ACCEPTED, one outbox row each, one seat');
is(sql(entry_state($f2)), 'WAITING', 'the one unit went to f1 only: f2 still waits');
check_resource('flaky', 'after the transient errors');

# --- a booking slower than the offer's deadline ---------------------------

# The offer is open 1 second and the booking takes 3: the worker comes to
# expire it while the accept holds the resource's gate, and must pass over
# it, without spinning.  A neighbour resource of the same worker shows that
# the worker goes on expiring others meanwhile.
sql(
	q{SELECT waitlist_create_resource('slow', '1 second',
  booking_function => 'book_slow(text,text,bigint,text)');
SELECT waitlist_create_resource('neighbour', '1 second')});
my $s1 = sql("SELECT waitlist_join('slow', 's1')");
my $s2 = sql("SELECT waitlist_join('slow', 's2')");
my $n1 = sql("SELECT waitlist_join('neighbour', 'n1')");
my $n2 = sql("SELECT waitlist_join('neighbour', 'n2')");
my $calls_before = sql("SELECT last_value FROM booking_calls");

sql("SELECT waitlist_release('slow', 1, 'ev-slow'), waitlist_release('neighbour', 1, 'ev-n')");
$node->poll_query_until('postgres', entry_state($s1), 'OFFERED')
  or die 's1 was not offered';
my $so = offer_of($s1);

# the fan taps accept, and taps again half a second later on another device
# with the same key
my $tap1 = $node->background_psql('postgres');
my $tap2 = $node->background_psql('postgres');
$tap1->query_until(qr/tap1/, "\\echo tap1\nSELECT try_accept($so, 'S1:tap');\n");
usleep(500_000);
$tap2->query_until(qr/tap2/, "\\echo tap2\nSELECT try_accept($so, 'S1:tap');\n");

my $worker_pid = sql("SELECT pid FROM waitlist_worker_status()");
wait_until(
	"SELECT clock_timestamp() > expires_at + interval '0.3 seconds' FROM waitlist.offer WHERE offer_id = $so",
	't', 'the slow offer\'s deadline passes while the booking runs');

# The worker has an overdue offer it may not expire yet: it must wait for
# something to change (the accept's commit wakes it), not poll in a loop.
# Its CPU time over 0.8 seconds tells.
SKIP:
{
	skip 'no /proc/<pid>/stat to read the worker\'s CPU time', 1
	  unless -r "/proc/$worker_pid/stat";
	my $cpu = sub {
		my @f = split / /, (slurp_file("/proc/$worker_pid/stat") =~ s/^.*\) //sr);
		return $f[11] + $f[12];    # utime + stime, in clock ticks
	};
	my $ticks_per_second = POSIX::sysconf(POSIX::_SC_CLK_TCK) || 100;
	my $before = $cpu->();
	usleep(800_000);
	my $used = ($cpu->() - $before) / $ticks_per_second;
	cmp_ok($used, '<', 0.2,
		'the worker does not spin while the overdue offer\'s accept is in flight'
		  . " (CPU seconds used in 0.8 s: $used)");
}
is( sql(
		"SELECT state FROM waitlist.offer WHERE offer_id = $so"),
	'OPEN',
	'the worker passes over the offer whose accept is in flight');
is( sql(
		"SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT try_accept($so,%' AND state = 'active'"),
	'2',
	'both taps are still running');

my $outcome1 = $tap1->query_safe("SELECT 'tap1 done'");
my $outcome2 = $tap2->query_safe("SELECT 'tap2 done'");
$tap1->quit;
$tap2->quit;
note "tap 1: $outcome1; tap 2: $outcome2";
my ($answer1) = split /\n/, $outcome1;
my ($answer2) = split /\n/, $outcome2;
ok($answer1 eq 'ACCEPTED slow/S1' || $answer1 eq 'ERROR WL002',
	"the accept ends ACCEPTED or refused as expired ($answer1)");
is($answer2, $answer1, 'the second tap with the same key gets the same answer');

my $final = sql("SELECT state FROM waitlist.offer WHERE offer_id = $so");
my $seats = sql("SELECT count(*) FROM seat WHERE resource_id = 'slow'");
my $events = sql(
	"SELECT string_agg(event_type, ',' ORDER BY outbox_id) FROM waitlist.outbox WHERE offer_id = $so AND resource_id = 'slow'"
);
note "offer $so ended $final; outbox: $events; seats: $seats";
if ($answer1 eq 'ACCEPTED slow/S1')
{
	is("$final $seats $events", 'ACCEPTED 1 offer_created,offer_accepted',
		'ACCEPTED: the seat is booked, the offer ACCEPTED, never expired');
	is(sql(entry_state($s1)), 'ACCEPTED', 'the fan\'s entry is ACCEPTED');
	is(sql(entry_state($s2)), 'WAITING', 'the unit was consumed: the next fan still waits');
}
else
{
	is("$final $seats $events", 'EXPIRED 0 offer_created,offer_expired',
		'EXPIRED: no seat is booked, the offer EXPIRED');
	wait_until(entry_state($s2), 'OFFERED', 'the unit went on to the next fan');
}
is(sql("SELECT last_value FROM booking_calls") - $calls_before,
	$answer1 eq 'ACCEPTED slow/S1' ? 1 : 0,
	'the booking ran once for both taps');
check_resource('slow', 'after the slow booking');

# the neighbour's offer expired on time while the slow booking ran
is( sql(
		qq{SELECT o.state || ' ' || (o.decided_at < o.expires_at + interval '1 second')
  FROM waitlist.offer o JOIN waitlist.entry e USING (resource_id, entry_id)
  WHERE e.entry_id = $n1}),
	'EXPIRED true',
	'meanwhile the worker expired the neighbour\'s offer within a second of its deadline');
wait_until("SELECT state <> 'WAITING' FROM waitlist_status($n2)",
	't', 'and offered its unit to the next fan');

# --- a release while a slow booking holds the resource ----------------------

# The worker must fold the release of a resource whose accept is in flight;
# meanwhile it should still serve its other resources.
sql(
	q{SELECT waitlist_create_resource('held', '1 hour',
  booking_function => 'book_slow(text,text,bigint,text)');
SELECT waitlist_create_resource('bystander', '1 hour')});
my $h1 = sql("SELECT waitlist_join('held', 'h1')");
my $h2 = sql("SELECT waitlist_join('held', 'h2')");
my $b1 = sql("SELECT waitlist_join('bystander', 'b1')");
sql("SELECT waitlist_release('held', 1, 'ev-held-1')");
$node->poll_query_until('postgres', entry_state($h1), 'OFFERED')
  or die 'h1 was not offered';
my $ho = offer_of($h1);
my $tap = $node->background_psql('postgres');
$tap->query_until(qr/tap/, "\\echo tap\nSELECT try_accept($ho, 'H1:tap');\n");
wait_until(
	"SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT try_accept($ho,%' AND wait_event = 'PgSleep'",
	'1', 'the slow booking of h1 runs');
sql("SELECT waitlist_release('held', 1, 'ev-held-2')");
usleep(300_000);
sql("SELECT waitlist_release('bystander', 1, 'ev-bystander')");
wait_until(entry_state($b1), 'OFFERED', 'the bystander is offered its unit');
is((split /\n/, $tap->query_safe("SELECT 'tap done'"))[0],
	'ACCEPTED held/H1', 'the slow booking succeeds');
$tap->quit;
is( sql(
		qq{SELECT b.created_at < pg_xact_commit_timestamp(t.transaction_id::text::xid)
  FROM waitlist.offer b, waitlist.transition t
  WHERE b.resource_id = 'bystander'
    AND t.resource_id = 'held' AND t.entity = 'offer' AND t.entity_id = $ho
    AND t.to_state = 'ACCEPTED'}),
	't',
	'the bystander got its offer while the slow booking was still running');
wait_until(entry_state($h2), 'OFFERED', 'the second release of the held resource goes to h2');
check_resource('held', 'after the release during a slow booking');

# --- the seat is gone: FAILED, no double booking, no lost unit --------------

sql(
	q{SELECT waitlist_create_resource('conflict', '1 hour',
  booking_function => 'book(text,text,bigint,text)')});
my @c = map { sql("SELECT waitlist_join('conflict', 'c$_')") } 1 .. 4;
sql("SELECT waitlist_release('conflict', 2, 'ev-c1')");
$node->poll_query_until('postgres', entry_state($c[1]), 'OFFERED')
  or die 'c2 was not offered';
my $co1 = offer_of($c[0]);
my $co2 = offer_of($c[1]);

is(sql("SELECT try_accept($co1, '7:c1')"), 'ACCEPTED conflict/7', 'c1 books seat 7');
my $calls = sql("SELECT last_value FROM booking_calls");
is(sql("SELECT try_accept($co2, '7:c2')"),
	'FAILED -', 'c2 wants seat 7 too: unique_violation, the offer FAILS');
is(sql("SELECT try_accept($co2, '7:c2')"),
	'FAILED -', 'a repeated tap gets the same answer');
is(sql("SELECT last_value FROM booking_calls") - $calls,
	1, 'without calling the booking function again');
is(sql("SELECT try_accept($co2, '8:c2')"),
	'ERROR WL003', 'another key on the FAILED offer: not open');
is( sql(
		qq{SELECT string_agg(event_type, ',' ORDER BY outbox_id) FROM waitlist.outbox
  WHERE resource_id = 'conflict' AND offer_id = $co2}),
	'offer_created,offer_failed',
	'the failure is announced');
is( sql("SELECT state || ' ' || position FROM waitlist_status($c[1])"),
	'WAITING 1', 'c2 is back in line, first, ahead of c3 who joined later');
is(sql(entry_state($c[2])), 'WAITING', 'the failed unit is retired, not offered to c3');
is( sql(
		"SELECT free_units || ' ' || units_released FROM waitlist.resource WHERE resource_id = 'conflict'"
	),
	'0 2',
	'two units: one ACCEPTED, one FAILED, none free');

# two fans race for seat 9: the second waits for the first and then FAILS
sql("SELECT waitlist_release('conflict', 2, 'ev-c2')");
$node->poll_query_until('postgres', entry_state($c[2]), 'OFFERED')
  or die 'c3 was not offered';
my $co3 = offer_of($c[1]);
my $co4 = offer_of($c[2]);
my $first = $node->background_psql('postgres');
my $second = $node->background_psql('postgres');
is($first->query_safe("BEGIN; SELECT try_accept($co3, '9:c2')"),
	'ACCEPTED conflict/9', 'c2 books seat 9, not committed yet');
$second->query_until(qr/racing/, "\\echo racing\nSELECT try_accept($co4, '9:c3');\n");
wait_until(
	"SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT try_accept($co4,%' AND wait_event_type = 'Lock'",
	'1', 'c3\'s booking of seat 9 waits for c2\'s');
$first->query_safe('COMMIT');
my $raced = $second->query_safe("SELECT 'raced'");
$first->quit;
$second->quit;
is((split /\n/, $raced)[0], 'FAILED -', 'once c2 commits, c3\'s accept FAILS');

# the seat is sold by another channel: WL004
sql("SELECT waitlist_release('conflict', 1, 'ev-c3')");
$node->poll_query_until('postgres', entry_state($c[2]), 'OFFERED')
  or die 'c3 was not offered again';
is(sql("SELECT try_accept(" . offer_of($c[2]) . ", 'sold:c3')"),
	'FAILED -', 'WL004 from the booking function: FAILED as well');

is( sql(
		"SELECT string_agg(seat_no || '=' || user_id, ',' ORDER BY seat_no) FROM seat WHERE resource_id = 'conflict'"
	),
	'7=c1,9=c2',
	'each seat booked once, by the fan whose accept succeeded');
is( sql(
		q{SELECT string_agg(state, ',' ORDER BY offer_id) FROM waitlist.offer WHERE resource_id = 'conflict'}),
	'ACCEPTED,FAILED,ACCEPTED,FAILED,FAILED',
	'five offers: two ACCEPTED, three FAILED');
is( sql(
		"SELECT free_units || ' ' || units_released FROM waitlist.resource WHERE resource_id = 'conflict'"
	),
	'0 5',
	'five units released: two consumed, three retired, none lost');
is(sql("SELECT string_agg(state, ',' ORDER BY entry_id) FROM waitlist.entry WHERE resource_id = 'conflict'"),
	'ACCEPTED,ACCEPTED,WAITING,WAITING',
	'c1 and c2 booked; c3 and c4 wait');
check_resource('conflict', 'after the conflicts');

my $found = sql(
	"SELECT invariant || ' ' || resource_id || ' ' || coalesce(entity_id::text, '') || ': ' || detail FROM waitlist_check()"
);
is($found, '', 'waitlist_check() returns no rows') or diag $found;

$node->stop;
done_testing();
