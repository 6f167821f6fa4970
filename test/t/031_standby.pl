# High availability: a primary with the promotion worker (worker mode) and a
# synchronous streaming standby.  A storm of joins, releases, accepts and
# declines runs against the primary while waitlist-relay delivers its
# outbox; the primary is stopped in immediate mode mid-storm, with events
# still pending, offers due to expire and undelivered outbox rows; the
# standby is promoted.  Then: the worker, which never ran on the standby,
# runs on the new primary; every join, release, accept and decline a client
# saw acknowledged is there; the pending events and the due offers get
# processed; waitlist_check() is empty; and the relay, reconnecting to the
# new primary, delivers everything that was left.

use strict;
use warnings;

use File::Basename qw(dirname);
use IPC::Run;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest qw(slurp wait_for);

my $tmp = PostgreSQL::Test::Utils::tempdir;

# --- a primary and a synchronous standby ------------------------------------

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
# (the standby gets the same settings from the backup: the library and
# worker mode configured there too, as a standby kept ready for failover is)
$primary->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'waitlist'
waitlist.database = 'postgres'
waitlist.promotion_mode = 'worker'
waitlist.workers = 1
waitlist.naptime = '200ms'
waitlist.notify_channel = 'waitlist_outbox'
waitlist.outbox_retry_base = '50ms'
waitlist.outbox_max_attempts = 50
track_commit_timestamp = on
max_connections = 40
log_statement = none
});
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION waitlist');

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;

# only now: a synchronous standby named before it connects would hang every commit
$primary->append_conf('postgresql.conf', "synchronous_standby_names = '*'\n");
$primary->reload;
ok( $primary->poll_query_until(
		'postgres', "SELECT sync_state FROM pg_stat_replication", 'sync'),
	'the standby streams synchronously');

my $workers_running =
  "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'waitlist worker'";

ok($primary->poll_query_until('postgres', $workers_running, '1'),
	'the promotion worker runs on the primary');
is($standby->safe_psql('postgres', $workers_running),
	'0', 'no promotion worker runs on the standby');
is( $standby->safe_psql('postgres', 'SELECT count(*) FROM waitlist_worker_status() WHERE pid IS NOT NULL'),
	'0', 'waitlist_worker_status() on the standby: no worker');

# --- the resources ----------------------------------------------------------

# hot-1 .. hot-4: the storm's resources, offers open long enough to be
# accepted or declined.  short: offers about to expire when the primary
# stops.  held: events that cannot be folded before the primary stops.
$primary->safe_psql(
	'postgres', q{
SELECT waitlist_create_resource('hot-' || h, interval '1 minute') FROM generate_series(1, 4) h;
SELECT waitlist_create_resource('short', interval '10 seconds');
SELECT waitlist_create_resource('held', interval '1 hour');
SELECT count(waitlist_join('hot-' || h, 'early-' || h || '-' || u))
  FROM generate_series(1, 4) h, generate_series(1, 20) u;
SELECT count(waitlist_join('held', 'held-' || u)) FROM generate_series(1, 5) u;
});

# --- the relay and its receiver -------------------------------------------------

my $secret = 'standby-test-secret';
$ENV{WAITLIST_RELAY_SECRET} = $secret;
my ($relay_dir) = grep { -x "$_/waitlist-relay" } split /:/, $ENV{PATH};
BAIL_OUT('waitlist-relay is not installed (make install)') unless $relay_dir;

my $control = "$tmp/control";
my $received = "$tmp/received.log";
my $receiver = IPC::Run::start(
	[
		$^X, dirname(__FILE__) . '/../relay/receiver.pl',
		"$tmp/port", $received, $control
	],
	'<', '/dev/null', '>', "$tmp/receiver.out", '2>', "$tmp/receiver.err",
	IPC::Run::timeout(600));
ok(wait_for(sub { -s "$tmp/port" }, 30), 'the receiver listens')
  or diag(slurp("$tmp/receiver.err"));
chomp(my $port = slurp("$tmp/port"));

