"""jitaku and Dovecot side by side for the IMAP benches (imap_sync, imap_concurrent): the same users with the
same password hash, and the same messages in the same mailboxes, loaded before any clock starts.

jitaku runs from a fresh `jitaku init` directory with IMAP on a free port and every other listener off (a bench
must not collide with a jitaku already running on the defaults) and the health monitor off. Dovecot is tests/peers.py's,
Maildir owned by nobody (so the benches run as root); its passwd-file holds jitaku's own argon2id hashes, so a
login costs both servers the same hash.
"""

from __future__ import annotations

import os
import pwd
import random
import subprocess
import sys
from email.header import Header
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smtp_accept import set_toml_keys  # noqa: E402

from jitaku import passwords  # noqa: E402
from jitaku.store import Database, accounts, mailstore  # noqa: E402
from tests.peers import Dovecot, free_port, wait_for_port  # noqa: E402

JITAKU = [sys.executable, "-m", "jitaku"]
PASSWORD = "secret-password"
WORDS = "the of and to in is you that it he was for on are as with his they at be this have from".split()
Mailboxes = dict[str, list[bytes]]  # mailbox name (INBOX, Archive...) -> its messages in UID order


def message(number: int, to: str = "alice@example.test") -> bytes:
    """About 4 KiB of mail; every fifth one Japanese, in ISO-2022-JP, subject and body."""
    rng = random.Random(number)
    if number % 5 == 0:
        subject = Header(f"会議の件 その{number}", "iso-2022-jp").encode()
        body = ("明日の会議は十時からです。資料を確認してください。\r\n" * 40).encode("iso-2022-jp")
        charset = "ISO-2022-JP"
    else:
        subject = " ".join(rng.choice(WORDS) for _ in range(6))
        body = "\r\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(60)).encode() + b"\r\n"
        charset = "us-ascii"
    return (
        f"From: Sender {number % 97} <sender{number % 97}@example.net>\r\nTo: {to}\r\n"
        f"Subject: {subject}\r\nDate: Wed, 25 Nov 2026 10:{number % 60:02d}:00 +0900\r\n"
        f"Message-ID: <{number}@example.net>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
    ).encode() + body


def start_jitaku(data: Path, users: dict[str, Mailboxes], workers: int = 1) -> tuple[subprocess.Popen[bytes], int]:
    """`jitaku serve` in DATA with USERS and their messages, IMAP in WORKERS processes; returns it once its
    IMAP port answers."""
    subprocess.run([*JITAKU, "init", "--domain", "example.test", "--dir", str(data)], check=True, capture_output=True)
    config = data / "jitaku.toml"
    port = free_port()
    off = {"listen": "[]"}  # a running jitaku has the default ports; only IMAP is measured
    listeners = {name: off for name in ("smtp", "submission", "submissions", "imaps", "pop3", "pop3s", "web")}
    config.write_text(
        set_toml_keys(
            config.read_text(),
            {
                **listeners,
                "imap": {"listen": f'["127.0.0.1:{port}"]', "workers": str(workers)},
                "health": {"enabled": "false"},
            },
        )
    )
    database = Database(f"sqlite:///{data / 'jitaku.db'}")
    hashed = passwords.hash_password(PASSWORD)
    for user, boxes in users.items():
        with database.transaction() as connection:
            accounts.add_user(connection, user, hashed)
            for name, bodies in boxes.items():
                for body in bodies:
                    mailstore.append(connection, user, body, name)
    database.close()
    process = subprocess.Popen(
        [*JITAKU, "serve", "--dir", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for_port(port)
    return process, port


def password_hash(data: Path, user: str) -> str:
    """USER's argon2id hash as jitaku stored it."""
    database = Database(f"sqlite:///{data / 'jitaku.db'}")
    try:
        found = database.query_now(lambda statements: accounts.find_user(statements, user))
    finally:
        database.close()
    if found is None or found.password_hash is None:
        raise SystemExit(f"jitaku has no password for {user}")
    return found.password_hash


def start_dovecot(users: dict[str, Mailboxes], hashes: dict[str, str] | None = None) -> Dovecot:
    """Dovecot with USERS (their passwords plain, or HASHES: argon2id as jitaku stores them) and their
    messages, in Maildir++ (INBOX at the top, other mailboxes in dot-folders)."""
    dovecot = Dovecot({user: "{ARGON2ID}" + hashes[user] if hashes else "{PLAIN}" + PASSWORD for user in users})
    nobody = pwd.getpwnam("nobody")
    for user, boxes in users.items():
        home = dovecot.dir / "mail" / user
        for name, bodies in boxes.items():
            folder = home if name == mailstore.INBOX else home / f".{name}"
            for part in ("cur", "new", "tmp"):
                (folder / part).mkdir(parents=True, exist_ok=True)
            for number, body in enumerate(bodies, 1):
                (folder / "cur" / f"{1700000000 + number}.{number}.bench:2,").write_bytes(body)
        for name, _use in mailstore.SPECIAL_FOLDERS:  # the folders every jitaku user has
            for part in ("cur", "new", "tmp"):
                (home / f".{name}" / part).mkdir(parents=True, exist_ok=True)
        for path in [home, *home.rglob("*")]:
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
    return dovecot
