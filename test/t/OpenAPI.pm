# OpenAPI: check an OpenAPI 3.0 document, and real HTTP responses against it.
#
#   my $doc = openapi_load('docs/openapi.json');
#   my @problems = openapi_document_problems($doc);
#   my @problems = openapi_response_problems($doc, 'POST',
#       '/v1/resources/show/waitlist:join', 201, 'application/json', $body);
#
# Each problem is one line of text; an empty list means all is well.
#
# A response is checked against its operation: the path template the
# concrete path matches (a {parameter} stands for one or more characters
# other than "/"; if no template matches so, a second pass lets a parameter
# take "/" too, as the gateway's {resource_id} does) and the method.  A
# request no operation takes (an unknown path, a method the path does not
# take) is checked against the document's "x-unrouted-responses", a map of
# status to Response object like an operation's "responses".  The status
# must be documented (exactly, as a range like "4XX", or "default"), the
# media type (the Content-Type without its parameters) must be one of the
# response's, a response documented without content must have no body, and
# a JSON body (application/json, application/*+json) is decoded and
# validated against the media type's schema.  A body of another media type
# is validated as a string.  A response to HEAD has no body to check.
#
# Schemas are checked with these keywords: type (string, integer, number,
# boolean, object, array), nullable, enum, required, properties,
# additionalProperties (false or a schema), items, minItems, maxItems,
# minimum, maximum, exclusiveMinimum, exclusiveMaximum, minLength,
# maxLength, pattern, allOf, anyOf, oneOf, not and $ref (local: "#/...").
# Others (format, description, example, ...) are not checked.  A problem
# names the JSON pointer of the value that fails ("" is the whole body).
#
# JSON types: an integer is a number written without a fraction or an
# exponent (as the gateway's JSON library tells them apart); "nullable: true"
# admits null whatever the schema's other keywords say.

package OpenAPI;

use strict;
use warnings;

use B ();
use Encode ();
use Exporter 'import';
use JSON::PP ();
use Scalar::Util qw(blessed);

our @EXPORT = qw(openapi_load openapi_document_problems openapi_response_problems);

my @METHODS = qw(get put post delete options head patch trace);

# Bodies: numbers too long for a Perl integer, and every number with a
# fraction or an exponent, become Math::BigInt and Math::BigFloat objects,
# so that json_type() can tell integers from other numbers.
my $body_json = JSON::PP->new->utf8->allow_nonref->allow_bignum;

# ------------------------------------------------------------------------
# Loading, references
# ------------------------------------------------------------------------

# The decoded document; dies if it cannot be read or is not a JSON object.
sub openapi_load
{
	my ($path) = @_;
	open my $fh, '<:raw', $path or die "cannot read $path: $!\n";
	my $text = do { local $/; <$fh> };
	close $fh;
	my $doc = eval { JSON::PP->new->utf8->decode($text) };
	die "$path is not JSON: $@" if !defined $doc;
	die "$path is not a JSON object\n" if ref $doc ne 'HASH';
	return $doc;
}

