#!/usr/bin/perl
#
# test/relay/receiver.pl: a tiny webhook receiver for the relay's TAP tests
# (test/t/020_relay.pl), and an example booking service for the accept
# saga's (test/t/021_booking_saga.pl); core Perl modules only.
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
#   /booking/SCRIPT   a booking service, for booking_requested rows (below)
#
# /booking/SCRIPT books once per idempotency_key (the payload's, the same
# for every attempt of one saga): the request that books answers 201 with
# {"reservation_ref":"R-<offer_id>"}, and every later one with that key
# 200 with the same ref, whatever the script says.  Until then an offer's
# requests are answered in turn by the elements of SCRIPT, a comma-separated
# list whose last element repeats ("503,503,201", "409", "hang"): a status
# (201 books, 409 says the seat is gone, any other is a failure) or "hang".
# Rows of other event types (booking_late_confirmation: the saga ended
# before the confirmation, a real service would cancel the booking) get 200.
#
# If CONTROLFILE exists and is not empty, its first line (e.g. "/hang")
# replaces the path, so that a test can switch the mode of a running relay.
#
# Every request appends one line to LOGFILE, tab-separated:
#   arrival time (epoch seconds), requests open at arrival, mode,
#   Idempotency-Key, X-Waitlist-Signature, Content-Type,
#   answer ("200", "500", "hang", or a booking answer: "201", "409", ...),
#   body
# The relay's bodies are single-line JSON.
#
# One process, no threads: an IO::Select loop, so a hanging or delayed
# request never holds up the others.  It exits on SIGTERM, and by itself
# when the process that started it is gone.

use strict;
use warnings;

use IO::Select;
use IO::Socket::INET;
use JSON::PP;
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
my %booked;     # booking: payload idempotency_key => reservation_ref

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

# Answer and close; a body of its own (a booking's JSON) or the status's.
sub respond
{
	my ($c, $status, $json) = @_;
	my %text = (
		200 => [ 'OK', "ok\n" ],
		201 => [ 'Created', "created\n" ],
		409 => [ 'Conflict', "seat is gone\n" ],
		500 => [ 'Internal Server Error', "simulated failure\n" ],
		503 => [ 'Service Unavailable', "try again later\n" ]);
	my ($text, $body) = @{ $text{$status} // [ 'Error', "simulated failure\n" ] };
	$body = $json if defined $json;
	my $sock = $c->{sock};
	$sock->blocking(1);
	print $sock "HTTP/1.1 $status $text\r\n"
	  . 'Content-Type: '
	  . (defined $json ? 'application/json' : 'text/plain') . "\r\n"
	  . "Content-Length: "
	  . length($body) . "\r\n"
	  . "Connection: close\r\n\r\n"
	  . $body;
	close_conn($c);
}

# A booking service's answer to one request: (answer, reservation_ref).
sub booking_answer
{
	my ($script, $body) = @_;
	my $row = eval { decode_json($body) } // {};
	my $payload = ref($row->{payload}) eq 'HASH' ? $row->{payload} : {};
	my $offer_id = $payload->{offer_id} // '';
	my $key = $payload->{idempotency_key} // '';

	return ('200', undef) if ($row->{event_type} // '') ne 'booking_requested';
	# the booking exists: the same answer, never a second booking
	return ('200', $booked{$key}) if defined $booked{$key};
	my @script = split /,/, $script;
	my $n = $attempts{"booking|$offer_id"}++;
	my $answer = $script[ $n < @script ? $n : $#script ] // '201';
	return ($answer, undef) unless $answer eq '201';
	$booked{$key} = "R-$offer_id";
	return ($answer, $booked{$key});
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
	my ($answer, $delay, $ref) = ('200', 0, undef);

	if ($mode =~ m{^/booking(?:/(.*))?$}) { ($answer, $ref) = booking_answer($1 // '201', $body); }
	elsif ($mode eq '/fail') { $answer = '500'; }
	elsif ($mode =~ m{^/fail/(\d+)$}) { $answer = $n <= $1 ? '500' : '200'; }
	elsif ($mode eq '/hang') { $answer = 'hang'; }
	elsif ($mode =~ m{^/hang/(\d+)$}) { $answer = $n <= $1 ? 'hang' : '200'; }
	elsif ($mode =~ m{^/delay/(\d+)$}) { $delay = $1 / 1000; }

	my $open = scalar(grep { $_->{state} ne 'reading' } values %conn);
	(my $logged = $body) =~ s/[\r\n\t]/ /g;
	printf $log "%.3f\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n",
	  time, $open, $mode, $key, $sig, $type, $answer, $logged;

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
		respond($c, $answer, defined $ref ? encode_json({ reservation_ref => $ref }) : undef);
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
