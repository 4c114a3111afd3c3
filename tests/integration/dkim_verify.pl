#!/usr/bin/perl
# Independent DKIM check (Perl Mail::DKIM, not dkimpy): verify a message read from
# standard input, asking the DNS server on 127.0.0.1:PORT for keys.
# Prints one line per signature: "DOMAIN ALGORITHM RESULT", then "result=RESULT".
use strict;
use warnings;
use Mail::DKIM::Verifier;
use Mail::DKIM::DNS;
use Net::DNS::Resolver;

my ($port) = @ARGV;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(nameservers => ['127.0.0.1'], port => $port, recurse => 1));
my $dkim = Mail::DKIM::Verifier->new();
binmode STDIN;
while (my $line = <STDIN>) {
    $line =~ s/\r?\n\z/\r\n/;
    $dkim->PRINT($line);
}
$dkim->CLOSE;
foreach my $signature ($dkim->signatures) {
    printf "%s %s %s\n", $signature->domain, $signature->algorithm, $signature->result_detail;
}
printf "result=%s\n", $dkim->result;
