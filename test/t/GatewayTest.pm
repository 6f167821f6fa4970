# GatewayTest: what the TAP tests of waitlist-gateway share: a node set up
# with the duty roles the gateway runs as, a keys file and a JWT secret,
# gateways started in the background on a free port of 127.0.0.1 (stopped
# with SIGTERM, killed if the test ends first), fans' JWTs, and HTTP calls.

package GatewayTest;

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256);
use Exporter 'import';
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use MIME::Base64 qw(encode_base64url);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WaitlistTest qw(sql slurp wait_for);

our @EXPORT = qw(gateway_node setup_gateway_roles start_gateway stop_gateway gateway_url
  gateway_log fan_jwt call_gateway $JWT_SECRET %KEYS);

our $JWT_SECRET = 'gateway-test-secret-of-at-least-32-bytes';
our %KEYS = (
	app => 'app-key-for-the-gateway-tests',
	booking => 'booking-key-for-the-gateway-tests',
	monitor => 'monitor-key-for-the-gateway-tests',
	admin => 'admin-key-for-the-gateway-tests');

my @gateways;
my $started = 0;
my $json = JSON::PP->new->canonical;

END
{
	foreach my $g (@gateways)
	{
		eval { $g->{h}->kill_kill; };
	}
}

# A started node named $name with the extension preloaded and created and
# the gateway's roles; WaitlistTest's sql() talks to it.
sub gateway_node
{
	my ($name) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	WaitlistTest::use_node($node);
	$node->init;
	$node->append_conf('postgresql.conf', "shared_preload_libraries = 'waitlist'\n");
	$node->start;
	sql('CREATE EXTENSION waitlist');
	setup_gateway_roles();
	return $node;
}

# The roles of the duties, and gw_login, the member of them all that the
# gateway logs in as.
sub setup_gateway_roles
{
	sql(q{
CREATE ROLE gw_login LOGIN;
CREATE ROLE gw_fans;
CREATE ROLE gw_links;
CREATE ROLE gw_app;
CREATE ROLE gw_booking;
CREATE ROLE gw_monitor;
CREATE ROLE gw_admin;
GRANT gw_fans, gw_links, gw_app, gw_booking, gw_monitor, gw_admin TO gw_login;
SELECT waitlist_grant('gw_fans', 'app'), waitlist_grant('gw_links', 'token'),
       waitlist_grant('gw_app', 'app'), waitlist_grant('gw_booking', 'booking'),
       waitlist_grant('gw_monitor', 'monitor'), waitlist_grant('gw_admin', 'admin');
});
}

# Start a gateway for $node's database postgres; extra flags in @args.
# Returns a handle for stop_gateway, gateway_url and gateway_log.
sub start_gateway
{
	my ($node, @args) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;

	my ($bindir) = grep { -x "$_/waitlist-gateway" } split /:/, $ENV{PATH};
	BAIL_OUT('waitlist-gateway is not installed (make install)') unless $bindir;
	my $dir = PostgreSQL::Test::Utils::tempdir;
	my $keys = "$dir/keys";
	open my $fh, '>', $keys or die "$keys: $!";
	print $fh "# duty role key\n";
	print $fh "$_ gw_$_ $KEYS{$_}\n" foreach sort keys %KEYS;
	close $fh;
	open $fh, '>', "$dir/jwt" or die "$dir/jwt: $!";
	print $fh "$JWT_SECRET\n";
	close $fh;

	# the port is the kernel's choice, which the gateway logs: no race for it
	my $g = { dir => $dir, log => "$PostgreSQL::Test::Utils::log_path/gateway_" . ++$started . '.log' };
	my $connstr = $node->connstr('postgres') . ' user=gw_login';
	$g->{timer} = IPC::Run::timer(600);
	$g->{h} = IPC::Run::start(
		[
			"$bindir/waitlist-gateway", '--dbname', $connstr,
			'--listen', '127.0.0.1:0', '--fan-role', 'gw_fans',
			'--token-role', 'gw_links', '--keys-file', $keys,
			'--jwt-secret-file', "$dir/jwt", @args
		],
		'<', '/dev/null', '>', "$dir/gateway.out", '2>', $g->{log}, $g->{timer});
	push @gateways, $g;
	ok(wait_for(sub { -e $g->{log} && slurp($g->{log}) =~ /listening on/ }, 20), 'the gateway listens')
	  or diag(-e $g->{log} ? slurp($g->{log}) : 'no log');
	($g->{port}) = slurp($g->{log}) =~ /listening on 127\.0\.0\.1:(\d+)/;
	return $g;
}

# SIGTERM, then wait for the exit; returns the exit status.
sub stop_gateway
{
	my ($g) = @_;
	$g->{h}->signal('TERM');
	$g->{timer}->start(30);
	if (!eval { $g->{h}->finish; 1 })
	{
		$g->{h}->kill_kill;
		diag(slurp($g->{log}));
		return -1;
	}
	my $status = $g->{h}->full_result(0);
	diag(slurp($g->{log})) if $status != 0;
	return $status;
}

sub gateway_url
{
	my ($g, $path) = @_;
	return "http://127.0.0.1:$g->{port}$path";
}

sub gateway_log
{
	my ($g) = @_;
	return slurp($g->{log});
}

# A fan's JWT (HS256) with sub $user; %claims replace or add claims, and
# $claims{secret} or $claims{alg} make a bad one.
sub fan_jwt
{
	my ($user, %claims) = @_;
	my $secret = delete $claims{secret} // $JWT_SECRET;
	my $alg = delete $claims{alg} // 'HS256';
	my %payload = (sub => $user, exp => time + 600, %claims);
	delete $payload{$_} foreach grep { !defined $payload{$_} } keys %payload;
	my $head = encode_base64url($json->encode({ alg => $alg, typ => 'JWT' }));
	my $body = encode_base64url($json->encode(\%payload));
	my $mac = $alg eq 'none' ? '' : encode_base64url(hmac_sha256("$head.$body", $secret));
	return "$head.$body.$mac";
}

# One HTTP call: call_gateway($g, METHOD, PATH, auth => BEARER,
# json => BODY, body => RAW, headers => {...}).  Returns a hash of status,
# headers, content and json (the decoded body, if it is JSON).
sub call_gateway
{
	my ($g, $method, $path, %opt) = @_;
	my %headers = %{ $opt{headers} // {} };
	$headers{Authorization} = "Bearer $opt{auth}" if defined $opt{auth};
	my %request = (headers => \%headers);
	if (defined $opt{json})
	{
		$request{content} = $json->encode($opt{json});
		$headers{'Content-Type'} //= 'application/json';
	}
	$request{content} = $opt{body} if defined $opt{body};
	my $http = HTTP::Tiny->new(timeout => $opt{timeout} // 30, keep_alive => 0);
	my $res = $http->request($method, gateway_url($g, $path), \%request);
	my $type = $res->{headers}{'content-type'} // '';
	if ($type =~ m{^application/(problem\+)?json} && length($res->{content} // ''))
	{
		$res->{json} = eval { decode_json($res->{content}) };
	}
	return $res;
}

1;
