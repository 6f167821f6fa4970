# The accept saga with an external booking service, end to end:
# waitlist-relay (--channels=booking) POSTs each booking_requested row to
# an example booking service (test/relay/receiver.pl, /booking/SCRIPT) and
# reports its answer to the saga as it acks the row.  A service that fails
# twice and then books confirms the offer after three attempts, with one
# booking (a 2xx without a reservation_ref is a failure like a 503); one
# that says the seat is gone (409) fails the offer and puts
# the fan back in line at their place; one that never answers runs out the
# saga, the unit goes to the next fan and a late confirmation is refused
# and recorded; and without any relay the worker ends the saga at its
# deadline.

use strict;
use warnings;

use JSON::PP;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest qw(worker_node sql wait_until entry_state slurp wait_for);
use RelayTest;

$ENV{WAITLIST_RELAY_SECRET} = 'booking-saga-secret';

my $node = worker_node(
	'booking_saga', qq{
waitlist.naptime = '200ms'
waitlist.notify_channel = 'waitlist_outbox'
});
start_receiver($node);

# A resource booked by the external service, with two fans in line and one
# unit released: returns the entries and the first fan's offer.
sub make_saga
{
	my ($resource, $timeout, $attempts) = @_;
	sql("SELECT waitlist_create_resource('$resource', offer_ttl => '1 hour',"
		  . " booking => 'external', booking_timeout => '$timeout',"
		  . " booking_max_attempts => $attempts)");
	my $first = sql("SELECT waitlist_join('$resource', '$resource-u1')");
	my $second = sql("SELECT waitlist_join('$resource', '$resource-u2')");
	sql("SELECT waitlist_release('$resource', 1, '$resource-ev')");
	wait_until(entry_state($first), 'OFFERED', "$resource: the first fan has an offer");
	my $offer = sql("SELECT offer_id FROM waitlist_status($first)");
	return ($first, $second, $offer);
}

sub offer_state
{
	my ($offer) = @_;
	return sql("SELECT state FROM waitlist.offer WHERE offer_id = $offer");
}

# The offer's booking_requested rows: "attempt/outbox state/delivery
# attempts", in order.
sub booking_rows
{
	my ($offer) = @_;
	return sql(
		"SELECT string_agg((payload->>'attempt') || '/' || state || '/' || attempts, ','"
		  . " ORDER BY outbox_id) FROM waitlist.outbox"
		  . " WHERE offer_id = $offer AND event_type = 'booking_requested'");
}