# The relay is given both servers and asks for the one that accepts writes,
# as a deployment with a standby would configure it: it finds the new
# primary by itself.
my $dsn =
	"host=" . $primary->host . ',' . $standby->host
  . " port=" . $primary->port . ',' . $standby->port
  . " dbname=postgres target_session_attrs=read-write";
my $relay_log = "$tmp/relay.log";
my $relay = do
{
	delete local $ENV{PGAPPNAME};
	IPC::Run::start(
		[
			"$relay_dir/waitlist-relay", '--dbname', $dsn,
			'--url', "http://127.0.0.1:$port/ok",
			'--timeout', '500', '--lease', '2', '--poll-interval', '200',
			'--concurrency', '4'
		],
		'<', '/dev/null', '>', "$tmp/relay.out", '2>', $relay_log,
		IPC::Run::timeout(600));
};
END
{
	eval { $relay->kill_kill if $relay; };
	eval { $receiver->kill_kill if $receiver; };
}
ok(wait_for(sub { slurp($relay_log) =~ /connected as consumer/ }, 30),
	'the relay connected to the primary')
  or diag(slurp($relay_log));

# The receiver's log: outbox id => answers, in arrival order.
sub answers
{
	my %answers;
	foreach my $line (split /\n/, slurp($received))
	{
		my (undef, undef, undef, $key, undef, undef, $answer) = split /\t/, $line, 8;
		push @{ $answers{$key} }, $answer;
	}
	return \%answers;
}

# --- the storm ------------------------------------------------------------------

# Each client runs a script of autocommit statements; psql prints a row only
# once its statement has committed (and, with synchronous replication, once
# the standby has it), so a client's output is what it saw acknowledged.
sub script
{
	my ($name, $make) = @_;
	my $file = "$tmp/$name.sql";
	open(my $fh, '>', $file) or die "$file: $!";
	print $fh $make->($_), "\n" foreach 1 .. 20000;
	close $fh;
	return $file;
}

my %scripts = (
	joiner1 => script(
		'joiner1',
		sub {
			my $h = 1 + $_[0] % 4;
			"SELECT 'join', 'hot-$h', 'j1-$_[0]', waitlist_join('hot-$h', 'j1-$_[0]');";
		}),
	joiner2 => script(
		'joiner2',
		sub {
			my $h = 1 + $_[0] % 4;
			"SELECT 'join', 'hot-$h', 'j2-$_[0]', waitlist_join('hot-$h', 'j2-$_[0]');";
		}),
	releaser => script(
		'releaser',
		sub {
			my $h = 1 + $_[0] % 4;
			"SELECT 'release', 'hot-$h', 'ev-$_[0]', waitlist_release('hot-$h', 1, 'ev-$_[0]');";
		}),
	decliner => script(
		'decliner',
		sub {
			"SELECT 'decline', offer_id, waitlist_decline(offer_id)"
			  . " FROM (SELECT offer_id FROM waitlist.offer WHERE state = 'OPEN'"
			  . " AND resource_id LIKE 'hot-%' ORDER BY offer_id DESC LIMIT 1) o;";
		}));
foreach my $n (1, 2)
{
	$scripts{"accepter$n"} = script(
		"accepter$n",
		sub {
			my $skip = int(rand(3));
			"SELECT 'accept', offer_id, (waitlist_accept(offer_id, 'key-' || offer_id)).state"
			  . " FROM (SELECT offer_id FROM waitlist.offer WHERE state = 'OPEN'"
			  . " AND resource_id LIKE 'hot-%' ORDER BY offer_id LIMIT 1 OFFSET $skip) o;";
		});
}

my %clients;
foreach my $name (sort keys %scripts)
{
	my %c = (out => "$tmp/$name.out", err => "$tmp/$name.err");
	$c{h} = IPC::Run::start(
		[
			'psql', '-XAtq', '-v', 'ON_ERROR_STOP=0', '-d', $primary->connstr('postgres'),
			'-f', $scripts{$name}
		],
		'<', '/dev/null', '>', $c{out}, '2>', $c{err},
		IPC::Run::timeout(600));
	$clients{$name} = \%c;
}

