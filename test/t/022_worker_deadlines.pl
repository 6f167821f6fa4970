# The deadlines of 1.1 that the promotion worker keeps on its own, with no
# sweep and no relay: an accept saga past its booking_timeout ends EXPIRED
# and its unit goes to the next fan; an unconfirmed place past confirm_within
# is let go (EXPIRED, not_confirmed); and an extended offer is expired at its
# new deadline, not the old one.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest;

my $node = worker_node('deadlines', "waitlist.naptime = '200ms'");

# --- a saga that nobody answers ---------------------------------------------

sql("SELECT waitlist_create_resource('ext', '1 hour', booking => 'external', booking_timeout => '2 seconds')");
my $ann = sql("SELECT waitlist_join('ext', 'ann')");
my $bob = sql("SELECT waitlist_join('ext', 'bob')");
sql("SELECT waitlist_release('ext', 1, 'ext-1')");
wait_until(entry_state($ann), 'OFFERED', 'the worker offers the unit to ann');
my $offer = sql("SELECT offer_id FROM waitlist.offer WHERE entry_id = $ann");
is(sql("SELECT state FROM waitlist_accept($offer, 'k1')"), 'ACCEPTING', 'ann accepts: ACCEPTING');
is(sql("SELECT count(*) FROM waitlist.outbox WHERE event_type = 'booking_requested'"),
	'1', 'one booking request waits for a relay that never comes');
wait_until("SELECT state FROM waitlist.offer WHERE offer_id = $offer", 'EXPIRED',
	'the worker ends the saga at its booking deadline');
is(sql(entry_state($ann)), 'EXPIRED', "ann's entry ends EXPIRED");
wait_until(entry_state($bob), 'OFFERED', 'and the unit goes to bob');
is(sql("SELECT reason FROM waitlist.transition WHERE entity = 'offer' AND entity_id = $offer"
		  . " ORDER BY transition_id DESC LIMIT 1"),
	'booking exhausted', 'audited as booking exhausted');

# --- a place nobody confirms ------------------------------------------------

sql("SELECT waitlist_create_resource('conf', '1 hour', confirm_within => '1 second')");
my $cat = sql("SELECT waitlist_join('conf', 'cat')");
is(sql(entry_state($cat)), 'PENDING', 'cat holds a PENDING place');
wait_until(entry_state($cat), 'EXPIRED', 'the worker lets the unconfirmed place go');
is(sql("SELECT reason FROM waitlist.transition WHERE entity = 'entry' AND entity_id = $cat"
		  . " ORDER BY transition_id DESC LIMIT 1"),
	'not_confirmed', 'audited as not_confirmed');

# --- an extended offer ------------------------------------------------------

sql("SELECT waitlist_create_resource('ttl', '3 seconds', max_offer_extension => '10 seconds')");
my $dan = sql("SELECT waitlist_join('ttl', 'dan')");
sql("SELECT waitlist_release('ttl', 1, 'ttl-1')");
wait_until(entry_state($dan), 'OFFERED', 'dan is offered a unit for 3 seconds');
my $dan_offer = sql("SELECT offer_id FROM waitlist.offer WHERE entry_id = $dan");
sql("SELECT waitlist_extend_offer($dan_offer, '6 seconds', 'payment', 'e1')");
# past the first deadline, before the second
$node->poll_query_until('postgres',
	"SELECT now() > (SELECT created_at + interval '3.5 seconds' FROM waitlist.offer WHERE offer_id = $dan_offer)")
  or die 'the clock stood still';
is(sql("SELECT state FROM waitlist.offer WHERE offer_id = $dan_offer"), 'OPEN',
	'past its first deadline the extended offer is still open');
wait_until("SELECT state FROM waitlist.offer WHERE offer_id = $dan_offer", 'EXPIRED',
	'the worker expires it at the new deadline');

is(sql('SELECT count(*) FROM waitlist_check()'), '0', 'waitlist_check() finds nothing');

$node->stop;
done_testing();