# What a local reference ("#/components/schemas/Entry") points to, or undef.
sub resolve_pointer
{
	my ($doc, $ref) = @_;
	return undef if !defined $ref || ref $ref || $ref !~ m{^#(/.*)?\z}s;
	my $node = $doc;
	return $node if $ref eq '#';
	foreach my $token (split m{/}, substr($ref, 2), -1)
	{
		$token =~ s/~1/\//g;
		$token =~ s/~0/~/g;
		if (ref $node eq 'HASH' && exists $node->{$token})
		{
			$node = $node->{$token};
		}
		elsif (ref $node eq 'ARRAY' && $token =~ /^(0|[1-9][0-9]*)\z/ && $token < @$node)
		{
			$node = $node->[$token];
		}
		else
		{
			return undef;
		}
	}
	return $node;
}

# $object with its $ref followed (and the target's, and so on); undef for a
# reference that does not resolve, or a loop of references.
sub deref
{
	my ($doc, $object) = @_;
	my %seen;
	while (ref $object eq 'HASH' && exists $object->{'$ref'})
	{
		my $ref = $object->{'$ref'};
		return undef if $seen{$ref}++;
		$object = resolve_pointer($doc, $ref);
	}
	return $object;
}

# A member name as a JSON pointer token.
sub pointer_token
{
	my ($name) = @_;
	$name =~ s/~/~0/g;
	$name =~ s/\//~1/g;
	return $name;
}

# ------------------------------------------------------------------------
# The document itself
# ------------------------------------------------------------------------

sub openapi_document_problems
{
	my ($doc) = @_;
	my @problems;

	return ('the document is not a JSON object') if ref $doc ne 'HASH';

	push @problems, 'openapi is not 3.0.x'
	  if !defined $doc->{openapi} || ref $doc->{openapi} || $doc->{openapi} !~ /^3\.0\.[0-9]+\z/;
	if (ref $doc->{info} ne 'HASH')
	{
		push @problems, 'info is missing';
	}
	else
	{
		foreach my $field ('title', 'version')
		{
			my $value = $doc->{info}{$field};
			push @problems, "info.$field is missing"
			  if !defined $value || ref $value || $value eq '';
		}
	}

	# every $ref, wherever it is, resolves
	push @problems, ref_problems($doc, $doc, '');

	my $paths = $doc->{paths};
	if (ref $paths ne 'HASH')
	{
		push @problems, 'paths is missing';
		$paths = {};
	}
	my $schemes = ref $doc->{components} eq 'HASH' ? $doc->{components}{securitySchemes} : undef;
	my %operation_ids;
	foreach my $path (sort keys %$paths)
	{
		push @problems, "path $path does not start with /" if $path !~ m{^/};
		my $item = deref($doc, $paths->{$path});
		if (ref $item ne 'HASH')
		{
			push @problems, "path $path is not a Path Item object";
			next;
		}
		my @templated = $path =~ /\{([^{}]+)\}/g;
		my $operations = 0;
		foreach my $method (grep { exists $item->{$_} } @METHODS)
		{
			my $operation = $item->{$method};
			my $what = uc($method) . " $path";
			$operations++;
			if (ref $operation ne 'HASH')
			{
				push @problems, "$what is not an Operation object";
				next;
			}
			if (defined $operation->{operationId})
			{
				push @problems, "$what: operationId $operation->{operationId} is used twice"
				  if $operation_ids{ $operation->{operationId} }++;
			}
			push @problems, responses_problems($doc, $operation->{responses}, $what);
			push @problems, path_parameter_problems($doc, $item, $operation, \@templated, $what);
			push @problems, security_problems($operation->{security}, $schemes, $what)
			  if exists $operation->{security};
		}
		push @problems, "path $path has no operation" if !$operations;
	}
	push @problems, security_problems($doc->{security}, $schemes, 'the document')
	  if exists $doc->{security};
	push @problems, responses_problems($doc, $doc->{'x-unrouted-responses'}, 'x-unrouted-responses')
	  if exists $doc->{'x-unrouted-responses'};
	return @problems;
}

# Every {"$ref": ...} under $node (at JSON pointer $at) resolves.
sub ref_problems
{
	my ($doc, $node, $at) = @_;
	my @problems;
	if (ref $node eq 'HASH')
	{
		if (exists $node->{'$ref'})
		{
			my $ref = $node->{'$ref'};
			if (ref $ref || !defined $ref)
			{
				push @problems, "\$ref at \"$at\" is not a string";
			}
			elsif ($ref !~ /^#/)
			{
				push @problems, "\$ref $ref at \"$at\" is not a local reference (#/...)";
			}
			elsif (!defined deref($doc, $node))
			{
				push @problems, "\$ref $ref at \"$at\" does not resolve";
			}
		}
		foreach my $key (sort keys %$node)
		{
			next if $key eq '$ref';
			push @problems, ref_problems($doc, $node->{$key}, "$at/" . pointer_token($key));
		}
	}
	elsif (ref $node eq 'ARRAY')
	{
		push @problems, ref_problems($doc, $node->[$_], "$at/$_") foreach 0 .. $#$node;
	}
	return @problems;
}

# An operation's responses: at least one, statuses that are statuses, and
# every response with a description.
sub responses_problems
{
	my ($doc, $responses, $what) = @_;
	$responses = deref($doc, $responses);
	return ("$what has no responses") if ref $responses ne 'HASH' || !%$responses;
	my @problems;
	foreach my $status (sort keys %$responses)
	{
		next if $status =~ /^x-/;
		push @problems, "$what: response key $status is not a status, a range or default"
		  if $status !~ /^(?:[1-5][0-9][0-9]|[1-5]XX|default)\z/;
		my $response = deref($doc, $responses->{$status});
		if (ref $response ne 'HASH')
		{
			push @problems, "$what: response $status is not a Response object";
		}
		elsif (!defined $response->{description} || ref $response->{description})
		{
			push @problems, "$what: response $status has no description";
		}
	}
	return @problems;
}

# The path parameters of an operation (its path item's and its own) are
# those of the template, each required.
sub path_parameter_problems
{
	my ($doc, $item, $operation, $templated, $what) = @_;
	my @problems;
	my %declared;
	foreach my $list ($item->{parameters}, $operation->{parameters})
	{
		next if !defined $list;
		if (ref $list ne 'ARRAY')
		{
			push @problems, "$what: parameters is not an array";
			next;
		}
		foreach my $parameter (map { deref($doc, $_) } @$list)
		{
			if (ref $parameter ne 'HASH' || !defined $parameter->{name} || !defined $parameter->{in})
			{
				push @problems, "$what: a parameter without name or in";
				next;
			}
			next if $parameter->{in} ne 'path';
			$declared{ $parameter->{name} } = $parameter;
		}
	}
	my %in_template = map { $_ => 1 } @$templated;
	foreach my $name (@$templated)
	{
		if (!$declared{$name})
		{
			push @problems, "$what: path parameter {$name} is not declared";
		}
		elsif (!$declared{$name}{required})
		{
			push @problems, "$what: path parameter {$name} is not required: true";
		}
	}
	push @problems, "$what: path parameter $_ is not in the path"
	  foreach grep { !$in_template{$_} } sort keys %declared;
	return @problems;
}

# A security requirement names security schemes of the components.
sub security_problems
{
	my ($security, $schemes, $what) = @_;
	return ("$what: security is not an array") if ref $security ne 'ARRAY';
	my @problems;
	foreach my $requirement (@$security)
	{
		if (ref $requirement ne 'HASH')
		{
			push @problems, "$what: a security requirement is not an object";
			next;
		}
		push @problems, "$what: security scheme $_ is not in components.securitySchemes"
		  foreach grep { ref $schemes ne 'HASH' || !exists $schemes->{$_} } sort keys %$requirement;
	}
	return @problems;
}

# ------------------------------------------------------------------------
# One response
# ------------------------------------------------------------------------

sub openapi_response_problems
{
	my ($doc, $method, $path, $status, $content_type, $body_text) = @_;
	my ($template, $operation) = find_operation($doc, $method, $path);
	my ($responses, $what);

	if ($operation)
	{
		$responses = $operation->{responses};
		$what = uc($method) . " $template";
	}
	elsif (exists $doc->{'x-unrouted-responses'})
	{
		$responses = $doc->{'x-unrouted-responses'};
		$what = 'x-unrouted-responses (no operation takes ' . uc($method) . " $path)";
	}
	else
	{
		return ('no operation of the document takes ' . uc($method) . " $path");
	}
	$responses = deref($doc, $responses);
	return ("$what has no responses") if ref $responses ne 'HASH';

	my $response;
	foreach my $key ($status, substr($status, 0, 1) . 'XX', 'default')
	{
		if (exists $responses->{$key})
		{
			$response = deref($doc, $responses->{$key});
			last;
		}
	}
	return ("status $status is not documented for $what") if ref $response ne 'HASH';
	return content_problems($doc, $response, $content_type, $body_text, "$what $status",
		uc($method) eq 'HEAD');
}

# The path template and the operation of method and path, or the template
# alone if its path item has no such method, or nothing.
sub find_operation
{
	my ($doc, $method, $path) = @_;
	my $paths = ref $doc->{paths} eq 'HASH' ? $doc->{paths} : {};

	$path =~ s/[?#].*//s;		# the query is not part of the path
	foreach my $parameter (qr{[^/]+}, qr{.+})
	{
		my @matches = grep { $path =~ template_regex($_, $parameter) } keys %$paths;
		next if !@matches;

		# the most specific template: the most characters that are not
		# parameters (a concrete path before a templated one)
		my ($best) = sort { literal_length($b) <=> literal_length($a) || $a cmp $b } @matches;
		my $item = deref($doc, $paths->{$best});
		my $operation = ref $item eq 'HASH' ? $item->{ lc $method } : undef;
		return ($best, ref $operation eq 'HASH' ? $operation : undef);
	}
	return;
}

sub template_regex
{
	my ($template, $parameter) = @_;
	my $regex = join '',
	  map { /^\{[^{}]*\}\z/ ? "(?:$parameter)" : quotemeta($_) } split /(\{[^{}]*\})/, $template;
	return qr{^$regex\z}s;
}

sub literal_length
{
	my ($template) = @_;
	(my $literal = $template) =~ s/\{[^{}]*\}//g;
	return length $literal;
}

# The body against the response's content (a response to HEAD has none).
sub content_problems
{
	my ($doc, $response, $content_type, $body_text, $what, $head) = @_;
	my $content = $response->{content};
	my ($media) = lc($content_type // '') =~ m{^\s*([^;\s]+)};
	$body_text //= '';

	if (ref $content ne 'HASH' || !%$content)
	{
		return ("$what is documented without a body, but the response has one")
		  if length $body_text;
		return ();
	}
	return () if $head && !length $body_text && !defined $media;
	my @documented = sort keys %$content;
	return ("$what: the response has no Content-Type (documented: @documented)")
	  if !defined $media;

	my ($key) = grep { lc($_) eq $media } @documented;
	($key) = grep { lc($_) eq ($media =~ s{/.*}{/*}r) } @documented if !defined $key;
	($key) = grep { $_ eq '*/*' } @documented if !defined $key;
	return ("$what: content type $media is not documented (documented: @documented)")
	  if !defined $key;

	return () if $head;

	my $schema = ref $content->{$key} eq 'HASH' ? $content->{$key}{schema} : undef;
	my $body;
	if ($media eq 'application/json' || $media =~ m{^application/[^/]+\+json\z})
	{
		$body = eval { $body_json->decode($body_text) };
		if (my $error = $@)
		{
			$error =~ s/ at \S+ line [0-9]+\.?\s*\z//;	# not where JSON::PP noticed
			return ("$what: the body is not JSON: $error");
		}
	}
	else
	{
		# any other body is a string (of UTF-8 text)
		$body = Encode::decode('UTF-8', $body_text);
	}
	return () if !defined $schema;
	return map { "$what: body $_" } schema_problems($doc, $schema, $body, '');
}

# ------------------------------------------------------------------------
# Schemas
# ------------------------------------------------------------------------

# The JSON type of a decoded value: null, boolean, integer, number, string,
# array or object.  A number and a string are told apart by how the value
# was made (Perl 5.36 keeps that: using a number as a string does not make
# it one).  Looks at $_[0] itself, not a copy.
sub json_type
{
	return 'null' if !defined $_[0];
	if (blessed $_[0])
	{
		return 'boolean' if $_[0]->isa('JSON::PP::Boolean');
		return 'integer' if $_[0]->isa('Math::BigInt');
		return 'number' if $_[0]->isa('Math::BigFloat');
		return 'unknown';
	}
	return 'object' if ref $_[0] eq 'HASH';
	return 'array' if ref $_[0] eq 'ARRAY';
	return 'unknown' if ref $_[0];
	my $flags = B::svref_2object(\$_[0])->FLAGS;
	return 'string' if $flags & B::SVf_POK;
	return 'integer' if $flags & B::SVf_IOK;
	return 'number' if $flags & B::SVf_NOK;
	return 'string';
}

# A value, for a message: a long string is cut short, unless $whole.
sub describe
{
	my $whole = $_[1];
	my $type = json_type($_[0]);
	return 'null' if $type eq 'null';
	return $_[0] ? 'true' : 'false' if $type eq 'boolean';
	return "$_[0]" if $type eq 'integer' || $type eq 'number';
	return 'an object' if $type eq 'object';
	return 'an array' if $type eq 'array';
	my $s = "$_[0]";
	$s = substr($s, 0, 40) . '...' if !$whole && length $s > 43;
	return JSON::PP->new->ascii->allow_nonref->encode($s);
}

# A value with its type: 'string "7"', 'integer 7', 'an array'.
sub describe_typed
{
	my $type = json_type($_[0]);
	return describe($_[0]) if $type eq 'null' || $type eq 'object' || $type eq 'array';
	return "$type " . describe($_[0]);
}

# Are two decoded values the same JSON value?
sub same_json
{
	my $type_a = json_type($_[0]);
	my $type_b = json_type($_[1]);
	my %numeric = (integer => 1, number => 1);
	return $_[0] == $_[1] if $numeric{$type_a} && $numeric{$type_b};
	return 0 if $type_a ne $type_b;
	return 1 if $type_a eq 'null';
	return !!$_[0] == !!$_[1] if $type_a eq 'boolean';
	return $_[0] eq $_[1] if $type_a eq 'string';
	if ($type_a eq 'array')
	{
		return 0 if @{ $_[0] } != @{ $_[1] };
		foreach my $i (0 .. $#{ $_[0] })
		{
			return 0 if !same_json($_[0][$i], $_[1][$i]);
		}
		return 1;
	}
	if ($type_a eq 'object')
	{
		my @keys = sort keys %{ $_[0] };
		return 0 if join("\0", @keys) ne join("\0", sort keys %{ $_[1] });
		foreach my $key (@keys)
		{
			return 0 if !same_json($_[0]{$key}, $_[1]{$key});
		}
		return 1;
	}
	return 0;
}

# The problems of a value (at JSON pointer $at) against a schema.
sub schema_problems
{
	my ($doc, $schema, $value, $at) = @_;
	my $here = "at \"$at\":";

	# a $ref stands for its target (its siblings are ignored, as in OpenAPI 3.0)
	if (ref $schema eq 'HASH' && exists $schema->{'$ref'})
	{
		my $target = deref($doc, $schema);
		return ("$here \$ref $schema->{'$ref'} does not resolve") if ref $target ne 'HASH';
		$schema = $target;
	}
	return ("$here the schema is not an object") if ref $schema ne 'HASH';

	my $type = json_type($value);
	return () if $type eq 'null' && $schema->{nullable};

	my @problems;
	if (defined $schema->{type})
	{
		my $expected = $schema->{type};
		my $ok = $type eq $expected || ($expected eq 'number' && $type eq 'integer');
		if ($type eq 'null')
		{
			return ("$here null, but the schema is not nullable");
		}
		elsif (!$ok)
		{
			return ("$here $expected expected, got " . describe_typed($value));
		}
	}

	if (ref $schema->{enum} eq 'ARRAY' && !grep { same_json($value, $_) } @{ $schema->{enum} })
	{
		push @problems, "$here " . describe($value) . ' is not one of the enum: '
		  . join(', ', map { describe($_, 1) } @{ $schema->{enum} });
	}

	if ($type eq 'string')
	{
		my $length = length $value;
		push @problems, "$here " . describe($value) . " is shorter than minLength $schema->{minLength}"
		  if defined $schema->{minLength} && $length < $schema->{minLength};
		push @problems, "$here " . describe($value) . " is longer than maxLength $schema->{maxLength}"
		  if defined $schema->{maxLength} && $length > $schema->{maxLength};
		if (defined $schema->{pattern})
		{
			my $pattern = eval { qr/$schema->{pattern}/ };
			if (!defined $pattern)
			{
				push @problems, "$here the pattern $schema->{pattern} does not compile";
			}
			elsif ($value !~ $pattern)
			{
				push @problems, "$here " . describe($value) . " does not match the pattern $schema->{pattern}";
			}
		}
	}

	if ($type eq 'integer' || $type eq 'number')
	{
		if (defined $schema->{minimum})
		{
			if ($schema->{exclusiveMinimum})
			{
				push @problems, "$here $value is not above the exclusive minimum $schema->{minimum}"
				  if $value <= $schema->{minimum};
			}
			elsif ($value < $schema->{minimum})
			{
				push @problems, "$here $value is below the minimum $schema->{minimum}";
			}
		}
		if (defined $schema->{maximum})
		{
			if ($schema->{exclusiveMaximum})
			{
				push @problems, "$here $value is not below the exclusive maximum $schema->{maximum}"
				  if $value >= $schema->{maximum};
			}
			elsif ($value > $schema->{maximum})
			{
				push @problems, "$here $value is above the maximum $schema->{maximum}";
			}
		}
	}

	if ($type eq 'object')
	{
		my $properties = ref $schema->{properties} eq 'HASH' ? $schema->{properties} : {};
		my $additional = $schema->{additionalProperties};
		foreach my $name (@{ $schema->{required} // [] })
		{
			push @problems, "$here the required member \"$name\" is missing"
			  if !exists $value->{$name};
		}
		foreach my $name (sort keys %$value)
		{
			my $member_at = "$at/" . pointer_token($name);
			if (exists $properties->{$name})
			{
				push @problems, schema_problems($doc, $properties->{$name}, $value->{$name}, $member_at);
			}
			elsif (ref $additional eq 'HASH')
			{
				push @problems, schema_problems($doc, $additional, $value->{$name}, $member_at);
			}
			elsif (defined $additional && !$additional)
			{
				push @problems, "at \"$member_at\": a member the schema does not have "
				  . '(additionalProperties is false)';
			}
		}
	}

	if ($type eq 'array')
	{
		my $count = @$value;
		push @problems, "$here $count items, fewer than minItems $schema->{minItems}"
		  if defined $schema->{minItems} && $count < $schema->{minItems};
		push @problems, "$here $count items, more than maxItems $schema->{maxItems}"
		  if defined $schema->{maxItems} && $count > $schema->{maxItems};
		if (defined $schema->{items})
		{
			push @problems, schema_problems($doc, $schema->{items}, $value->[$_], "$at/$_")
			  foreach 0 .. $#$value;
		}
	}

	# composition: each subschema's problems, for the value here
	if (ref $schema->{allOf} eq 'ARRAY')
	{
		push @problems, schema_problems($doc, $_, $value, $at) foreach @{ $schema->{allOf} };
	}
	if (ref $schema->{anyOf} eq 'ARRAY')
	{
		my @failures = map { [ schema_problems($doc, $_, $value, $at) ] } @{ $schema->{anyOf} };
		push @problems, "$here matches none of anyOf: " . summary(@failures)
		  if !grep { !@$_ } @failures;
	}
	if (ref $schema->{oneOf} eq 'ARRAY')
	{
		my @failures = map { [ schema_problems($doc, $_, $value, $at) ] } @{ $schema->{oneOf} };
		my $matches = grep { !@$_ } @failures;
		push @problems, "$here matches none of oneOf: " . summary(@failures) if $matches == 0;
		push @problems, "$here matches $matches of oneOf, not exactly one" if $matches > 1;
	}
	if (defined $schema->{not})
	{
		my @failures = schema_problems($doc, $schema->{not}, $value, $at);
		push @problems, "$here matches the schema of not" if !@failures;
	}
	return @problems;
}

# The problems of each subschema of anyOf or oneOf, on one line.
sub summary
{
	my @failures = @_;
	return join '; ', map { "[$_] " . join(', ', @{ $failures[$_] }) } 0 .. $#failures;
}

1;
