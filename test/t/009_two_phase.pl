# Two-phase commit: with waitlist.notify_channel set, a transaction that
# writes outbox rows can still be prepared (the NOTIFY is queued only at
# commit, and a prepared transaction sends none); what it gave back is
# promoted once COMMIT PREPARED, from another session, made it visible and
# the worker's scan came by; and nothing the prepared transaction noted (its
# NOTIFY, its wake-ups) leaks into the session's next transaction.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest;

my $node = worker_node(
	'two_phase', qq{
waitlist.naptime = '60s'
waitlist.notify_channel = 'waitlist_outbox'
max_prepared_transactions = 5
});

sql("SELECT waitlist_create_resource('r', '1 hour')");
my $w1 = sql("SELECT waitlist_join('r', 'w1')");
my $w2 = sql("SELECT waitlist_join('r', 'w2')");
my $w3 = sql("SELECT waitlist_join('r', 'w3')");
sql("SELECT waitlist_release('r', 1, 'ev-1')");
wait_until(entry_state($w1), 'OFFERED', 'the first fan is offered the unit');
my $offer = sql("SELECT offer_id FROM waitlist_status($w1)");

sql("SELECT waitlist_create_resource('inline', '1 hour')");
my $i1 = sql("SELECT waitlist_join('inline', 'i1')");

my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN waitlist_outbox');
my $session = $node->background_psql('postgres', on_error_stop => 0);

# the worker is idle from here on: nothing below may wake it before COMMIT
# PREPARED, not even the preparing session's next transactions (a psql
# script's empty statement after PREPARE is one)
my $last_wake =
  "SELECT last_wake FROM waitlist_worker_status() WHERE worker = 0";
sleep(1);
my $before = sql($last_wake);

# --- a decline and a release, prepared ----------------------------------------

$session->query(
	qq{BEGIN;
SELECT waitlist_decline($offer);
SELECT waitlist_release('r', 1, 'ev-2');
PREPARE TRANSACTION 'wl-2pc';});
is($session->{stderr}, '', 'PREPARE TRANSACTION succeeds with notify_channel set');
is(sql("SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'wl-2pc'"),
	'1', 'the transaction is prepared');
like($listener->query_safe('SELECT 1'), qr/^1$/,
	'no NOTIFY for the prepared transaction');

# The session's next transaction: one that writes outbox rows itself
# (inline) must send its own NOTIFY; one that wakes nobody must not wake the
# worker with the prepared transaction's resource.
$session->query_safe('SELECT 1');
$session->query_safe(
	qq{SET waitlist.promotion_mode = 'inline';
SELECT waitlist_release('inline', 1, 'ev-inline');});
is(sql(entry_state($i1)), 'OFFERED', 'the next transaction promoted inline');
like(
	$listener->query_safe('SELECT 2'),
	qr/Asynchronous notification "waitlist_outbox" received/,
	'and sent its own NOTIFY');
sleep(1);
is(sql($last_wake), $before,
	"the session's next transactions did not wake the worker with the prepared work");
is(sql(entry_state($w2)), 'WAITING', 'the prepared work is invisible meanwhile');

# --- COMMIT PREPARED from another session -------------------------------------

sql("COMMIT PREPARED 'wl-2pc'");
is( sql(
		"SELECT state FROM waitlist.capacity_event WHERE resource_id = 'r' AND event_id = 'ev-2'"
	),
	'PENDING',
	'after COMMIT PREPARED the release is pending for the worker');

# the worker's scan finds the work (a reload wakes it, as a nap would)
sql("ALTER SYSTEM SET waitlist.naptime = '1s'");
sql("SELECT pg_reload_conf()");
wait_until(
	"SELECT count(*) FROM waitlist.offer WHERE resource_id = 'r' AND state = 'OPEN'",
	'2', 'the declined unit and the released one are offered');
is(sql(entry_state($w2)) . ' ' . sql(entry_state($w3)),
	'OFFERED OFFERED', 'to the next two fans');
is(sql("SELECT count(*) FROM waitlist_check()"), '0', 'waitlist_check() is clean');

$listener->quit;
$session->quit;
$node->stop;
done_testing();