# The storm is well under way once the standby has seen its accepts.
ok( $standby->poll_query_until(
		'postgres',
		"SELECT (SELECT count(*) FROM waitlist.offer WHERE state = 'ACCEPTED') >= 30"
		  . " AND (SELECT count(*) FROM waitlist.capacity_event WHERE resource_id LIKE 'hot-%') >= 60"
		  . " AND (SELECT count(*) FROM waitlist.outbox WHERE state = 'DELIVERED') >= 20"),
	'the storm is under way: accepts, releases and deliveries replicated');
is($standby->safe_psql('postgres', $workers_running),
	'0', 'still no promotion worker on the standby');

# the read-only API works on the standby, the rest is refused
is( $standby->safe_psql(
		'postgres',
		"SELECT count(*) > 0 FROM waitlist.entry e, waitlist_status(e.entry_id) s"
		  . " WHERE e.resource_id = 'hot-1' AND s.state IS NOT NULL"),
	't', 'waitlist_status() works on the standby');
is($standby->safe_psql('postgres', "SELECT count(*) >= 0 FROM waitlist_check('hot-1')"),
	't', 'waitlist_check() works on the standby');
{
	my ($stdout, $stderr);
	$standby->psql(
		'postgres', "\\set VERBOSITY verbose\nSELECT waitlist_join('hot-1', 'on-the-standby')",
		stdout => \$stdout, stderr => \$stderr);
	like($stderr, qr/ERROR:  25006: cannot execute/, 'a join on the standby is refused with 25006');
}

# Work left for after the failover.  A join to 'held' left uncommitted holds
# the resource's gate, so the worker passes the resource over and its
# released units stay PENDING events.  The 'short' resource's offers are
# about to expire.  The receiver stops answering, so outbox rows pile up.
my $holder = $primary->background_psql('postgres', on_error_stop => 0);
$holder->query_safe("BEGIN; SELECT waitlist_join('held', 'holder')");
$primary->safe_psql(
	'postgres', q{
SELECT waitlist_release('held', 1, 'held-ev-' || g) FROM generate_series(1, 3) g;
SELECT count(waitlist_join('short', 'short-' || u)) FROM generate_series(1, 8) u;
SELECT waitlist_release('short', 4, 'short-ev');
});
{
	open(my $cf, '>', $control) or die;
	print $cf "/hang\n";
	close $cf;
}
ok( $standby->poll_query_until(
		'postgres',
		"SELECT count(*) FROM waitlist.offer WHERE resource_id = 'short' AND state = 'OPEN'", '4'),
	"the standby has the 'short' offers");
is( $standby->safe_psql(
		'postgres',
		"SELECT string_agg(state, ',') FROM waitlist.capacity_event WHERE resource_id = 'held'"),
	'PENDING,PENDING,PENDING',
	"the standby has the 'held' events, still PENDING");

# --- the primary fails mid-storm ----------------------------------------------

$primary->stop('immediate');
foreach my $c (values %clients)
{
	eval { $c->{h}->finish; };
}
eval { $holder->quit; };

# What the standby has is what the new primary starts from.
my $left = $standby->safe_psql('postgres',
	"SELECT count(*) FROM waitlist.outbox WHERE state <> 'DELIVERED'");
cmp_ok($left, '>', 0, "$left outbox rows were not delivered when the primary stopped");
my $due = $standby->safe_psql('postgres',
	"SELECT string_agg(offer_id::text, ',' ORDER BY offer_id) FROM waitlist.offer"
	  . " WHERE resource_id = 'short' AND state = 'OPEN' AND expires_at > clock_timestamp()");
my @due = split /,/, $due;
is(scalar(@due), 4, "the 'short' offers were still open when the primary stopped");
my $before_promotion = -s $standby->logfile;
unlike(slurp($standby->logfile), qr/waitlist worker/,
	'the standby never started a promotion worker nor logged one');

# the keys that sign offer tokens come with the standby: it makes the same
# token the primary announced, and so does the new primary
my $token_query =
    "SELECT o.offer_id || ' ' || (b.payload->>'token' = waitlist_offer_token(o.offer_id))"
  . " FROM waitlist.offer o JOIN waitlist.outbox b ON b.resource_id = o.resource_id"
  . "   AND b.offer_id = o.offer_id AND b.event_type = 'offer_created'"
  . " WHERE o.resource_id LIKE 'hot-%' AND o.state = 'OPEN' ORDER BY o.offer_id LIMIT 1";
