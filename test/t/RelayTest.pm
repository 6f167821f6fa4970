# RelayTest: what the TAP tests of waitlist-relay share: the test receiver
# (test/relay/receiver.pl) on 127.0.0.1, its log, and relays run in the
# background or with --once against it, for the database postgres of a node.
# No relay or receiver outlives the test, however it ends.

package RelayTest;

use strict;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use WaitlistTest qw(slurp wait_for);

our @EXPORT = qw(start_receiver stop_receiver requests requests_for
  start_relay stop_relay relay_once relay_log);

my ($relay_bin, $connstr, $dir, $base, $received);
my ($receiver, $receiver_timeout);
my $runs = 0;
my @relays;

END
{
	foreach my $h (map { $_->{h} } @relays)
	{
		eval { $h->kill_kill; };
	}
	eval { $receiver->kill_kill if $receiver; };
}

# Start the receiver that the relays of $node's database postgres deliver
# to; returns the path of its control file (see receiver.pl).
sub start_receiver
{
	my ($node) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;

	# the relay is installed with the extension, beside the server's programs
	my ($bindir) = grep { -x "$_/waitlist-relay" } split /:/, $ENV{PATH};
	BAIL_OUT('waitlist-relay is not installed (make install)') unless $bindir;
	$relay_bin = "$bindir/waitlist-relay";
	$connstr = $node->connstr('postgres');
	$dir = PostgreSQL::Test::Utils::tempdir;
	$received = "$dir/received.log";

	$receiver_timeout = IPC::Run::timeout(600);
	$receiver = IPC::Run::start(
		[
			$^X, dirname(__FILE__) . '/../relay/receiver.pl',
			"$dir/port", $received, "$dir/control"
		],
		'<', '/dev/null', '>', "$dir/receiver.out", '2>', "$dir/receiver.err",
		$receiver_timeout);
	ok(wait_for(sub { -s "$dir/port" }, 20), 'the receiver listens')
	  or diag(slurp("$dir/receiver.err"));
	chomp(my $port = slurp("$dir/port"));
	$base = "http://127.0.0.1:$port";
	return "$dir/control";
}

sub stop_receiver
{
	$receiver->signal('TERM');
	$receiver_timeout->start(10);
	eval { $receiver->finish; 1 } or $receiver->kill_kill;
	return;
}

# The receiver's log: one hash per request, in arrival order.
sub requests
{
	my @requests;
	foreach my $line (split /\n/, slurp($received))
	{
		my %r;
		@r{qw(t open mode key sig type answer body)} = split /\t/, $line, 8;
		push @requests, \%r;
	}
	return @requests;
}

# The requests for one outbox id, in arrival order.
sub requests_for
{
	my ($id) = @_;
	return grep { $_->{key} eq $id } requests();
}

# Start the relay in the background against receiver path $path.
sub start_relay
{
	my ($path, @args) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my %relay = (log => "$dir/relay-" . ++$runs . '.log', timer => IPC::Run::timeout(600));
	# (so that its session shows as application_name waitlist-relay)
	delete local $ENV{PGAPPNAME};
	$relay{h} = IPC::Run::start(
		[
			$relay_bin, '--dbname', $connstr, '--url', "$base$path",
			'--timeout', '500', '--lease', '2', '--poll-interval', '200', @args
		],
		'<', '/dev/null', '>', "$dir/relay-$runs.out", '2>', $relay{log},
		$relay{timer});
	push @relays, \%relay;
	ok( wait_for(sub { slurp($relay{log}) =~ /connected as consumer/ }, 20),
		"relay $runs connected")
	  or diag(slurp($relay{log}));
	return \%relay;
}

# Send signals, wait for the relay to exit; returns (exit status, seconds).
sub stop_relay
{
	my ($relay, @signals) = @_;
	my $start = time;
	# (apart: two pending signals of one kind would merge into one)
	foreach my $i (0 .. $#signals)
	{
		usleep(100_000) if $i > 0;
		$relay->{h}->signal($signals[$i]);
	}
	$relay->{timer}->start(15);
	if (!eval { $relay->{h}->finish; 1 })
	{
		$relay->{h}->kill_kill;
		diag(slurp($relay->{log}));
		return (-1, time - $start);
	}
	my $status = $relay->{h}->full_result(0);
	diag(slurp($relay->{log})) if $status != 0;
	return ($status, time - $start);
}

# Run the relay with --once to completion; returns its exit status.  Later
# options win (another --dbname, say).
sub relay_once
{
	my ($path, @args) = @_;
	my $log = "$dir/relay-" . ++$runs . '.log';
	my $ok = IPC::Run::run(
		[
			$relay_bin, '--dbname', $connstr, '--url', "$base$path",
			'--timeout', '500', '--lease', '2', '--once', @args
		],
		'<', '/dev/null', '>', "$dir/relay-$runs.out", '2>', $log,
		IPC::Run::timeout(60));
	diag(slurp($log)) unless $ok;
	return $?;
}

# The log of the last relay started.
sub relay_log
{
	return "$dir/relay-$runs.log";
}

1;
