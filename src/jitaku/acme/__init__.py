"""Certificates by ACME (RFC 8555) for every listener (issue 25), through certbot's `acme` package.

On when `[acme] email` is set. A certificate is ordered for `Settings.acme_names`, proven by HTTP-01 (a token file
in DIR/acme/http-01 that the web serves on every plain-HTTP port) or DNS-01 (a TXT record set through the
Cloudflare API of a `[[ddns]]` table), and written as tls/cert.pem and tls/key.pem: every listener's new handshakes
get it within seconds (jitaku.tls_reload), and the standby gets it through the database with the account key
DIR/acme/account.json (jitaku.ha.secret_files). What the attempts came to is DIR/acme/state.json (state.py).
"""
