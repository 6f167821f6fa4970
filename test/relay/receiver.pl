#!/usr/bin/perl
#
# test/relay/receiver.pl: a tiny webhook receiver for the relay's TAP test
# (test/t/020_relay.pl), core Perl modules only.
#
#   perl receiver.pl PORTFILE LOGFILE [CONTROLFILE]
#
# Listens on 127.0.0.1 on a free port, writes the port to PORTFILE once it
# accepts connections, and answers each POST according to its path:
#
#   /ok          200
#   /fail        500, always
#   /fail/N      500 to the first N requests of each Idempotency-Key, then 200
#   /hang        never answers (keeps the connection until the client gives up)
#   /hang/N      hangs on the first N requests of each Idempotency-Key, then 200
#   /delay/MS    200 after MS milliseconds (without blocking other requests)
#
# If CONTROLFILE exists and is not empty, its first line (e.g. "/hang")
# replaces the path, so that a test can switch the mode of a running relay.
#
# Every request appends one line to LOGFILE, tab-separated:
#   arrival time (epoch seconds), requests open at arrival, mode,
#   Idempotency-Key, X-Waitlist-Signature, Content-Type,
#   answer ("200", "500" or "hang"), body
# The relay's bodies are single-line JSON.
#
# One process, no threads: an IO::Select loop, so a hanging or delayed
# request never holds up the others.  It exits on SIGTERM, and by itself
# when the process that started it is gone.

use strict;
use warnings;

use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time);

my ($portfile, $logfile, $controlfile) = @ARGV;
die "usage: $0 PORTFILE LOGFILE [CONTROLFILE]\n" unless defined $logfile;

my $listener = IO::Socket::INET->new(
	LocalAddr => '127.0.0.1',
	LocalPort => 0,
	Proto => 'tcp',
	Listen => 128,
	ReuseAddr => 1) or die "listen: $!\n";
$listener->blocking(0);

open(my $log, '>>', $logfile) or die "$logfile: $!\n";
$log->autoflush(1);

# the port file appears whole: write elsewhere, then rename
open(my $pf, '>', "$portfile.tmp") or die "$portfile.tmp: $!\n";
print $pf $listener->sockport, "\n";
close $pf;
rename("$portfile.tmp", $portfile) or die "rename: $!\n";

$SIG{TERM} = $SIG{INT} = sub { exit 0 };
$SIG{PIPE} = 'IGNORE';

my $parent = getppid();
my $select = IO::Select->new($listener);
my %conn;       # fileno => { sock, buf, state, due, status }
my %attempts;   # "mode path|key" => requests seen

# The mode in force: the control file if set, else the request path.
sub mode_for
{
	my ($path) = @_;
	if (defined $controlfile && -s $controlfile && open(my $cf, '<', $controlfile))
	{
		my $line = <$cf>;
		close $cf;
		if (defined $line)
		{
			chomp $line;
			return $line if $line ne '';
		}
	}
	return $path;
}

sub close_conn
{
	my ($c) = @_;
	$select->remove($c->{sock});
	delete $conn{ fileno($c->{sock}) };
	close $c->{sock};
}

sub respond
{
	my ($c, $status) = @_;
	my $text = $status == 200 ? 'OK' : 'Internal Server Error';
	my $body = $status == 200 ? "ok\n" : "simulated failure\n";
	my $sock = $c->{sock};
	$sock->blocking(1);
	print $sock "HTTP/1.1 $status $text\r\n"
	  . "Content-Type: text/plain\r\n"
	  . "Content-Length: "
	  . length($body) . "\r\n"
	  . "Connection: close\r\n\r\n"
	  . $body;
	close_conn($c);
}

# A complete request arrived: log it and answer, hang or schedule the answer.
sub handle_request
{
	my ($c, $path, $headers, $body) = @_;
	my $key = $headers->{'idempotency-key'} // '';
	my $sig = $headers->{'x-waitlist-signature'} // '';
	my $type = $headers->{'content-type'} // '';
	my $mode = mode_for($path);
	my $n = ++$attempts{"$mode|$key"};
	my ($answer, $delay) = ('200', 0);

	if ($mode eq '/fail') { $answer = '500'; }
	elsif ($mode =~ m{^/fail/(\d+)$}) { $answer = $n <= $1 ? '500' : '200'; }
	elsif ($mode eq '/hang') { $answer = 'hang'; }
	elsif ($mode =~ m{^/hang/(\d+)$}) { $answer = $n <= $1 ? 'hang' : '200'; }
	elsif ($mode =~ m{^/delay/(\d+)$}) { $delay = $1 / 1000; }

	my $open = scalar(grep { $_->{state} ne 'reading' } values %conn);
	$body =~ s/[\r\n\t]/ /g;
	printf $log "%.3f\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n",
	  time, $open, $mode, $key, $sig, $type, $answer, $body;

	if ($answer eq 'hang')
	{
		$c->{state} = 'hanging';
	}
	elsif ($delay > 0)
	{
		$c->{state} = 'delayed';
		$c->{due} = time + $delay;
		$c->{status} = $answer;
	}
	else
	{
		respond($c, $answer);
	}
}

# Parse what a connection sent so far; handle the request once complete.
sub try_parse
{
	my ($c) = @_;
	my $end = index($c->{buf}, "\r\n\r\n");
	return if $end < 0;
	my ($request_line, @lines) = split /\r\n/, substr($c->{buf}, 0, $end);
	my %headers;
	foreach my $line (@lines)
	{
		$headers{ lc $1 } = $2 if $line =~ /^([^:]+):\s*(.*)$/;
	}
	my $length = $headers{'content-length'} // 0;
	return if length($c->{buf}) < $end + 4 + $length;
	my (undef, $target) = split / /, $request_line;
	$target //= '/';
	$target =~ s/\?.*//;
	$c->{state} = 'answered';
	handle_request($c, $target, \%headers, substr($c->{buf}, $end + 4, $length));
}

for (;;)
{
	exit 0 if getppid() != $parent;

	# the nearest delayed answer bounds the wait
	my $timeout = 0.5;
	foreach my $c (values %conn)
	{
		next unless $c->{state} eq 'delayed';
		my $left = $c->{due} - time;
		$timeout = $left if $left < $timeout;
	}
	$timeout = 0 if $timeout < 0;

	foreach my $sock ($select->can_read($timeout))
	{
		if ($sock == $listener)
		{
			while (my $client = $listener->accept)
			{
				$client->blocking(0);
				$select->add($client);
				$conn{ fileno($client) } =
				  { sock => $client, buf => '', state => 'reading' };
			}
			next;
		}
		my $c = $conn{ fileno($sock) } or next;
		my $got = sysread($sock, my $chunk, 65536);
		if (!defined $got)
		{
			next if $!{EAGAIN} || $!{EWOULDBLOCK};
			close_conn($c);
			next;
		}
		if ($got == 0)
		{
			# the client gave up (a hanging request timed out) or is done
			close_conn($c);
			next;
		}
		next unless $c->{state} eq 'reading';
		$c->{buf} .= $chunk;
		try_parse($c);
	}

	foreach my $c (values %conn)
	{
		respond($c, $c->{status})
		  if $c->{state} eq 'delayed' && $c->{due} <= time;
	}
}