my ($token_offer, $same_on_standby) = split / /, $standby->safe_psql('postgres', $token_query);
is($same_on_standby, 'true', 'the standby signs an open offer\'s token as the primary did');

$standby->promote;
ok($standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'),
	'the standby is promoted');
is( $standby->safe_psql(
		'postgres',
		"SELECT b.payload->>'token' = waitlist_offer_token($token_offer) FROM waitlist.outbox b"
		  . " WHERE b.offer_id = $token_offer AND b.event_type = 'offer_created' LIMIT 1"),
	't', 'the new primary signs with the same key: tokens in flight keep working');
ok($standby->poll_query_until('postgres', $workers_running, '1'),
	'the promotion worker runs on the new primary');
like(
	substr(slurp($standby->logfile), $before_promotion),
	qr/waitlist worker 0 of 1 started/,
	'... started at the promotion');
# the receiver answers again
unlink $control;

# --- nothing acknowledged was lost ---------------------------------------------------

sub new_sql
{
	my ($query) = @_;
	return $standby->safe_psql('postgres', $query);
}

# Every row a client printed, as [kind, fields...].
my @acked;
foreach my $name (sort keys %clients)
{
	foreach my $line (split /\n/, slurp($clients{$name}{out}))
	{
		push @acked, [ split /\|/, $line ];
	}
}
my %by_kind;
push @{ $by_kind{ $_->[0] } }, $_ foreach @acked;
note join(', ', map { scalar(@{ $by_kind{$_} }) . " ${_}s" } sort keys %by_kind)
  . ' acknowledged before the primary stopped';