# What the booking service was asked about the offer, in arrival order.
sub booking_requests
{
	my ($offer) = @_;
	return grep {
		my $row = eval { decode_json($_->{body}) } // {};
		($row->{event_type} // '') eq 'booking_requested'
		  && ($row->{payload}{offer_id} // '') eq $offer
	} requests();
}

sub outbox_count
{
	my ($where) = @_;
	return sql("SELECT count(*) FROM waitlist.outbox WHERE $where");
}

sub check_resource
{
	my ($resource) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	is(sql("SELECT count(*) FROM waitlist_check('$resource')"),
		'0', "$resource: waitlist_check() is clean")
	  or diag(sql("SELECT * FROM waitlist_check('$resource')"));
}

# Make a saga, start a booking relay at /booking/$script, accept the offer
# and wait (up to $secs seconds) for the offer to be in $state; returns the
# two entries, the offer and the relay.
sub run_saga
{
	my ($resource, $script, $timeout, $attempts, $state, $secs) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($first, $second, $offer) = make_saga($resource, $timeout, $attempts);
	my $relay = start_relay("/booking/$script", '--channels', 'booking');
	is(sql("SELECT state FROM waitlist_accept($offer, '$resource-key')"),
		'ACCEPTING', "$resource: the accept starts the saga");
	ok(wait_for(sub { offer_state($offer) eq $state }, $secs),
		"$resource: the offer ends $state")
	  or diag(offer_state($offer), ' ', booking_rows($offer), "\n", slurp($relay->{log}));
	return ($first, $second, $offer, $relay);
}

# --- 503, 503, 201: confirmed at the third attempt, booked once -------------

{
	my ($first, $second, $offer, $relay) =
	  run_saga('flaky', '503,503,201', '2 minutes', 5, 'ACCEPTED', 150);
	is(sql("SELECT reservation_ref FROM waitlist.offer WHERE offer_id = $offer"),
		"R-$offer", "flaky: with the booking service's reservation_ref");
	is(booking_rows($offer), '1/DELIVERED/0,2/DELIVERED/0,3/DELIVERED/0',
		'flaky: three booking requests, attempts 1 to 3, each acked at its first delivery');
	is( sql("SELECT count(DISTINCT payload->>'idempotency_key') FROM waitlist.outbox"
			  . " WHERE offer_id = $offer AND event_type = 'booking_requested'"),
		'1', 'flaky: every attempt carries the same idempotency_key');
	my @asked = booking_requests($offer);
	is(join(',', map { $_->{answer} } @asked), '503,503,201',
		'flaky: the service answered 503, 503, then booked');
	is(scalar(grep { $_->{answer} eq '201' } @asked), 1, 'flaky: one booking');
	is(sql(entry_state($first)), 'ACCEPTED', 'flaky: the fan has the unit');
	is(sql("SELECT state, offer_id IS NULL FROM waitlist_status($second)"),
		'WAITING|t', 'flaky: the unit is consumed, the next fan still waits');
	is(outbox_count("offer_id = $offer AND event_type = 'offer_accepted'"),
		'1', 'flaky: the fan is told the offer is accepted');
	check_resource('flaky');
	my ($status) = stop_relay($relay, 'TERM');
	is($status, 0, 'flaky: the relay exits 0');
}

# --- a 2xx without a reservation_ref is no confirmation ---------------------

{
	my ($first, $second, $offer, $relay) =
	  run_saga('noref', '200,201', '2 minutes', 5, 'ACCEPTED', 150);
	is(join(',', map { $_->{answer} } booking_requests($offer)), '200,201',
		'noref: the plain 200 was taken as a retryable failure, the next attempt booked');
	like(slurp($relay->{log}),
		qr/booking for offer $offer failed \(retryable\).*HTTP 200 without a usable reservation_ref/,
		'noref: the relay said why');
	is(sql("SELECT reservation_ref FROM waitlist.offer WHERE offer_id = $offer"),
		"R-$offer", 'noref: with the ref of the attempt that booked');
	my ($status) = stop_relay($relay, 'TERM');
	is($status, 0, 'noref: the relay exits 0');
}

# --- 409: the seat is gone, the fan goes back to their place ----------------

{
	my ($first, $second, $offer, $relay) =
	  run_saga('gone', '409', '2 minutes', 5, 'FAILED', 60);
	is(booking_rows($offer), '1/DELIVERED/0', 'gone: one booking request, not retried');
	is(join(',', map { $_->{answer} } booking_requests($offer)),
		'409', 'gone: the service said the seat is gone');
	is( sql("SELECT string_agg(s.state || '/' || s.position, ',' ORDER BY e.id)"
			  . " FROM unnest(ARRAY[$first, $second]) WITH ORDINALITY e(entry_id, id),"
			  . " LATERAL waitlist_status(e.entry_id) s"),
		'WAITING/1,WAITING/2',
		'gone: the fan waits again, ahead of those who joined after them');
	is( outbox_count("resource_id = 'gone' AND event_type = 'offer_created'"),
		'1', 'gone: the unit is retired, nobody else gets an offer');
	check_resource('gone');
	my ($status) = stop_relay($relay, 'TERM');
	is($status, 0, 'gone: the relay exits 0');
}

# --- a service that never answers: the saga runs out --------------------------

{
	my ($first, $second, $offer, $relay) =
	  run_saga('silent', 'hang', '1 minute', 2, 'EXPIRED', 120);
	is(booking_rows($offer), '1/DELIVERED/0,2/DELIVERED/0',
		'silent: booking_max_attempts requests, each timed out and acked once');
	is(join(',', map { $_->{answer} } booking_requests($offer)),
		'hang,hang', 'silent: the service never answered');
	like(slurp($relay->{log}), qr/booking for offer $offer failed \(retryable\).*timed out/,
		'silent: the relay reported the timeouts as retryable failures');
	wait_until(entry_state($second), 'OFFERED', 'silent: the next fan gets the unit');
	is( outbox_count("resource_id = 'silent' AND user_id = 'silent-u2' AND event_type = 'offer_created'"),
		'1', 'silent: the next fan is told');

	# the booking service books after all, too late
	my ($ret, $out, $err) =
	  $node->psql('postgres',
		"\\set VERBOSITY verbose\nSELECT waitlist_booking_confirmed($offer, 'R-late')");
	like($err, qr/WL015/, 'silent: a late confirmation is refused with WL015');
	is( outbox_count("offer_id = $offer AND event_type = 'booking_late_confirmation'"
			  . " AND channel = 'booking'"),
		'1', 'silent: and recorded for the booking service to undo');
	ok( wait_for(
			sub {
				outbox_count("offer_id = $offer AND event_type = 'booking_late_confirmation'"
					  . " AND state = 'DELIVERED'") eq '1';
			},
			30),
		'silent: the booking relay delivers it as a plain row');
	is( scalar(
			grep { decode_json($_->{body})->{event_type} eq 'booking_late_confirmation' }
			  requests()),
		1, 'silent: the booking service got it once');
	is(offer_state($offer), 'EXPIRED', 'silent: the offer stays expired');
	is(sql("SELECT state FROM waitlist_status($second)"),
		'OFFERED', "silent: the next fan's offer stands");
	check_resource('silent');
	my ($status) = stop_relay($relay, 'TERM');
	is($status, 0, 'silent: the relay exits 0');
}

# --- no relay at all: the worker ends the saga at its deadline ----------------

{
	my ($first, $second, $offer) = make_saga('norelay', '3 seconds', 5);
	is(sql("SELECT state FROM waitlist_accept($offer, 'norelay-key')"),
		'ACCEPTING', 'no relay: the accept starts the saga');
	wait_until("SELECT state FROM waitlist.offer WHERE offer_id = $offer",
		'EXPIRED', 'no relay: the saga ends at booking_timeout');
	wait_until(entry_state($second), 'OFFERED', 'no relay: the next fan gets the unit');
	is(booking_rows($offer), '1/PENDING/0', 'no relay: the one booking request is still pending');
	is(sql("SELECT waitlist_booking_failed($offer, 'HTTP 503: late', true)"),
		'EXPIRED', 'no relay: a failure reported afterwards returns the state');
	is(booking_rows($offer), '1/PENDING/0', 'no relay: and asks for nothing more');
	check_resource('norelay');
}

is(sql('SELECT count(*) FROM waitlist_check()'), '0', 'waitlist_check() finds nothing');

stop_receiver();
$node->stop;
done_testing();
