# The fan's offer page, GET /o/TOKEN of waitlist-gateway, in a real headless
# Chromium (a phone's screen) driven over the W3C WebDriver protocol of
# chromedriver, with core Perl only (HTTP::Tiny and JSON::PP).  An open
# offer's page (its headers, the event, a countdown on the server's clock,
# Accept and Decline, readable colours in light and dark), an accept that
# shows the reservation, the accepted link opened again, a double tap that
# books once, a decline that asks first, a booking that finds the seat gone,
# an answer on a page whose offer was settled meanwhile and the revoked link,
# an external booking service's saga (the page asks again; the accepting page
# reloads itself), a countdown that runs out on the open page and a link
# opened after the deadline, a tampered link, and a database that goes away
# (try again, then the same page books once under its one key).  Each state
# is checked on the page and in the database, with a screenshot of each under
# the test's log directory (offer_page/*.png).

use strict;
use warnings;

use File::Path qw(make_path);
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use MIME::Base64 qw(decode_base64);
use POSIX ();
use Time::HiRes qw(time);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest qw(use_node sql slurp wait_for);
use GatewayTest;

my $chromium = '/usr/bin/chromium';
my $chromedriver = '/usr/bin/chromedriver';
BAIL_OUT('chromium and chromedriver are not installed (apt-get install chromium chromium-driver)')
  unless -x $chromium && -x $chromedriver;

my $shots = $PostgreSQL::Test::Utils::log_path . '/offer_page';
make_path($shots);

# --- the database and the gateway ---------------------------------------------

my $node = gateway_node('offer_page');

