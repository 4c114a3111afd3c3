#!/usr/bin/perl
# Independent DKIM signer (Perl Mail::DKIM): sign standard input as DOMAIN/SELECTOR with
# the RSA key in KEYFILE, relaxed/relaxed unless METHOD says otherwise (simple/relaxed, ...),
# over HEADERS (default from:to:subject:date), and print the signed message.
use strict;
use warnings;
use Mail::DKIM::Signer;

my ($domain, $selector, $keyfile, $method, $headers) = @ARGV;
binmode STDIN;
binmode STDOUT;
my $message = do { local $/; <STDIN> };
$message =~ s/\r?\n/\r\n/g;
my $signer = Mail::DKIM::Signer->new(
    Algorithm => 'rsa-sha256', Method => $method // 'relaxed', Domain => $domain,
    Selector => $selector, KeyFile => $keyfile, Headers => $headers // 'from:to:subject:date',
);
$signer->PRINT($message);
$signer->CLOSE;
print $signer->signature->as_string, "\r\n", $message;
