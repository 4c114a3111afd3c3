"""DIR/ports.json: where each listener of the running daemon listens, those given as "host:0" with the port
the kernel gave them, as {listener name: ["host:port", ...]}; an IPv6 wildcard that a host
without IPv6 could not bind is not there.

`jitaku serve` removes the file before it binds anything, writes it whole (renamed into place) once every
listener is bound and before any worker forks, and removes it when it stops: a file that is there was
written by the daemon of this data directory, never by an earlier run (but for one killed with -9, whose
file names ports nobody listens on any more, as a health check then says).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from jitaku.config import Config, Listen, parse_listen

# The web's ports that mean something: 443 speaks HTTPS (every other port plain HTTP), and 80 goes over to HTTPS
# once a real certificate is served (web/https.py)
HTTPS_PORT = 443
HTTP_PORT = 80

NAME = "ports.json"
MODE = 0o644  # nothing secret: which ports we listen on (the data directory keeps others out anyway)

# Each listener's name (here, in logs and in connection limits) and the config section listing its addresses.
SECTIONS = {
    "mx": "smtp",
    "submission": "submission",
    "submissions": "submissions",
    "imap": "imap",
    "imaps": "imaps",
    "pop3": "pop3",
    "pop3s": "pop3s",
    "web": "web",
}

Listening = dict[str, tuple[Listen, ...]]


def forget(data_dir: Path) -> None:
    (data_dir / NAME).unlink(missing_ok=True)


def record(data_dir: Path, listening: Listening) -> None:
    """Write LISTENING to DIR/ports.json whole: a reader sees the old file or the new one, never a part."""
    text = json.dumps({name: [str(address) for address in addresses] for name, addresses in listening.items()})
    partial = data_dir / f"{NAME}.{os.getpid()}"
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, MODE)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        os.fchmod(descriptor, MODE)  # whatever the umask
        file.write(text + "\n")
    os.replace(partial, data_dir / NAME)


def read(data_dir: Path) -> Listening | None:
    """What DIR/ports.json says; None without one (no daemon runs)."""
    try:
        text = (data_dir / NAME).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return {
        name: tuple(parse_listen(address, any_port=True) for address in addresses)
        for name, addresses in json.loads(text).items()
    }


def listening_on(config: Config, listening: Listening) -> Config:
    """CONFIG with each listener's addresses as LISTENING has them: a port 0 as the kernel gave it, and without
    an IPv6 wildcard left out on a host without IPv6. What reads the settings later (the services and
    certificate checks, the status page) then reaches each listener where it is, and only where it is."""
    settings = config.settings
    changes = {}
    for name, section in SECTIONS.items():
        listener = getattr(settings, section)
        if name in listening and listening[name] != listener.listen:
            changes[section] = listener.model_copy(update={"listen": listening[name]})
    return dataclasses.replace(config, settings=settings.model_copy(update=changes)) if changes else config


def running(config: Config) -> Config:
    """CONFIG as the daemon running on its data directory listens (for the CLI's checks)."""
    listening = read(config.data_dir)
    return config if listening is None else listening_on(config, listening)
