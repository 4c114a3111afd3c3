"""A client that is not on loopback, from a network namespace of our own: no AUTH before STARTTLS."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.integration.harness import Jitaku, port_of

HOST, CLIENT = "10.250.0.1", "10.250.0.2"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"jitaku{os.getpid()}"
    try:
        ip("netns", "add", name)
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"cannot make a network namespace here: {error}")
    try:
        ip("link", "add", f"{name}a", "type", "veth", "peer", "name", f"{name}b")
        ip("link", "set", f"{name}b", "netns", name)
        ip("addr", "add", f"{HOST}/30", "dev", f"{name}a")
        ip("link", "set", f"{name}a", "up")
        ip("netns", "exec", name, "ip", "addr", "add", f"{CLIENT}/30", "dev", f"{name}b")
        ip("netns", "exec", name, "ip", "link", "set", f"{name}b", "up")
        ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "link", "del", f"{name}a"], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_auth_needs_starttls_from_a_remote_client(server: Jitaku, namespace: str) -> None:
    server.settings["submission"]["listen"].append(f"{HOST}:0")
    server.write_config()
    server.restart()
    port = port_of(server.listening["submission"][1])

    def swaks_from_outside(*args: str) -> str:
        result = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                namespace,
                "swaks",
                "--suppress-data",
                "--server",
                f"{HOST}:{port}",
                "--to",
                "bob@example.org",
                "--from",
                "alice@example.test",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return result.stdout + result.stderr

    plain = swaks_from_outside(
        "--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", "secret-password"
    )
    assert "250-AUTH" not in plain and "250 AUTH" not in plain, plain
    assert "Host did not advertise authentication" in plain, plain
    # a client that tries anyway is told to encrypt first (RFC 4954 §4: 538)
    dialog = (
        "import socket,sys;s=socket.create_connection((sys.argv[1],int(sys.argv[2])));f=s.makefile('rb');f.readline();"
        "s.sendall(b'EHLO x\\r\\n');l=f.readline()\nwhile l[3:4]==b'-':l=f.readline()\n"
        "s.sendall(b'AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQtcGFzc3dvcmQ=\\r\\n');print(f.readline().decode())"
    )
    forced = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", dialog, HOST, str(port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert forced.stdout.startswith("538 5.7.11"), forced
    assert server.mailbox("bob@example.org") == []
    tls = swaks_from_outside(
        "-tls", "--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", "secret-password"
    )
    assert "235 2.7.0" in tls and "250 2.0.0" in tls, tls
    assert len(server.mailbox("bob@example.org")) == 1
    assert f"client={CLIENT}" in server.log()