# The event's name has characters HTML must escape: the page shows it as it is.
my $event = 'Riverside Hall: Nils & the <Frets>';
sql(qq{
CREATE SCHEMA box;
CREATE TABLE box.runs (offer_id bigint NOT NULL, user_id text NOT NULL, idempotency_key text,
    at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION box.book(resource_id text, user_id text, offer_id bigint, idempotency_key text)
RETURNS text LANGUAGE plpgsql AS \$\$
BEGIN
    INSERT INTO box.runs (offer_id, user_id, idempotency_key) VALUES (offer_id, user_id, idempotency_key);
    RETURN 'RES-' || offer_id;
END
\$\$;
GRANT USAGE ON SCHEMA box TO gw_links;
GRANT INSERT ON box.runs TO gw_links;
SELECT waitlist_create_resource('$event', '10 minutes',
    booking_function => 'box.book(text, text, bigint, text)');
-- a booking function that finds the seat gone
CREATE FUNCTION box.sold_out(resource_id text, user_id text, offer_id bigint, idempotency_key text)
RETURNS text LANGUAGE plpgsql AS \$\$
BEGIN
    INSERT INTO box.runs (offer_id, user_id, idempotency_key) VALUES (offer_id, user_id, idempotency_key);
    RAISE unique_violation USING MESSAGE = 'the seat is gone';
END
\$\$;
SELECT waitlist_create_resource('brief', '4 seconds');
SELECT waitlist_create_resource('sold out', '10 minutes',
    booking_function => 'box.sold_out(text, text, bigint, text)');
SELECT waitlist_create_resource('saga', '10 minutes', booking => 'external');
});

my $g = start_gateway($node);

my $released = 0;

# A fan joins $resource and a unit is released: their offer's id and token.
sub make_offer
{
	my ($resource, $user) = @_;
	$released++;
	sql(qq{SELECT waitlist_join('$resource', '$user');
SELECT waitlist_release('$resource', 1, 'release-$released');});
	my ($id, $token) = split /\|/, sql(
		qq{SELECT offer_id, waitlist_offer_token(offer_id) FROM waitlist.offer
WHERE user_id = '$user' AND state = 'OPEN'});
	die "no open offer for $user" unless $id && $token;
	return ($id, $token);
}

sub offer_state
{
	my ($id) = @_;
	return sql("SELECT state FROM waitlist.offer WHERE offer_id = $id");
}

sub booking_runs
{
	my ($id) = @_;
	return sql("SELECT count(*) FROM box.runs WHERE offer_id = $id");
}

# the accept requests the gateway answered so far
sub accept_posts
{
	my @lines = grep { /"POST \/v1\/offers\/[^ ]*:accept"/ } split /\n/, gateway_log($g);
	return scalar @lines;
}

# --- chromedriver and a headless Chromium -------------------------------------

my $home = PostgreSQL::Test::Utils::tempdir;
my $profile = PostgreSQL::Test::Utils::tempdir;
my $wd_port = PostgreSQL::Test::Cluster::get_free_port();
my $wd_url = "http://127.0.0.1:$wd_port";
my ($driver, $driver_pid, $session);
my $http = HTTP::Tiny->new(timeout => 30, keep_alive => 1);

END
{
	my $rc = $?;
	if ($session)
	{
		eval { $http->request('DELETE', "$wd_url/session/$session"); };
	}
	if ($driver)
	{
		# chromedriver leads its own process group, with the browser in it
		kill 'TERM', -$driver_pid if $driver_pid;
		eval { $driver->kill_kill; };
		kill 'KILL', -$driver_pid if $driver_pid;
	}
	$? = $rc;
}

{
	# HOME may not be writable for the test's OS user: the browser's go here
	local $ENV{HOME} = $home;
	local $ENV{XDG_CONFIG_HOME} = "$home/config";
	local $ENV{XDG_CACHE_HOME} = "$home/cache";
	local $ENV{XDG_DATA_HOME} = "$home/data";
	local $ENV{XDG_RUNTIME_DIR} = $home;
	$driver = IPC::Run::start(
		[
			$chromedriver, "--port=$wd_port",
			'--log-path=' . $PostgreSQL::Test::Utils::log_path . '/chromedriver.log'
		],
		'<', '/dev/null', '>', "$home/chromedriver.out", '2>&1',
		init => sub { POSIX::setsid(); });
	$driver_pid = $driver->{KIDS}[0]{PID};
}
ok( wait_for(
		sub {
			my $r = $http->get("$wd_url/status");
			$r->{success} && eval { decode_json($r->{content})->{value}{ready} };
		},
		20),
	'chromedriver is ready')
  or BAIL_OUT('chromedriver did not start: ' . slurp("$home/chromedriver.out"));

my $ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';

# One WebDriver command; its value.  Dies on a WebDriver error.
sub wd
{
	my ($method, $path, $body) = @_;
	my %req = (headers => { 'Content-Type' => 'application/json; charset=utf-8' });
	$req{content} = encode_json($body // {}) if $method eq 'POST';
	my $url = $path =~ m{^/session$} ? "$wd_url$path" : "$wd_url/session/$session$path";
	my $res = $http->request($method, $url, \%req);
	my $out = eval { decode_json($res->{content}) };
	die "WebDriver $method $path: $res->{status} $res->{content}\n"
	  if !$out || !$res->{success} || (ref $out->{value} eq 'HASH' && $out->{value}{error});
	return $out->{value};
}

my $caps = wd(
	'POST', '/session',
	{
		capabilities => {
			alwaysMatch => {
				browserName => 'chrome',
				'goog:loggingPrefs' => { browser => 'ALL' },
				'goog:chromeOptions' => {
					binary => $chromium,
					args => [
						'--headless=new', '--no-sandbox',
						'--disable-gpu', '--disable-dev-shm-usage',
						'--disable-quic', '--no-first-run',
						'--disable-background-networking', '--disable-component-update',
						'--disable-sync', "--user-data-dir=$profile",
						'--window-size=390,844'
					],
					# a phone's screen, whatever the window's least size
					mobileEmulation => {
						deviceMetrics => { width => 390, height => 844, pixelRatio => 2, touch => JSON::PP::true }
					}
				}
			}
		}
	});
$session = $caps->{sessionId};
ok($session, 'a WebDriver session with headless Chromium ' . ($caps->{capabilities}{browserVersion} // '?'));
wd('POST', '/timeouts', { pageLoad => 20_000, script => 10_000, implicit => 0 });

sub open_url
{
	my ($path) = @_;
	wd('POST', '/url', { url => gateway_url($g, $path) });
}

sub run_js
{
	my ($script, @args) = @_;
	return wd('POST', '/execute/sync', { script => $script, args => \@args });
}

# the elements matching a CSS selector (ids for the other commands)
sub find_all
{
	my ($css) = @_;
	return map { $_->{$ELEMENT} } @{ wd('POST', '/elements', { using => 'css selector', value => $css }) };
}

sub find_one
{
	my ($css) = @_;
	my @found = find_all($css);
	return $found[0];
}

# the visible text of the first element matching $css ('' if there is none)
sub text_of
{
	my ($css) = @_;
	my $el = find_one($css);
	return defined $el ? wd('GET', "/element/$el/text") : '';
}

sub page_state
{
	my $el = find_one('main#offer');
	return defined $el ? (wd('GET', "/element/$el/attribute/data-state") // '') : '';
}

sub wait_state
{
	my ($want, $secs) = @_;
	# a page that reloads itself has no elements for a moment: try again
	return wait_for(sub { (eval { page_state() } // '') eq $want }, $secs // 10);
}

# the texts of the buttons a fan can see
sub visible_buttons
{
	return map { wd('GET', "/element/$_/text") }
	  grep { wd('GET', "/element/$_/displayed") } find_all('button');
}

# the countdown's text as seconds (undef if it is not m:ss or h:mm:ss)
sub seconds_of
{
	my ($text) = @_;
	return undef unless defined $text && $text =~ /^(?:(\d+):)?(\d+):(\d\d)$/;
	return ($1 // 0) * 3600 + $2 * 60 + $3;
}

sub countdown
{
	return run_js(q{var c = document.getElementById('countdown'); return c ? c.textContent : null;});
}

# The browser's console since the last call: errors only.
sub console_errors
{
	my $entries = wd('POST', '/se/log', { type => 'browser' });
	# the statuses of the pages and calls answered so on purpose (403, 409,
	# 410, 503) are no errors of the page
	return grep { !/ - Failed to load resource: the server responded with a status of \d\d\d / }
	  map { $_->{message} } grep { $_->{level} eq 'SEVERE' } @$entries;
}

# A screenshot of the page as $name.png under the test's log directory.
sub screenshot
{
	my ($name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $png = decode_base64(wd('GET', '/screenshot'));
	my $file = "$shots/$name.png";
	open my $fh, '>:raw', $file or die "$file: $!";
	print $fh $png;
	close $fh;
	my $saved = slurp($file);
	my ($w, $h) = length($saved) >= 24 ? unpack('NN', substr($saved, 16, 8)) : (0, 0);
	ok( substr($saved, 0, 8) eq "\x89PNG\r\n\x1a\n" && length($saved) > 4000 && $w == 780 && $h == 1688,
		"screenshot $name.png: a PNG of ${w}x$h, " . length($saved) . ' bytes');
}

# Colour contrast (WCAG 2) of an element's text against the first opaque
# background at or above it.
my $contrast_js = q{
function rgb(c) { var m = c.match(/[\d.]+/g) || []; return m.map(Number); }
function lum(c) {
  var v = rgb(c).slice(0, 3).map(function (x) { x /= 255;
    return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
  return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
}
var el = document.querySelector(arguments[0]);
if (!el) return null;
var fg = getComputedStyle(el).color, bg = null;
for (var e = el; e && !bg; e = e.parentElement) {
  var b = getComputedStyle(e).backgroundColor, a = rgb(b);
  if (a.length >= 3 && (a.length < 4 || a[3] >= 1)) bg = b;
}
bg = bg || 'rgb(255, 255, 255)';
var f = lum(fg), k = lum(bg);
return (Math.max(f, k) + 0.05) / (Math.min(f, k) + 0.05);
};

sub check_contrast
{
	my ($scheme) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	foreach my $css ('#accept', '#decline', '#title', '.event', '#when', '#countdown')
	{
		my $ratio = run_js($contrast_js, $css);
		ok(defined $ratio && $ratio >= 4.5,
			sprintf('%s: %s has a contrast of %.2f:1 (at least 4.5:1)', $scheme, $css, $ratio // 0));
	}
}

# --- an open offer ------------------------------------------------------------

my ($open_id, $open_token) = make_offer($event, 'fan-open');

my $res = call_gateway($g, 'GET', "/o/$open_token");
is($res->{status}, 200, 'an open offer: 200');
like($res->{headers}{'content-type'}, qr{^text/html; charset=utf-8$}, 'HTML');
my $csp = $res->{headers}{'content-security-policy'} // '';
my ($nonce) = $csp =~ /script-src 'nonce-([0-9a-f]{32})'/;
ok($nonce, 'a Content-Security-Policy with a script nonce') or diag($csp);
my $n = $nonce // 'none';
like($csp, qr/style-src 'nonce-\Q$n\E'/, 'the style has the same nonce');
like($csp, qr/default-src 'none'/, 'nothing else may load');
like($csp, qr/connect-src 'self'/, 'calls only to the gateway');
like($csp, qr/frame-ancestors 'none'/, 'not framed');
like($res->{content}, qr/<script nonce="\Q$n\E">/, 'the script carries the nonce');
like($res->{content}, qr/<style nonce="\Q$n\E">/, 'so does the style');
is($res->{headers}{'referrer-policy'}, 'no-referrer', 'Referrer-Policy: no-referrer (the link is a secret)');
is($res->{headers}{'cache-control'}, 'no-store', 'Cache-Control: no-store');
is($res->{headers}{'x-frame-options'}, 'DENY', 'X-Frame-Options: DENY');
is($res->{headers}{'x-content-type-options'}, 'nosniff', 'nosniff');
like($res->{content}, qr/\QRiverside Hall: Nils &amp; the &lt;Frets&gt;\E/, "the event's name, escaped");
my ($key1) = $res->{content} =~ /data-key="([0-9a-f]+)"/;
my $again = call_gateway($g, 'GET', "/o/$open_token");
my ($nonce2) = ($again->{headers}{'content-security-policy'} // '') =~ /'nonce-([0-9a-f]+)'/;
my ($key2) = $again->{content} =~ /data-key="([0-9a-f]+)"/;
ok($nonce2 && $nonce && $nonce2 ne $nonce, 'each load has its own nonce');
ok($key1 && $key2 && $key1 ne $key2, 'and its own Idempotency-Key');

open_url("/o/$open_token");
is(page_state(), 'open', 'in the browser: the page is open');
is(run_js('return document.documentElement.lang;'), 'en', 'the page has a language');
is(text_of('#title'), 'A seat is yours to take', 'the heading');
is(text_of('.event'), $event, "the event's name, as it is");
like(text_of('#when'), qr/^Answer by \d\d:\d\d UTC\. Time left:$/, 'the deadline');
is(run_js(q{return document.querySelector('#when time').getAttribute('datetime');}),
	sql("SELECT to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM waitlist.offer WHERE offer_id = $open_id"),
	"the deadline is the offer's");
is(join(',', visible_buttons()), 'Accept,Decline', 'Accept and Decline');
is(run_js(q{return document.querySelector('[role=status]') ? 'yes' : 'no';}), 'yes',
	'answers are told in a status region');

# --- the countdown runs on the server's clock ---

my $first = countdown();
my $left = sql("SELECT ceil(extract(epoch FROM expires_at - clock_timestamp())) FROM waitlist.offer WHERE offer_id = $open_id");
my $s1 = seconds_of($first);
ok(defined $s1 && $s1 <= 600 && abs($s1 - $left) <= 2,
	"the countdown ($first) shows the time the offer has left (${left}s)");
my $at1 = time;
ok(wait_for(sub { time - $at1 >= 2 && (seconds_of(countdown()) // 1e9) < ($s1 // 0) - 1 }, 5),
	'two seconds later it is lower');
my $second = countdown();
my $s2 = seconds_of($second);
my $elapsed = time - $at1;
ok(defined $s2 && $s1 - $s2 >= 1 && $s1 - $s2 <= $elapsed + 1,
	sprintf('it went from %s to %s in %.1fs of real time', $first, $second // '?', $elapsed));
screenshot('open');
is(join("\n", console_errors()), '', 'no errors in the console (script and style allowed by the CSP)');

# --- readable colours, light and dark ---

check_contrast('light');
# the fan's phone prefers dark
sub color_scheme
{
	my ($scheme) = @_;
	wd('POST', '/goog/cdp/execute',
		{ cmd => 'Emulation.setEmulatedMedia',
		  params => { features => [ { name => 'prefers-color-scheme', value => $scheme } ] } });
}
color_scheme('dark');
is(run_js(q{return matchMedia('(prefers-color-scheme: dark)').matches;}), JSON::PP::true,
	'the browser prefers dark now');
check_contrast('dark');
screenshot('open-dark');
color_scheme('');
is(run_js(q{return matchMedia('(prefers-color-scheme: dark)').matches;}), JSON::PP::false,
	'and light again');
is(offer_state($open_id), 'OPEN', 'loading the page changed nothing: the offer is open');

# --- accept -------------------------------------------------------------------

# the same offer, its page loaded again: a new key
open_url("/o/$open_token");
my $page_key = run_js(q{return document.getElementById('offer').getAttribute('data-key');});
my $posts = accept_posts();
wd('POST', "/element/" . find_one('#accept') . '/click', {});
ok(wait_state('accepted'), 'Accept: the page says accepted') or diag(page_state());
is(text_of('#title'), "You\x{2019}re in!", 'the heading');
is(text_of('#status'), "Your reservation: RES-$open_id.", 'the reservation');
is(join(',', visible_buttons()), '', 'no buttons any more');
is(run_js('return document.activeElement.id;'), 'title',
	'the focus is on the answer, not back at the top of the page');
is(run_js('return document.title;'), "You\x{2019}re in!", "the window's title says so too");
screenshot('accepted');
is(offer_state($open_id), 'ACCEPTED', 'in the database: ACCEPTED');
is(sql("SELECT reservation_ref || ' ' || idempotency_key FROM waitlist.offer WHERE offer_id = $open_id"),
	"RES-$open_id $page_key", "with the reservation, under the page's Idempotency-Key");
is(booking_runs($open_id), 1, 'the booking function ran once');
wait_for(sub { accept_posts() > $posts }, 5);
is(accept_posts() - $posts, 1, 'the page sent one accept');

# --- the accepted link, opened again ---

$res = call_gateway($g, 'GET', "/o/$open_token");
is($res->{status}, 200, 'the accepted link: 200');
open_url("/o/$open_token");
is(page_state(), 'accepted', 'reloaded: accepted');
is(text_of('#title'), "You\x{2019}re in!", 'the heading');
is(text_of('.event'), $event, 'the event');
is(text_of('#status'), "Your reservation: RES-$open_id", 'the reservation');
is(scalar(find_all('button')), 0, 'no buttons');
screenshot('accepted-reload');
is(booking_runs($open_id), 1, 'reloading booked nothing more');

# --- a double tap -------------------------------------------------------------

my ($tap_id, $tap_token) = make_offer($event, 'fan-tap');
open_url("/o/$tap_token");
is(page_state(), 'open', 'another offer: open');
$posts = accept_posts();
my $accept = find_one('#accept');
# count the taps that reach the page (a disabled button gets no clicks)
run_js(q{window.taps = 0; window.addEventListener('pointerdown', function () { window.taps++; }, true);});
# two taps in one action sequence: as fast as WebDriver can send them
wd(
	'POST', '/actions',
	{
		actions => [
			{
				type => 'pointer',
				id => 'finger',
				parameters => { pointerType => 'mouse' },
				actions => [
					{ type => 'pointerMove', origin => { $ELEMENT => $accept }, x => 0, y => 0, duration => 0 },
					{ type => 'pointerDown', button => 0 },
					{ type => 'pointerUp', button => 0 },
					{ type => 'pointerDown', button => 0 },
					{ type => 'pointerUp', button => 0 }
				]
			}
		]
	});
wd('DELETE', '/actions');
is(run_js('return window.taps;'), 2, 'two taps reached the page');
ok(wait_state('accepted'), 'a double tap on Accept: accepted') or diag(page_state());
is(text_of('#status'), "Your reservation: RES-$tap_id.", 'the reservation');
is(join(',', visible_buttons()), '', 'no buttons');
screenshot('double-tap');
is(offer_state($tap_id), 'ACCEPTED', 'in the database: ACCEPTED');
is(booking_runs($tap_id), 1, 'the booking function ran once');
is(sql("SELECT count(*) FROM waitlist.offer WHERE user_id = 'fan-tap' AND state = 'ACCEPTED'"), 1,
	'one accepted offer for the fan');
wait_for(sub { accept_posts() > $posts }, 5);
is(accept_posts() - $posts, 1, 'the page sent one accept for the two taps');

# --- decline: the first tap asks, the second declines --------------------------

my ($no_id, $no_token) = make_offer($event, 'fan-decline');
open_url("/o/$no_token");
is(page_state(), 'open', 'a third offer: open');
my $decline = find_one('#decline');
wd('POST', "/element/$decline/click", {});
ok(wait_for(sub { text_of('#decline') eq 'Tap again to decline' }, 5), 'Decline once: it asks to tap again');
is(text_of('#status'), 'Declining gives the seat to the next person in line.', 'and says what declining does');
is(page_state(), 'open', 'the offer is still open on the page');
is(join(',', visible_buttons()), 'Accept,Tap again to decline', 'both buttons are there');
screenshot('decline-confirm');
is(offer_state($no_id), 'OPEN', 'and in the database');
wd('POST', "/element/$decline/click", {});
ok(wait_state('declined'), 'Decline again: the page says declined') or diag(page_state());
is(text_of('#title'), 'Offer declined', 'the heading');
like(text_of('#status'), qr/next person in line/, 'the seat goes on');
is(join(',', visible_buttons()), '', 'no buttons');
screenshot('declined');
is(offer_state($no_id), 'DECLINED', 'in the database: DECLINED');
is(booking_runs($no_id), 0, 'nothing was booked');
open_url("/o/$no_token");
is(page_state(), 'declined', 'reloaded: declined');
is(scalar(find_all('button')), 0, 'no buttons');

# --- the seat is gone when the fan accepts ---

my ($gone_id, $gone_token) = make_offer('sold out', 'fan-gone');
open_url("/o/$gone_token");
is(page_state(), 'open', 'an offer whose booking fails: open');
wd('POST', '/element/' . find_one('#accept') . '/click', {});
ok(wait_state('failed'), 'Accept: the page says the booking failed') or diag(page_state());
is(text_of('#title'), 'The seat could not be booked', 'the heading');
is(text_of('#status'), 'You are back in line at your place.', 'the fan is told they are back in line');
is(join(',', visible_buttons()), '', 'no buttons');
screenshot('failed');
is(offer_state($gone_id), 'FAILED', 'in the database: FAILED');
is(sql("SELECT state FROM waitlist.entry WHERE user_id = 'fan-gone'"), 'WAITING', 'the fan waits again');
is(booking_runs($gone_id), 0, "the booking's work was rolled back");
open_url("/o/$gone_token");
is(page_state(), 'failed', 'reloaded: failed');
is(scalar(find_all('button')), 0, 'no buttons');

# --- the fan leaves the waitlist while the page is open ---

my ($left_id, $left_token) = make_offer($event, 'fan-leaves');
open_url("/o/$left_token");
is(page_state(), 'open', 'an offer: open');
sql("SELECT waitlist_leave(entry_id) FROM waitlist.offer WHERE offer_id = $left_id");
is(offer_state($left_id), 'REVOKED', 'the fan left: REVOKED in the database');
wd('POST', '/element/' . find_one('#accept') . '/click', {});
ok(wait_state('expired'), 'Accept on the page opened before: the offer is over') or diag(page_state());
like(text_of('#status'), qr/settled already/, 'it says the offer was settled');
is(join(',', visible_buttons()), '', 'no buttons');
screenshot('settled');
is(booking_runs($left_id), 0, 'nothing was booked');
is(offer_state($left_id), 'REVOKED', 'the offer stays REVOKED');
open_url("/o/$left_token");
is(page_state(), 'revoked', 'reloaded: revoked');
is(text_of('#title'), 'Offer withdrawn', 'the heading');
is(scalar(find_all('button')), 0, 'no buttons');
screenshot('revoked');

# --- an external booking service: the page waits for the saga ---

my ($saga_id, $saga_token) = make_offer('saga', 'fan-saga');
open_url("/o/$saga_token");
is(page_state(), 'open', 'an offer booked by a booking service: open');
$page_key = run_js(q{return document.getElementById('offer').getAttribute('data-key');});
$posts = accept_posts();
$accept = find_one('#accept');
wd('POST', "/element/$accept/click", {});
ok(wait_for(sub { offer_state($saga_id) eq 'ACCEPTING' }, 5), 'Accept: ACCEPTING in the database');
ok(wait_for(sub { text_of('#status') eq "Booking your seat\x{2026}" }, 5), 'the page says it is booking');
is(page_state(), 'open', 'still on the open page');
ok(!wd('GET', "/element/$accept/enabled"), 'Accept is disabled meanwhile');
screenshot('booking');
ok(wait_for(sub { accept_posts() - $posts >= 2 }, 5), 'the page asks again');
is(sql("SELECT waitlist_booking_confirmed($saga_id, 'EXT-$saga_id')"), 't', 'the booking service confirms');
ok(wait_state('accepted', 6), 'the page says accepted') or diag(page_state());
is(text_of('#status'), "Your reservation: EXT-$saga_id.", "with the booking service's reservation");
is(sql("SELECT state || ' ' || idempotency_key FROM waitlist.offer WHERE offer_id = $saga_id"),
	"ACCEPTED $page_key", "ACCEPTED under the page's one key, however often it asked");

my ($saga2_id, $saga2_token) = make_offer('saga', 'fan-saga-2');
$res = call_gateway($g, 'POST', "/v1/offers/$saga2_token:accept", headers => { 'Idempotency-Key' => 'elsewhere' });
is($res->{status}, 202, 'an offer accepted elsewhere: the saga runs');
open_url("/o/$saga2_token");
is(page_state(), 'accepting', 'its link: accepting');
is(text_of('#title'), "Booking your seat\x{2026}", 'the heading');
like(text_of('#status'), qr/updates by itself/, 'the page will update');
is(scalar(find_all('button')), 0, 'no buttons');
screenshot('accepting');
sql("SELECT waitlist_booking_confirmed($saga2_id, 'EXT-$saga2_id')");
ok(wait_state('accepted', 8), 'confirmed: the page reloads itself to accepted') or diag(page_state());
is(text_of('#status'), "Your reservation: EXT-$saga2_id", 'with the reservation');
screenshot('accepting-done');

# --- the countdown runs out ---------------------------------------------------

my ($late_id, $late_token) = make_offer('brief', 'fan-late');
open_url("/o/$late_token");
is(page_state(), 'open', 'an offer of 4 seconds: open');
my $late_first = seconds_of(countdown());
ok(defined $late_first && $late_first >= 1 && $late_first <= 4, 'its countdown starts at 4 seconds or less');
is(join(',', visible_buttons()), 'Accept,Decline', 'with the buttons');
my %seen;
ok( wait_for(
		sub {
			my $c = countdown();
			$seen{$c}++ if defined $c;
			page_state() eq 'expired';
		},
		10),
	'the page expires by itself');
is(sql("SELECT clock_timestamp() >= expires_at AND clock_timestamp() < expires_at + interval '3 seconds' FROM waitlist.offer WHERE offer_id = $late_id"),
	't', 'at the deadline, not before it nor long after');
is(countdown(), '0:00', 'the countdown reached 0:00');
ok(scalar(grep { (seconds_of($_) // 0) > 0 } keys %seen) >= 1,
	'counting down on the way (' . join(' ', sort { $b cmp $a } keys %seen) . ')');
is(text_of('#title'), 'This offer has expired', 'the page says it has expired');
is(text_of('#countdown'), '', 'the countdown is gone');
is(join(',', visible_buttons()), '', 'the buttons are gone');
screenshot('expired');

$res = call_gateway($g, 'GET', "/o/$late_token");
is($res->{status}, 410, 'the link after the deadline: 410');
like($res->{headers}{'content-type'}, qr{^text/html}, 'a page');
open_url("/o/$late_token");
is(page_state(), 'expired', 'opened after the deadline: expired');
is(text_of('#title'), 'This offer has expired', 'it says so');
is(scalar(find_all('button')), 0, 'no buttons');
screenshot('expired-link');
sql('SELECT waitlist_sweep()');
is(offer_state($late_id), 'EXPIRED', 'in the database: EXPIRED');

# --- a tampered link ----------------------------------------------------------

my ($payload, $mac) = split /\./, $open_token;
# the first character of the signature: all its bits count
(my $forged_mac = $mac) =~ s/^(.)/$1 eq 'A' ? 'Q' : 'A'/e;
my $forged = "$payload.$forged_mac";
isnt($forged, $open_token, 'a token with one character of its signature changed');
$res = call_gateway($g, 'GET', "/o/$forged");
is($res->{status}, 403, 'a tampered link: 403');
like($res->{headers}{'content-type'}, qr{^text/html}, 'a page');
open_url("/o/$forged");
is(page_state(), 'invalid', 'in the browser: invalid');
is(text_of('#title'), 'This link is not valid', 'it says the link is not valid');
unlike(text_of('main'), qr/Riverside|RES-/, 'and shows nothing of the offer');
is(scalar(find_all('button')), 0, 'no buttons');
screenshot('invalid');
$res = call_gateway($g, 'GET', '/o/not-a-token');
is($res->{status}, 404, 'a link that is not a token: 404');
like($res->{content}, qr/data-state="invalid"/, 'the same page');
is(offer_state($open_id), 'ACCEPTED', 'the offer the forgery was made from is as it was');

is(join("\n", console_errors()), '', 'no errors in the console');

# --- the database goes away while a page is open ---

my ($out_id, $out_token) = make_offer($event, 'fan-outage');
open_url("/o/$out_token");
is(page_state(), 'open', 'an offer: open');
$page_key = run_js(q{return document.getElementById('offer').getAttribute('data-key');});
$node->stop('fast');
$accept = find_one('#accept');
wd('POST', "/element/$accept/click", {});
ok(wait_for(sub { text_of('#status') =~ /try again/i && wd('GET', "/element/$accept/enabled") }, 15),
	'Accept without the database: the page asks to try again, Accept enabled again')
  or diag(text_of('#status'));
is(text_of('#status'), 'We could not save your answer just now. Please try again.', 'in plain words');
is(page_state(), 'open', 'the offer is still open on the page');
is(join(',', visible_buttons()), 'Accept,Decline', 'with its buttons');
screenshot('try-again');
$res = call_gateway($g, 'GET', "/o/$out_token");
is($res->{status}, 503, 'loading a link without the database: 503');
# in another tab: this one keeps the open page and its key
my $first_tab = wd('GET', '/window');
my $tab = wd('POST', '/window/new', { type => 'tab' });
wd('POST', '/window', { handle => $tab->{handle} });
open_url("/o/$out_token");
is(page_state(), 'error', 'the error page');
is(text_of('#title'), 'Something went wrong', 'it says so');
is(scalar(find_all('button')), 0, 'no buttons');
screenshot('error');
wd('DELETE', '/window');
wd('POST', '/window', { handle => $first_tab });
$node->start;
ok(wait_for(sub { call_gateway($g, 'GET', '/healthz')->{status} == 200 }, 20), 'the database is back');
is(page_state(), 'open', 'back on the open page');
is(run_js(q{return document.getElementById('offer').getAttribute('data-key');}), $page_key,
	'the same page (its key)');
wd('POST', '/element/' . find_one('#accept') . '/click', {});
ok(wait_state('accepted'), 'Accept again: accepted') or diag(text_of('#status'));
is(sql("SELECT state || ' ' || reservation_ref || ' ' || idempotency_key FROM waitlist.offer WHERE offer_id = $out_id"),
	"ACCEPTED RES-$out_id $page_key", 'in the database, under the key of the first try');
is(booking_runs($out_id), 1, 'booked once');

is(stop_gateway($g), 0, 'the gateway stops cleanly');

done_testing();