cmp_ok(scalar(@{ $by_kind{$_} // [] }), '>', 0, "the clients saw ${_}s acknowledged")
  foreach qw(join release accept);

# the acknowledged values, as a VALUES list a query can compare
sub values_list
{
	my ($rows, @fields) = @_;
	return join(',', map { my $r = $_; '(' . join(',', map { "'$r->[$_]'" } @fields) . ')' } @$rows);
}

is( new_sql(
		'SELECT count(*) FROM (VALUES ' . values_list($by_kind{join}, 1, 2, 3) . ') a(r, u, id)'
		  . ' WHERE NOT EXISTS (SELECT 1 FROM waitlist.entry e WHERE e.entry_id = a.id::bigint'
		  . '   AND e.resource_id = a.r AND e.user_id = a.u)'),
	'0', 'every acknowledged join has its entry on the new primary');
is( new_sql(
		'SELECT count(*) FROM (VALUES ' . values_list($by_kind{release}, 1, 2) . ') a(r, ev)'
		  . ' WHERE NOT EXISTS (SELECT 1 FROM waitlist.capacity_event e'
		  . '   WHERE e.resource_id = a.r AND e.event_id = a.ev)'),
	'0', 'every acknowledged release has its capacity event on the new primary');
my @accepted = grep { $_->[2] eq 'ACCEPTED' } @{ $by_kind{accept} };
cmp_ok(scalar(@accepted), '>', 0, scalar(@accepted) . ' accepts answered ACCEPTED');
is( new_sql(
		'SELECT count(*) FROM (VALUES ' . values_list(\@accepted, 1) . ') a(id)'
		  . " WHERE NOT EXISTS (SELECT 1 FROM waitlist.offer o WHERE o.offer_id = a.id::bigint AND o.state = 'ACCEPTED')"),
	'0', 'every offer acknowledged ACCEPTED is ACCEPTED on the new primary');
my @declined = grep { $_->[2] eq 't' } @{ $by_kind{decline} // [] };
SKIP:
{
	skip 'no decline was acknowledged', 1 unless @declined;
	is( new_sql(
			'SELECT count(*) FROM (VALUES ' . values_list(\@declined, 1) . ') a(id)'
			  . " WHERE NOT EXISTS (SELECT 1 FROM waitlist.offer o WHERE o.offer_id = a.id::bigint AND o.state = 'DECLINED')"),
		'0', 'every acknowledged decline is DECLINED on the new primary');
}

# --- the new primary carries on -------------------------------------------------

ok( $standby->poll_query_until(
		'postgres',
		"SELECT count(*) FROM waitlist.capacity_event WHERE resource_id = 'held' AND state = 'PROCESSED'",
		'3'),
	"the new primary's worker folded the 'held' events left PENDING");
is(new_sql("SELECT count(*) FROM waitlist.offer WHERE resource_id = 'held'"),
	'3', '... into three offers');
ok( $standby->poll_query_until(
		'postgres',
		"SELECT (SELECT count(*) FROM waitlist.offer o JOIN waitlist.entry e USING (entry_id)"
		  . "        WHERE o.offer_id IN ($due) AND o.state = 'EXPIRED' AND e.state = 'EXPIRED')"
		  . " || '/' || (SELECT count(DISTINCT entry_id) FROM waitlist.offer"
		  . "        WHERE resource_id = 'short' AND offer_id NOT IN ($due))",
		'4/4'),
	"the 'short' offers due at the failover expired on the new primary, and their units went on");

# a new join and release on the new primary, promoted by its worker
new_sql("SELECT waitlist_create_resource('after', interval '1 hour')");
my $entry = new_sql("SELECT waitlist_join('after', 'fan')");
new_sql("SELECT waitlist_release('after', 1, 'after-ev')");
ok($standby->poll_query_until('postgres', "SELECT state FROM waitlist_status($entry)", 'OFFERED'),
	'a release on the new primary is promoted by its worker');

ok( $standby->poll_query_until(
		'postgres',
		"SELECT NOT EXISTS (SELECT 1 FROM waitlist.capacity_event WHERE state <> 'PROCESSED')"
		  . " AND NOT EXISTS (SELECT 1 FROM waitlist.offer"
		  . "   WHERE state = 'OPEN' AND expires_at < clock_timestamp() - interval '500 milliseconds')"
		  . " AND NOT EXISTS (SELECT 1 FROM waitlist_check(NULL, interval '0'))"),
	'the new primary drains');
new_sql('ANALYZE');
my $found = new_sql(
	q{SELECT invariant || ' ' || coalesce(resource_id, '') || ' ' || coalesce(entity, '')
  || ' ' || coalesce(entity_id::text, '') || ': ' || detail FROM waitlist_check() ORDER BY 1});
is($found, '', 'waitlist_check() returns no rows on the new primary')
  or diag "waitlist_check():\n$found";
cmp_ok(
	new_sql('SELECT sum(events_processed) FROM waitlist_worker_status() WHERE pid IS NOT NULL'),
	'>=', 4, "waitlist_worker_status(): the new primary's worker did the work");

# --- the relay delivers what was left ---------------------------------------------

ok( $standby->poll_query_until(
		'postgres', "SELECT count(*) FROM waitlist.outbox WHERE state <> 'DELIVERED'", '0'),
	'the relay reconnected to the new primary and delivered every outbox row')
  or diag(new_sql("SELECT state, count(*) FROM waitlist.outbox GROUP BY 1"));
like(slurp($relay_log), qr/database connection lost/, 'the relay noticed the failover');

my $answers = answers();
my %outbox = map { $_ => 1 } split /\n/, new_sql('SELECT outbox_id FROM waitlist.outbox');
my %accepted_ids = map { $_ => 1 } grep { grep { $_ eq '200' } @{ $answers->{$_} } } keys %$answers;
is(scalar(grep { !$outbox{$_} } keys %accepted_ids),
	0, 'the receiver accepted no row that the new primary does not have');
is(scalar(grep { !$accepted_ids{$_} } keys %outbox),
	0, 'the receiver accepted every outbox row of the new primary (' . scalar(keys %outbox) . ')');
note scalar(grep { (grep { $_ eq '200' } @{ $answers->{$_} }) > 1 } keys %$answers)
  . ' rows were accepted twice (delivered, not yet acked when the primary stopped)';

$relay->signal('TERM');
eval { $relay->finish; 1 } or $relay->kill_kill;
$receiver->signal('TERM');
eval { $receiver->finish; 1 } or $receiver->kill_kill;
$standby->stop;
done_testing();
