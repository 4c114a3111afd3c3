#!/usr/bin/perl
# Independent ARC sealer (Perl Mail::DKIM::ARC::Signer): seal standard input as a forwarder would,
# as DOMAIN/SELECTOR with the RSA key in KEYFILE, recording the Authentication-Results of SRVID.
use strict;
use warnings;
use Mail::DKIM::ARC::Signer;

my ($domain, $selector, $keyfile, $srvid) = @ARGV;
binmode STDIN;
binmode STDOUT;
my $message = do { local $/; <STDIN> };
$message =~ s/\r?\n/\r\n/g;
my $arc = Mail::DKIM::ARC::Signer->new(
    Algorithm => 'rsa-sha256', Chain => 'ar', SrvId => $srvid, Domain => $domain,
    Selector => $selector, KeyFile => $keyfile, Headers => 'from:to:subject:date',
);
$arc->PRINT($message);
$arc->CLOSE;
die "not sealed: " . $arc->result . "\n" unless $arc->result eq 'sealed';
print join("\r\n", $arc->as_strings), "\r\n", $message;
