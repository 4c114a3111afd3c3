"""`jitaku backup` of a store on a managed PostgreSQL cluster (issue 26): a snapshot taken while mail arrives holds
pg_dump's copy of one instant, restores into a directory whose cluster is made and loaded from it, which
`jitaku serve` starts from and serves over IMAP; the restore works beside the original's running cluster too, and
`verify` loads the snapshot into a cluster of its own while the original runs.

The tests run as root (CI does): the clusters run as `postgres`, who must reach the data directories, hence
shared_dir, as in test_managed_postgres.py, whose leftover-cluster guard runs here too."""

from __future__ import annotations

import email
import imaplib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import READER, Jitaku, deliver
from tests.integration.test_backup import PASSWORD, SNAPSHOT, backed_up_while_mail_arrives
from tests.integration.test_managed_postgres import no_cluster_left as no_cluster_left
from tests.integration.test_managed_postgres import postmaster
from tests.peers import Zone, free_port, wait_for_port
from tests.postgres import server as postgres_server

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs PostgreSQL as another user: needs root (CI is)")


@pytest.fixture
def box(jitaku_factory: Any, shared_dir: Path, tmp_path: Path, dns_zone: tuple[Zone, int]) -> tuple[Jitaku, int]:
    """A jitaku on a managed cluster of its own port, with alice, whose [backup] target is a new repository."""
    zone, dns_port = dns_zone
    zone.add("remote.test. 300 IN SOA ns.remote.test. hostmaster.remote.test. 1 60 60 60 300")
    server: Jitaku = jitaku_factory(dns_port, where=shared_dir)
    port = free_port()
    server.settings["database"] = {"listen": [f"127.0.0.1:{port}"]}
    server.settings["backup"] = {"target": str(tmp_path / "repo"), "every": 0}  # each backup taken by hand
    server.write_config()
    server.cli("init", "--database", "postgresql")
    server.add_user(READER)
    server.cli("backup", "init", "--same-disk")
    return server, port


def test_a_backup_taken_while_mail_arrives_restores_into_a_cluster_that_serve_starts_from(
    box: tuple[Jitaku, int], jitaku_factory: Any, shared_dir: Path
) -> None:
    server, port = box
    server.start()
    snapshot, before, acknowledged = backed_up_while_mail_arrives(server, first=10, after=3)
    [listed] = [item for item in json.loads(server.cli("backup", "list", "--json").stdout) if item["id"] == snapshot]
    assert before <= listed["messages"] < len(acknowledged)
    server.stop()
    assert postmaster(server) is None

    restored: Jitaku = jitaku_factory(name="restored", where=shared_dir)
    (restored.dir / "jitaku.toml").unlink()  # an empty directory, which restore takes
    said = server.cli("backup", "restore", snapshot, "--to", str(restored.dir)).stdout
    assert f"restored snapshot {snapshot} into {restored.dir}: {listed['messages']} messages" in said
    assert (restored.dir / "jitaku.toml").read_text() == (server.dir / "jitaku.toml").read_text()
    assert (restored.dir / "postgres" / "PG_VERSION").exists() and postmaster(restored) is None  # loaded, stopped
    for name in ("postgres.dump", "backup.json", "jitaku.db", "backup"):
        assert not (restored.dir / name).exists(), name
    assert not list(shared_dir.glob(".restored.restoring-*"))

    restored.start()
    wait_for_port(restored.imap_port)
    subjects = _subjects(restored)
    # every message acknowledged before the backup began, none missing before the snapshot's newest and none
    # that was never acknowledged: the counts and the dump are of the same instant
    assert subjects == list(range(listed["messages"]))
    restored.stop()
    assert postmaster(restored) is None

    server.start()  # the original again, its cluster on the port the restored jitaku.toml names too
    verified = server.cli("backup", "verify")
    assert f"snapshot {snapshot} verified" in verified.stdout and f"{listed['messages']} messages" in verified.stdout
    assert not list((server.dir / "backup").glob("verify-*"))

    beside = shared_dir / "beside"  # restored while the original's cluster holds the port: loaded on another
    said = server.cli("backup", "restore", snapshot, "--to", str(beside)).stdout
    assert f"restored snapshot {snapshot} into {beside}" in said
    assert f"127.0.0.1:{port}" in (beside / "jitaku.toml").read_text()
    assert (beside / "postgres" / "PG_VERSION").exists() and not (beside / "postgres" / "postmaster.pid").exists()
    assert _subjects(server)[: listed["messages"]] == list(range(listed["messages"]))  # the original served on


def test_a_store_on_another_server_restores_as_its_dump_and_verifies_in_a_cluster_of_its_own(
    jitaku_factory: Any, shared_dir: Path, tmp_path: Path
) -> None:
    """`[database] url` on a server jitaku does not run (the tests' own): the dump comes back beside jitaku.toml
    with the command that loads it, and verify loads it into a cluster made for the drill, removed after."""
    url = postgres_server().over_socket(postgres_server().database())
    try:
        box: Jitaku = jitaku_factory(name="external", where=shared_dir)
        box.settings["database"] = {"url": url}
        box.settings["backup"] = {"target": str(tmp_path / "repo"), "every": 0}
        box.write_config()
        box.cli("init")
        box.add_user(READER)
        box.cli("backup", "init", "--same-disk")
        box.start()
        deliver(box, "one", "two")
        snapshot = box.cli("backup", "now").stdout.split(":")[0].removeprefix(SNAPSHOT)
        box.stop()

        to = shared_dir / "copy"
        said = box.cli("backup", "restore", snapshot, "--to", str(to)).stdout
        assert "2 messages" in said and "--no-owner --no-acl '--dbname=" in said and f"{to}/postgres.dump" in said
        assert (to / "postgres.dump").read_bytes().startswith(b"PGDMP") and not (to / "postgres").exists()

        verified = box.cli("backup", "verify")
        assert f"snapshot {snapshot} verified" in verified.stdout and "2 messages" in verified.stdout
        assert not list((box.dir / "backup").glob("verify-*"))
    finally:
        postgres_server().drop(url)


def _subjects(server: Jitaku) -> list[int]:
    """The numbers in the subjects of READER's INBOX, over IMAP, sorted."""
    with imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10) as imap:
        imap.login(READER, PASSWORD)
        status, _ = imap.select("INBOX")
        assert status == "OK"
        status, fetched = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert status == "OK"
    return sorted(int(email.message_from_bytes(part[1])["Subject"]) for part in fetched if isinstance(part, tuple))
