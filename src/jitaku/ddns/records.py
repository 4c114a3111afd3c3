"""From a `[[ddns]]` table to a provider ready to call, with its secret read from the config or its own file."""

from __future__ import annotations

import stat
from pathlib import Path

from jitaku.config import ConfigError, DdnsRecord
from jitaku.ddns.providers import Provider
from jitaku.ddns.providers.cloudflare import Cloudflare
from jitaku.ddns.providers.dyndns2 import DynDns2
from jitaku.ddns.providers.mydns import MyDns
from jitaku.domains import organizational_domain


def secret(record: DdnsRecord, data_dir: Path) -> str:
    """The password or token; a password_file must be readable by its owner alone, as jitaku.toml is."""
    if record.password:
        return record.password
    path = data_dir / record.password_file
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"{path}: others may read it; `chmod 600 {path}` ([[ddns]] {record.name} password_file)")
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the password of [[ddns]] {record.name}: {error}") from None


def provider(record: DdnsRecord, password: str) -> Provider:
    """RECORD's provider, logging in with PASSWORD (from `secret`)."""
    if record.provider == "mydns":
        return MyDns(record.username, password, record.endpoint)
    if record.provider == "dyndns2":
        return DynDns2(record.name, record.username, password, record.endpoint)
    return Cloudflare(record.name, record.zone or organizational_domain(record.name), password, record.endpoint)
