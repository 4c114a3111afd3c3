#!/usr/bin/perl
# Independent ARC check (Perl Mail::DKIM::ARC, not dkimpy): validate the ARC chain of a message
# read from standard input, asking the DNS server on 127.0.0.1:PORT for keys.
# Prints "result=RESULT" and "instances=N".
use strict;
use warnings;
use Mail::DKIM::ARC::Verifier;
use Mail::DKIM::DNS;
use Net::DNS::Resolver;

my ($port) = @ARGV;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(nameservers => ['127.0.0.1'], port => $port, recurse => 1));
my $arc = Mail::DKIM::ARC::Verifier->new();
binmode STDIN;
while (my $line = <STDIN>) {
    $line =~ s/\r?\n\z/\r\n/;
    $arc->PRINT($line);
}
$arc->CLOSE;
printf "result=%s\n", $arc->result;
printf "detail=%s\n", ($arc->result_detail // '');
my @seals = grep { ref($_) =~ /Seal/ } $arc->signatures;
printf "instances=%d\n", scalar(@seals);
