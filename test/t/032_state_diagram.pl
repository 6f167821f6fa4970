# The state diagrams of README.md ("State machine") against the transition
# table the engine applies (waitlist.state_machine()): every arrow of each
# diagram is a transition of the table with the same states, event and, for
# offers, unit effect, and every transition of the table is drawn.  A rule
# added to src/transition.c without its arrow, or an arrow the engine does
# not have, fails here.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest qw(slurp);

my $readme = slurp("$FindBin::RealBin/../../README.md");

# entity => { "from|to|event|unit" => 1 }; from '' for a row created
my %drawn;
for my $entity (qw(entry offer)) {
	my ($diagram) = $readme =~
	  /<!-- state machine: $entity -->\s*```mermaid\s*\n(.*?)```/s;
	ok(defined $diagram, "README.md draws the $entity state machine");
	next unless defined $diagram;
	for my $line (split /\n/, $diagram) {
		next if $line =~ /^\s*(stateDiagram|$)/;
		my ($from, $to, $event, $unit) =
		  $line =~ /^\s*(\[\*\]|\w+)\s*-->\s*(\w+)\s*:\s*(\w+)(?:\s*\((\w+)\))?\s*$/;
		ok(defined $from, "README.md: '$line' reads as an arrow") or next;
		$from = '' if $from eq '[*]';
		$drawn{$entity}{ join '|', $from, $to, $event, $unit // '' } = 1;
	}
}

my $node = PostgreSQL::Test::Cluster->new('diagram');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION waitlist');
my $rows = $node->safe_psql('postgres',
	q{SELECT entity, coalesce(from_state, ''), to_state, event,
             CASE entity WHEN 'offer' THEN unit ELSE '' END
      FROM waitlist.state_machine()});
my %table;
for my $row (split /\n/, $rows) {
	my ($entity, @key) = split /\|/, $row, -1;
	$table{$entity}{ join '|', @key } = 1;
}

for my $entity (qw(entry offer)) {
	my @missing = grep { !$drawn{$entity}{$_} } sort keys %{ $table{$entity} };
	my @extra = grep { !$table{$entity}{$_} } sort keys %{ $drawn{$entity} };
	is(join(', ', @missing), '', "every $entity transition of the engine is drawn");
	is(join(', ', @extra), '', "every $entity arrow drawn is a transition of the engine");
}
ok(scalar(keys %{ $table{entry} }) >= 8 && scalar(keys %{ $table{offer} }) >= 6,
	'the table has the transitions of 1.0');

$node->stop;
done_testing();
