"""POST /api/ha/state and /api/ha/fence on a box with an SQLite store (always a primary): what a signed request
gets, what any other gets, and that a fence is written before it is acknowledged. The same on a managed
PostgreSQL pair: tests/integration/test_ha_peer.py."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from jitaku.config import Config, parse
from jitaku.ha import box, fence, peer
from jitaku.ha.standby import secret_path
from jitaku.web import ha
from jitaku.web.read_only import read_only

SECRET = "the-pair-secret-0123456789abcdefghij"
FENCE = {"purpose": "failover", "by": "two.lan", "rejoin": None}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    settings = parse('domains = ["example.org"]\n[web]\nlisten = ["0.0.0.0:8080"]\n', tmp_path / "jitaku.toml")
    (tmp_path / "ha").mkdir(mode=0o700)
    secret_path(Config(settings, tmp_path)).write_text(SECRET + "\n")
    return Config(settings, tmp_path)


class Fenced:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


@pytest.fixture
def told() -> Fenced:
    return Fenced()


def client_of(config: Config, on_fence: Any, standby: bool = False) -> Iterator[TestClient]:
    app = Starlette(routes=ha.routes(config, on_fence, standby))
    with TestClient(read_only(app) if standby else app, client=("192.168.1.11", 50000)) as client:
        yield client


@pytest.fixture
def client(config: Config, told: Fenced) -> Iterator[TestClient]:
    yield from client_of(config, told)


def post(client: TestClient, path: str, fields: dict[str, Any], secret: str = SECRET, **overrides: Any) -> Any:
    body = json.dumps({"at": time.time(), **fields}).encode()
    signature = overrides.pop("signature", peer.sign(secret, body))
    answer = client.post(path, content=overrides.pop("body", body), headers={peer.HEADER: signature})
    if 200 <= answer.status_code < 300:  # the answer proves it comes from a box with the secret
        assert answer.headers[peer.HEADER] == peer.sign_answer(SECRET, signature, answer.content)
    return answer


def test_a_signed_state_request_is_answered_with_how_this_box_stands(client: TestClient, config: Config) -> None:
    answer = post(client, "/api/ha/state", {})
    assert answer.status_code == 200
    found = answer.json()
    assert found["role"] == "primary" and found["fenced"] is False and found["cluster"] == "running"
    assert found["timeline"] is None and found["lsn"] is None and found["checkpoint"] is None and found["name"]
    assert found["waiting"] is False
    assert found["box"] == box.box_id(config)  # a box that asks itself knows it is not its peer


def test_a_primary_waiting_for_its_peer_after_a_cold_start_says_so_in_its_state(config: Config) -> None:
    """Not an unfenced primary as any other: whoever asks (the peer, a failover) sees that it takes nothing yet."""
    app = Starlette(routes=ha.routes(config, None, True, waiting=True))
    with TestClient(read_only(app), client=("192.168.1.11", 50000)) as client:
        found = post(client, "/api/ha/state", {}).json()
    assert (found["role"], found["fenced"], found["waiting"]) == ("primary", False, True)


def test_a_wrong_or_missing_signature_an_old_request_or_no_secret_is_403(
    client: TestClient, config: Config, told: Fenced, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jitaku")
    for path in ("/api/ha/state", "/api/ha/fence"):
        assert post(client, path, FENCE, secret="not-the-secret").status_code == 403
        assert post(client, path, FENCE, signature="").status_code == 403
        assert post(client, path, {**FENCE, "at": time.time() - 120}).status_code == 403
    secret_path(config).unlink()
    assert post(client, "/api/ha/state", {}, secret="").status_code == 403
    assert fence.read(config) is None and told.calls == 0
    assert "event=ha_request_refused" in caplog.text and SECRET not in caplog.text


def test_a_body_over_4096_bytes_is_413(client: TestClient, config: Config) -> None:
    answer = post(client, "/api/ha/fence", {**FENCE, "by": "x" * 5000})
    assert answer.status_code == 413
    assert fence.read(config) is None


def test_a_fence_is_written_then_the_daemon_told_then_202(client: TestClient, config: Config, told: Fenced) -> None:
    answer = post(client, "/api/ha/fence", {"purpose": "switchover", "by": "two.lan", "rejoin": "192.168.1.11:5433"})
    assert answer.status_code == 202 and answer.json() == {"fenced": True, "lsn": None}  # SQLite: no WAL
    written = fence.read(config)
    assert written is not None
    assert (written.purpose, written.by, written.rejoin) == ("switchover", "two.lan", "192.168.1.11:5433")
    assert fence.path(config).stat().st_mode & 0o777 == 0o600
    assert told.calls == 1
    assert peer.peer_url(config) == "http://192.168.1.11:8080"  # the box that fenced us is our peer


def test_fenced_already_is_202_for_the_same_purpose_and_409_for_another(
    client: TestClient, config: Config, told: Fenced
) -> None:
    assert post(client, "/api/ha/fence", FENCE).status_code == 202
    assert post(client, "/api/ha/fence", FENCE).status_code == 202  # a retried failover does not fail
    other = post(client, "/api/ha/fence", {**FENCE, "purpose": "switchover"})
    assert other.status_code == 409 and "fenced already" in other.json()["error"]
    assert told.calls == 1
    state = post(client, "/api/ha/state", {}).json()
    assert state["fenced"] is True and state["cluster"] == "running"


def test_the_state_of_a_stopped_cluster_is_the_fences(client: TestClient, config: Config) -> None:
    fence.write(config, fence.Fence("switchover", "two.lan", time.time(), "h:5433", "0/3000028", "stopped"))
    state = post(client, "/api/ha/state", {}).json()
    assert (state["cluster"], state["checkpoint"], state["lsn"], state["fenced"]) == (
        "stopped",
        "0/3000028",
        "0/3000028",
        True,
    )


def test_a_fence_that_is_not_one_is_400_and_writes_nothing(client: TestClient, config: Config) -> None:
    for wrong in ({"purpose": "split-brain"}, {"by": ""}, {"by": "a\nb"}, {"rejoin": "nohost"}, {"rejoin": 5}):
        assert post(client, "/api/ha/fence", {**FENCE, **wrong}).status_code == 400
    assert fence.read(config) is None


def test_without_the_daemon_to_tell_a_fence_is_503_and_writes_nothing(config: Config) -> None:
    for client in client_of(config, None):
        answer = post(client, "/api/ha/fence", FENCE)
        assert answer.status_code == 503 and "fencing not available" in answer.json()["error"]
    assert fence.read(config) is None


def test_a_standby_s_read_only_web_answers_both(config: Config, told: Fenced) -> None:
    for client in client_of(config, told, standby=True):
        assert post(client, "/api/ha/state", {}).status_code == 200
        assert post(client, "/api/ha/fence", FENCE).status_code == 202  # SQLite: the store says primary


def test_a_failure_is_one_line_never_a_traceback(
    client: TestClient, config: Config, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> None:
        raise PermissionError(13, "Permission denied")

    caplog.set_level(logging.INFO, logger="jitaku")
    monkeypatch.setattr(fence, "write", broken)
    body = json.dumps({"at": time.time(), **FENCE}).encode()
    answer = client.post("/api/ha/fence", content=body, headers={peer.HEADER: peer.sign(SECRET, body)})
    assert answer.status_code == 500 and answer.json() == {"error": "this box failed to answer; see its log"}
    assert "event=ha_request_failed" in caplog.text and "Traceback" not in caplog.text


def test_a_fence_sent_by_this_box_itself_is_409_and_fences_nothing(
    client: TestClient, config: Config, told: Fenced
) -> None:
    ours = box.box_id(config)
    assert box.box_id(config) == ours  # made once
    assert (config.data_dir / "ha" / "box_id").stat().st_mode & 0o777 == 0o600
    answer = post(client, "/api/ha/fence", {**FENCE, "by": ours})
    assert answer.status_code == 409 and "this box itself" in answer.json()["error"]
    assert f"{config.data_dir}/ha/box_id" in answer.json()["error"]  # the likely cause: a copied data directory
    assert "run `jitaku standby setup` on the standby" in answer.json()["error"]
    assert fence.read(config) is None and told.calls == 0
    renewed = box.renew(config)  # what `jitaku standby setup` does
    assert renewed != ours and box.box_id(config) == renewed
    assert post(client, "/api/ha/fence", {**FENCE, "by": ours}).status_code == 202  # from the box it was cloned from


def test_a_fence_replayed_within_the_minute_is_refused(client: TestClient, config: Config, told: Fenced) -> None:
    body = json.dumps({"at": time.time(), **FENCE}).encode()
    headers = {peer.HEADER: peer.sign(SECRET, body)}
    assert client.post("/api/ha/fence", content=body, headers=headers).status_code == 202
    fence.clear(config)  # re-joined meanwhile: the recorded fence must not fence it again
    assert client.post("/api/ha/fence", content=body, headers=headers).status_code == 403
    assert fence.read(config) is None and told.calls == 1


def test_the_202_comes_once_the_daemon_stopped_taking_mail_and_says_the_wal_position_then(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[str] = []

    async def stopping() -> None:
        steps.append("told")
        await asyncio.sleep(0.2)  # the listeners close, the address goes
        steps.append("stopped")

    def database(_config: Config) -> dict[str, Any]:
        steps.append("lsn read")
        return {"role": "primary", "timeline": 1, "lsn": "0/5000080"}

    monkeypatch.setattr(ha, "_database", database)
    for client in client_of(config, stopping):
        answer = post(client, "/api/ha/fence", FENCE)
        steps.append(str(answer.status_code))
        assert answer.json() == {"fenced": True, "lsn": "0/5000080"}
    assert steps == ["told", "stopped", "lsn read", "202"]
    assert fence.read(config) is not None


def test_a_fenced_box_s_state_asks_whether_its_cluster_runs_and_says_why_a_re_join_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, told: Fenced
) -> None:
    from jitaku.ha import cluster, rejoin

    text = 'domains = ["example.org"]\n[web]\nlisten = ["0.0.0.0:8080"]\n[database]\nmanaged = true\nlisten = ["127.0.0.1:1"]\n'
    config = Config(parse(text, tmp_path / "jitaku.toml"), tmp_path)
    (tmp_path / "ha").mkdir(mode=0o700)
    secret_path(config).write_text(SECRET + "\n")
    fence.write(config, fence.Fence("switchover", "two", 1.0, "192.0.2.2:5433", "0/3000028", "stopped"))
    rejoin._failed(config, "the cluster was not shut down cleanly")
    monkeypatch.setattr(cluster, "running", lambda _config: 4242)  # started again, whatever the fence says
    for client in client_of(config, told):
        state = post(client, "/api/ha/state", {}).json()
        assert state["cluster"] != "stopped" and state["fenced"] is True
        assert state["error"] == "the cluster was not shut down cleanly"
        monkeypatch.setattr(cluster, "running", lambda _config: None)
        state = post(client, "/api/ha/state", {}).json()
        assert (state["cluster"], state["checkpoint"]) == ("stopped", "0/3000028")


class Cluster:
    """A primary's PostgreSQL as _database asks it: in recovery or not, pg_stat_replication's rows as the query
    gives them (application_name, sync_state, state, bytes not yet flushed there, its flush position), at each
    look in turn (the last one again), and synchronous_standby_names."""

    def __init__(self, recovery: bool, looks: list[list[tuple[object, ...]]], setting: str = "") -> None:
        self.recovery, self.looks, self.setting = recovery, list(looks), setting
        self._rows: list[tuple[object, ...]] = [(None,)]

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, query: str) -> Cluster:
        if "pg_is_in_recovery" in query:
            self._rows = [(self.recovery,)]
        elif "pg_stat_replication" in query:
            self._rows = self.looks.pop(0) if len(self.looks) > 1 else list(self.looks[0])
        elif "synchronous_standby_names" in query:
            self._rows = [(self.setting,)]
        else:
            self._rows = [("0/5000080",)]
        return self

    def fetchone(self) -> tuple[object, ...]:
        return self._rows[0]

    def fetchall(self) -> list[tuple[object, ...]]:
        return self._rows


FIRST_LOOK: list[tuple[object, ...]] = [
    ("two", "sync", "streaming", 0, 5000),  # all flushed
    ("three", "potential", "streaming", 0, 5000),
    ("four", "async", "streaming", 0, 5000),
    ("five", "quorum", "streaming", 0, 5000),  # ANY k of n: this one may lack what the others acknowledged
    ("six", "sync", "streaming", 8192, 4000),  # behind, and it flushes on: it keeps up
    ("seven", "sync", "streaming", 8192, 4000),  # its flush position stands still: the primary is timing it out
    ("eight", "sync", "catchup", 0, 5000),
]
SECOND_LOOK = [(*row[:4], 9000) if row[0] == "six" else row for row in FIRST_LOOK]
REPLICATION = [FIRST_LOOK, SECOND_LOOK]


def test_the_state_names_a_primary_s_synchronous_standbys_that_keep_up_and_none_on_a_standby_sqlite_or_when_fenced(
    client: TestClient, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jitaku.ha import role

    setting = 'FIRST 1 ("two", "six", "seven", "eight")'
    assert post(client, "/api/ha/state", {}).json()["synchronous"] == []  # SQLite: no standby
    monkeypatch.setattr(role, "postgresql", lambda _config: True)
    monkeypatch.setattr(ha, "PROGRESS_WAIT", 0.0)
    monkeypatch.setattr(role, "connect", lambda _config: Cluster(False, REPLICATION, setting))
    assert post(client, "/api/ha/state", {}).json()["synchronous"] == ["six", "two"]
    monkeypatch.setattr(role, "connect", lambda _config: Cluster(False, REPLICATION, 'FIRST 1 ("six")'))
    assert post(client, "/api/ha/state", {}).json()["synchronous"] == ["six"]  # "two": not waited for now
    monkeypatch.setattr(role, "connect", lambda _config: Cluster(False, [FIRST_LOOK], setting))
    assert post(client, "/api/ha/state", {}).json()["synchronous"] == ["two"]  # "six" flushed nothing more
    monkeypatch.setattr(role, "connect", lambda _config: Cluster(True, REPLICATION, setting))
    assert post(client, "/api/ha/state", {}).json()["synchronous"] == []
    monkeypatch.setattr(role, "connect", lambda _config: Cluster(False, REPLICATION, setting))
    fence.write(config, fence.Fence("failover", "two.lan", 1.0))  # it takes no write: nobody is synchronous for it
    assert post(client, "/api/ha/state", {}).json()["synchronous"] == []


def test_a_standby_streaming_synchronously_from_a_real_postgresql_is_named_and_one_left_out_is_not(
    tmp_path: Path,
) -> None:
    """The query's rows as PostgreSQL gives them, from a real walsender: pg_receivewal, flushing and replying as a
    synchronous standby does, under the name "two"."""
    import subprocess

    import psycopg

    from tests import postgres
    from tests.peers import wait_until

    server = postgres.server()
    url = server.over_socket(server.url("postgres"))
    host, port = str(server.base), str(server.port)
    conninfo = f"host={host} port={port} user={postgres.SUPERUSER} application_name=two"
    receiver = subprocess.Popen(
        [str(postgres.binaries() / "pg_receivewal"), "-D", str(tmp_path), "-d", conninfo, "--synchronous", "-n"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with psycopg.connect(url, autocommit=True) as connection:

            def named() -> list[str]:
                rows = connection.execute(ha._REPLICATION).fetchall()
                return ha._keeping_up(connection) if any(row[0] == "two" for row in rows) else ["not streaming"]

            connection.execute("ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 (\"two\")'")
            connection.execute("SELECT pg_reload_conf()")
            wait_until(lambda: named() == ["two"], timeout=30, interval=0.2)
            connection.execute("CREATE TEMPORARY TABLE written AS SELECT 1")  # WAL it must flush, and reply to
            assert named() == ["two"]
            connection.execute("ALTER SYSTEM RESET synchronous_standby_names")
            connection.execute("SELECT pg_reload_conf()")
            wait_until(lambda: named() == [], timeout=30, interval=0.2)  # asynchronous: not named
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("ALTER SYSTEM RESET synchronous_standby_names")
            connection.execute("SELECT pg_reload_conf()")
