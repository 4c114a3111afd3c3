"""`jitaku init`: create what a data directory lacks and say which DNS records to publish."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from jitaku import config as config_module
from jitaku.config import Config
from jitaku.mail import dkim
from jitaku.store import Database
from jitaku.tls import ensure_self_signed

TEMPLATE = """\
# jitaku configuration. Every key but `domains` has a default; delete what you do not need.
# Reference: the README. Restart `jitaku serve` after editing.

hostname = "{hostname}"          # the name we greet with; publish an A record and ask for a PTR
domains = ["{domain}"]

[smtp]                           # the MX: strangers deliver mail for your domains here
listen = [{smtp}]
max_message_size = 26214400      # bytes (SIZE, RFC 1870)
max_header_size = 262144         # bytes of a message's header section; a larger one is refused
max_header_fields = 1000         # fields in a message's header section
max_connections_per_ip = 50      # open connections from one address; every listener section below takes
max_connections = 1000           # these two (default 50 and 1,000), counted per process

[submission]                     # your own mail programs send here (AUTH required; STARTTLS)
listen = [{submission}]

[submissions]                    # submission over implicit TLS (RFC 8314)
listen = [{submissions}]

[imap]                           # mail programs read mail here (STARTTLS; passwords only over TLS off loopback)
listen = [{imap}]

[imaps]                          # IMAP over implicit TLS
listen = [{imaps}]

[pop3]                           # mail programs fetch mail here (STLS; passwords only over TLS off loopback)
listen = [{pop3}]

[pop3s]                          # POP3 over implicit TLS
listen = [{pop3s}]

[web]
listen = [{web}]
url = ""                         # how the world reaches these pages (list unsubscribe links); empty: https://HOSTNAME
header_timeout = 20              # seconds a client has to send a request's head
idle_timeout = 60                # seconds a request's body may stall

# [relay]                        # absent: deliver straight to each domain's MX
# host = "auth.gate-on.net"      # e.g. MyDNS's relay when your ISP blocks outbound port 25
# port = 587
# username = "..."               # SASL (PLAIN, LOGIN, CRAM-MD5); leave out for an IP-authenticated relay
# password = "..."

[delivery]
port = 25                        # the port used on remote MX hosts

[dns]
nameservers = []                 # empty: the system resolver; e.g. ["127.0.0.1:5353"]

[queue]
retry_min = 300                  # seconds before the first retry; doubles up to retry_max
retry_max = 3600
max_age = 432000                 # give up and bounce after five days

[dkim]
selector = "jitaku"
ed25519 = false                  # also sign with Ed25519 (RFC 8463), selector SELECTORe

[database]
url = ""                         # empty: jitaku.db in this directory; or postgresql://...

# [public_ip]                    # where the dynamic DNS updater learns our address
# sources = ["https://api.ipify.org", "https://ifconfig.me/ip", "https://icanhazip.com"]
# interval = 60                  # seconds between checks

# [[ddns]]                       # one table per name kept pointing at us
# provider = "mydns"             # mydns | dyndns2 | cloudflare
# name = "example.org"
# username = "mydns123456"       # MyDNS master ID / DynDNS2 user
# password_file = "mydns.secret" # a file of its own, 0600 (or password = "...")
# ipv6 = false

[health]
enabled = true
interval = 60                    # seconds between check rounds; [health.NAME] interval for one check
# [health.raid]
# mdstat = "/proc/mdstat"
# [health.smart]
# smartctl = "smartctl"          # Debian: apt install smartmontools
# devices = []                   # empty: what `smartctl --scan` finds
# [health.diskage]
# service_life_hours = 17520     # two years of 24x7

[alerts]                         # a channel that works when our own mail does not
urls = []                        # apprise URLs: "ntfys://ntfy.sh/TOPIC", "tgram://TOKEN/CHAT", "json://host/path"
# heartbeat_url = ""             # a healthchecks.io-style URL pinged every heartbeat_interval seconds
# language = "en"                # or "ja"
"""


@dataclass(frozen=True)
class DnsRecord:
    name: str
    type: str
    value: str

    def zone_line(self) -> str:
        value = f'"{self.value}"' if self.type == "TXT" else self.value
        return (
            f"{self.name}.\tIN\t{self.type}\t{value}"
            if not self.name.startswith("<")
            else f"{self.name}\t{self.type}\t{value}"
        )


def _listen(addresses: list[str]) -> str:
    return ", ".join(f'"{a}"' for a in addresses)


def write_config(data_dir: Path, domain: str, hostname: str | None, public: bool) -> Path:
    path = data_dir / config_module.CONFIG_NAME
    text = TEMPLATE.format(
        hostname=hostname or f"mail.{domain}",
        domain=domain,
        smtp=_listen(["0.0.0.0:25"] if public else ["127.0.0.1:2525"]),
        submission=_listen(["0.0.0.0:587"] if public else ["127.0.0.1:2587"]),
        submissions=_listen(["0.0.0.0:465"] if public else []),
        imap=_listen(["0.0.0.0:143"] if public else ["127.0.0.1:2143"]),
        imaps=_listen(["0.0.0.0:993"] if public else []),
        pop3=_listen(["0.0.0.0:110"] if public else ["127.0.0.1:2110"]),
        pop3s=_listen(["0.0.0.0:995"] if public else []),
        web=_listen(["0.0.0.0:443", "0.0.0.0:80"] if public else ["127.0.0.1:8025"]),
    )
    config_module.parse(text, path)  # the template must always be valid
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # never overwrite; 0600 because a relay password may be added to it
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    return path


def complete(config: Config) -> list[str]:
    """Create the database, DKIM keys and TLS certificate if missing; return what was made."""
    settings = config.settings
    made = []
    Database(config.database_url).close()
    database_file = config.data_dir / "jitaku.db"
    if not settings.database.url and database_file.exists():
        database_file.chmod(0o600)  # it holds password hashes and everyone's mail
    made.append(f"database {config.database_url}")
    for domain in settings.domains:
        for path in dkim.ensure_keys(config.dkim_dir, domain, settings.dkim.selector, settings.dkim.ed25519):
            made.append(f"DKIM key {path}")
    if ensure_self_signed(config.tls_dir, settings.mail_hostname):
        made.append(f"self-signed TLS certificate {config.tls_dir / 'cert.pem'}")
    return made


def dkim_records(config: Config, domain: str | None = None) -> list[DnsRecord]:
    settings = config.settings
    records = []
    for name in [domain] if domain else list(settings.domains):
        for key in dkim.load_keys(config.dkim_dir, name, settings.dkim.selector, settings.dkim.ed25519):
            records.append(DnsRecord(key.record_name, "TXT", key.record_value()))
    return records


def dns_records(config: Config) -> list[DnsRecord]:
    """What to publish, Mail-in-a-Box style: MX, SPF, DKIM, DMARC per domain, and the host's A/PTR."""
    settings = config.settings
    host = settings.mail_hostname
    records = [DnsRecord(host, "A", "<your public IPv4 address>")]
    for domain in settings.domains:
        records.append(DnsRecord(domain, "MX", f"10 {host}."))
        records.append(DnsRecord(domain, "TXT", "v=spf1 mx -all"))
        records.extend(dkim_records(config, domain))
        records.append(DnsRecord(f"_dmarc.{domain}", "TXT", f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}"))
    records.append(DnsRecord("<your public IPv4 address>", "PTR", f"{host}.  (ask your ISP to set this)"))
    return records
