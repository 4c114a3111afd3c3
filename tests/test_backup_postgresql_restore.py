"""The review of backups on PostgreSQL (issue 26), without a server: a dump left in a data directory never stands
for the fresh one, nor makes a SQLite snapshot look like a PostgreSQL one; a dump is 0600 made and restored;
pg_dump and pg_restore are stopped with the daemon; the load is on a free port and says its own failure; a
cluster that could not be stopped keeps its directory; a store on another server is told to be loaded before
serve starts; a new box without the cluster's user is refused before the restore; a restore or verify ended by
SIGTERM runs its clean-up; and the --target cache goes beside TO, and goes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from jitaku.backup import child, postgres, restore
from jitaku.backup.restic import Output, Restic
from jitaku.backup.snapshot import copy_files, running
from jitaku.config import Config, parse
from jitaku.errors import BackupError, ClusterError
from jitaku.store.backup import Counts
from tests.peers import wait_until
from tests.test_backup import _local

EXTERNAL = (
    'domains = ["example.org"]\n[database]\nurl = "postgresql+psycopg://mail:s3cret@db.example.org:6543/jitaku"\n'
)
MANAGED = 'domains = ["example.org"]\n[database]\nmanaged = true\nlisten = ["127.0.0.1:{port}"]\n'
SQLITE = 'domains = ["example.org"]\n'
RECORD = json.dumps({"counts": Counts().as_json()})


class _Snapshot(Restic):
    """A repository whose one snapshot holds FILES; what restore asked of it, in ARGS."""

    def __init__(self, files: dict[str, str]) -> None:
        super().__init__("/nowhere", Path("/nowhere.secret"), None)
        self.files = files
        self.args: list[tuple[str, ...]] = []

    def run(self, *args: str, **options: Any) -> Output:
        self.args.append(args)
        if "--target" not in args:  # unlock, check
            return Output([], [])
        target = Path(args[args.index("--target") + 1])
        for name, text in self.files.items():
            if "--include" not in args or f"/{name}" == args[args.index("--include") + 1]:
                (target / name).write_text(text)
                (target / name).chmod(0o644)
        return Output([], [])


def test_a_dump_and_record_left_in_the_data_dir_are_not_sent_for_the_fresh_ones(tmp_path: Path) -> None:
    data_dir, staging = tmp_path / "data", tmp_path / "staging"
    data_dir.mkdir()
    staging.mkdir()
    (data_dir / "jitaku.toml").write_text(EXTERNAL)
    (data_dir / "postgres.dump").write_text("OLD")  # left by a restore of a store on another server
    (data_dir / "backup.json").write_text("{}")
    (staging / "postgres.dump").write_text("FRESH")  # pg_dump's, made first
    copy_files(data_dir, staging)
    assert (staging / "postgres.dump").read_text() == "FRESH" and not (staging / "backup.json").exists()


def test_a_sqlite_snapshot_with_a_stray_dump_is_verified_by_its_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _local(tmp_path, tmp_path / "repo")
    files = {"jitaku.toml": SQLITE, "jitaku.db": "", "postgres.dump": "OLD", "backup.json": RECORD}
    monkeypatch.setattr(Restic, "run", lambda self, *args, **options: _Snapshot(files).run(*args))
    checked: list[Path] = []
    monkeypatch.setattr(restore, "_checked", lambda path, recorded: checked.append(path) or Counts())
    monkeypatch.setattr(restore, "_drilled", lambda *args: pytest.fail("drilled a stale dump in a cluster"))
    restore.verify(config, "0123abcd")
    assert [path.name for path in checked] == ["jitaku.db"]


def test_a_sqlite_snapshot_with_a_stray_dump_restores_with_no_dump_to_load(tmp_path: Path) -> None:
    files = {"jitaku.toml": SQLITE, "jitaku.db": "", "postgres.dump": "OLD", "backup.json": RECORD}
    restored = restore.restore(_Snapshot(files), "0123abcd", tmp_path / "to")
    assert restored.dump is None and (tmp_path / "to" / "jitaku.db").exists()


def test_a_dump_left_for_a_person_is_readable_by_this_user_alone(tmp_path: Path) -> None:
    to = tmp_path / "to"
    to.mkdir(mode=0o755)  # an existing empty directory, a mount point say
    files = {"jitaku.toml": EXTERNAL, "postgres.dump": "PGDMP", "backup.json": RECORD}
    restored = restore.restore(_Snapshot(files), "0123abcd", to)
    assert restored.dump == to / "postgres.dump"
    assert (to / "postgres.dump").stat().st_mode & 0o777 == 0o600


def test_a_snapshot_whose_cluster_user_is_missing_is_refused_before_it_is_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jitaku.ha import cluster

    monkeypatch.setattr(cluster.os, "geteuid", lambda: 0)  # root, as a service's restore runs
    toml = MANAGED.format(port=5432) + '[run]\nuser = "no-such-jitaku-user"\n'
    repository = _Snapshot({"jitaku.toml": toml, "postgres.dump": "PGDMP", "backup.json": RECORD})
    with pytest.raises(BackupError) as refused:
        restore.restore(repository, "0123abcd", tmp_path / "to")
    said = str(refused.value)
    assert "no-such-jitaku-user" in said and "`adduser --system --group no-such-jitaku-user`" in said
    assert len(repository.args) == 1 and "--include" in repository.args[0]  # the snapshot itself never restored
    assert not (tmp_path / "to").exists() and not list(tmp_path.glob(".to.*"))


def test_pg_dump_for_another_server_is_the_client_package_s_of_its_version_or_newer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for version in ("14", "16"):  # postgresql-client-N: pg_dump, and no pg_ctl
        program = tmp_path / version / "bin" / "pg_dump"
        program.parent.mkdir(parents=True)
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755)
    monkeypatch.setattr(postgres, "CLIENTS", str(tmp_path / "*" / "bin" / "{program}"))
    config = Config(parse(EXTERNAL, tmp_path / "jitaku.toml"), tmp_path)
    assert postgres._pg_dump(config, 15) == str(tmp_path / "16" / "bin" / "pg_dump")
    with pytest.raises(BackupError) as refused:
        postgres._pg_dump(config, 17)
    assert "apt install postgresql-client-17" in str(refused.value)


def test_pg_dump_writes_a_0600_file_and_is_given_the_password_in_its_environment_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Connection:
        def execute(self, sql: str) -> Any:
            answers = {"SHOW server_version_num": "150004", "SELECT pg_export_snapshot()": "00000003-1B-1"}
            return type("Result", (), {"fetchone": lambda self: (answers.get(sql),)})()

        def cursor(self) -> None:
            return None

        def close(self) -> None:
            pass

    ran: list[tuple[list[str], dict[str, str], int]] = []

    def run(command: list[str], environment: dict[str, str], timeout: float, **options: Any) -> child.Ended:
        ran.append((command, environment, (tmp_path / "postgres.dump").stat().st_mode & 0o777))
        return child.Ended(0, "", False, False)

    monkeypatch.setattr(postgres, "driver_for", lambda url: type("D", (), {"connect": lambda self: Connection()})())
    monkeypatch.setattr(postgres, "counts", lambda statements: Counts())
    monkeypatch.setattr(postgres, "_pg_dump", lambda config, server: "/usr/lib/postgresql/15/bin/pg_dump")
    monkeypatch.setattr(child, "run", run)
    os.umask(0o022)
    postgres.dump(Config(parse(EXTERNAL, tmp_path / "jitaku.toml"), tmp_path), tmp_path / "postgres.dump")
    [(command, environment, mode)] = ran
    assert mode == 0o600
    assert "--snapshot=00000003-1B-1" in command and f"--file={tmp_path / 'postgres.dump'}" in command
    assert not any("s3cret" in part for part in command) and environment["PGPASSWORD"] == "s3cret"


def test_a_pg_dump_running_is_killed_when_the_daemon_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(child, "_stopped", threading.Event())  # this test's stop, not the next test's
    failed: list[BaseException] = []

    def dump() -> None:
        try:
            postgres._run(["sleep", "60"], dict(os.environ), "pg_dump")
        except BackupError as error:
            failed.append(error)

    thread = threading.Thread(target=dump)
    began = time.monotonic()
    thread.start()
    wait_until(lambda: child._running, timeout=30)
    child.stop_all()
    thread.join(timeout=30)
    assert not thread.is_alive() and time.monotonic() - began < 30 and failed and not child._running


@pytest.fixture
def loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    """A cluster that is made, started and stopped by nothing: the configs it was asked to make."""
    from jitaku.ha import cluster

    made: list[Config] = []
    monkeypatch.setattr(cluster, "create", lambda config: made.append(config) or [])
    monkeypatch.setattr(cluster, "start", lambda config: None)
    monkeypatch.setattr(cluster, "ensure_database", lambda config: None)
    monkeypatch.setattr(cluster, "binaries", lambda data=None: cluster.Binaries(Path("/bin"), 15))
    return made


def test_a_dump_is_loaded_on_a_free_port_not_the_one_jitaku_toml_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loading: list[Config]
) -> None:
    from jitaku.ha import cluster

    port = postgres.free_port()  # free now: the configured port, which the original may want back meanwhile
    monkeypatch.setattr(cluster, "stop", lambda config: None)
    monkeypatch.setattr(postgres, "_run", lambda *args: None)
    monkeypatch.setattr(postgres, "counts_of", lambda url: Counts())
    settings = parse(MANAGED.format(port=port), tmp_path / "jitaku.toml")
    postgres.load(settings, tmp_path, tmp_path / "postgres.dump")
    [made] = loading
    assert made.settings.database.listen[0].host == "127.0.0.1" and made.settings.database.listen[0].port != port


def test_a_failed_load_says_its_own_failure_not_the_stop_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loading: list[Config]
) -> None:
    from jitaku.ha import cluster

    def stop(config: Config) -> None:
        raise ClusterError("pg_ctl stop failed: the server does not shut down")

    def pg_restore(*args: Any) -> None:
        raise BackupError('pg_restore failed: pg_restore: error: could not execute query: relation "users" exists')

    monkeypatch.setattr(cluster, "stop", stop)
    monkeypatch.setattr(postgres, "_run", pg_restore)
    settings = parse(MANAGED.format(port=5432), tmp_path / "jitaku.toml")
    with pytest.raises(BackupError) as failed:
        postgres.load(settings, tmp_path, tmp_path / "postgres.dump")
    assert str(failed.value).startswith("pg_restore failed:")


def test_a_cluster_that_cannot_be_made_for_an_os_error_is_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jitaku.ha import cluster

    def create(config: Config) -> list[str]:
        raise PermissionError(13, "Permission denied", str(config.data_dir / "postgres.part"))

    monkeypatch.setattr(cluster, "create", create)
    settings = parse(MANAGED.format(port=5432), tmp_path / "jitaku.toml")
    with pytest.raises(BackupError) as failed:
        postgres.load(settings, tmp_path, tmp_path / "postgres.dump")
    assert str(failed.value) == (
        f"cannot load the database into a new PostgreSQL cluster in {tmp_path / 'postgres'}: Permission denied"
        f" ({tmp_path / 'postgres.part'})"
    )


def test_a_left_cluster_whose_postmaster_lives_keeps_its_directory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _local(tmp_path, tmp_path / "repo")
    left = config.data_dir / "backup" / "verify-x1y2"
    (left / "postgres").mkdir(parents=True)
    (left / "postgres" / "PG_VERSION").write_text("15\n")
    # a postmaster this process cannot tell for the cluster's (another user's: /proc/PID/cwd unreadable)
    postmaster = subprocess.Popen(["sleep", "60"], cwd="/")
    try:
        (left / "postgres" / "postmaster.pid").write_text(f"{postmaster.pid}\n{left / 'postgres'}\n")
        with caplog.at_level(logging.INFO, logger="jitaku"), running(config):
            pass
        assert (left / "postgres" / "PG_VERSION").exists()
        [said] = [record.getMessage() for record in caplog.records if "backup_cluster_left" in record.getMessage()]
        assert f"pid={postmaster.pid}" in said
    finally:
        postmaster.kill()
        postmaster.wait()
    with running(config):  # gone: the directory goes
        pass
    assert not left.exists()


def test_a_restore_of_a_store_on_another_server_says_to_load_it_before_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from jitaku.cli import backup as cli

    to = tmp_path / "to"

    def restoring(restic: Restic, snapshot: str, into: Path) -> restore.Restored:
        into.mkdir()
        (into / "jitaku.toml").write_text(EXTERNAL)
        return restore.Restored(Counts(), into / "postgres.dump")

    monkeypatch.setattr(restore, "restore", restoring)
    secret = tmp_path / "backup.secret"
    secret.write_text("x\n")
    cli.backup_restore("0123abcd", to, tmp_path / "none", str(tmp_path / "repo"), secret)
    lines = capsys.readouterr().out.splitlines()
    load = next(index for index, line in enumerate(lines) if "pg_restore --exit-on-error" in line)
    delete = next(index for index, line in enumerate(lines) if f"delete {to / 'postgres.dump'}" in line)
    serve = next(index for index, line in enumerate(lines) if f"jitaku serve --dir {to}" in line)
    assert "BEFORE starting jitaku" in lines[load] and load < delete < serve


def test_a_restore_by_target_keeps_restic_s_cache_beside_its_directory_and_removes_it(tmp_path: Path) -> None:
    from jitaku.cli import backup as cli

    secret = tmp_path / "backup.secret"
    secret.write_text("x\n")
    to = tmp_path / "new" / "jitaku"
    with cli.repository(tmp_path / "none", str(tmp_path / "repo"), secret, to) as restic:
        assert restic.cache is not None and restic.cache.parent == to.parent and restic.cache.is_dir()
        assert restic.cache.name.startswith(".jitaku.restic-cache-")
    assert list(to.parent.iterdir()) == []
    with cli.repository(tmp_path / "none", str(tmp_path / "repo"), secret) as restic:  # a list: none at all
        assert restic.cache is None


# run as its own process: the signal is sent to it, and without the handlers it would end pytest's
SIGNALLED = """
import os, signal, sys, time
from pathlib import Path
from jitaku.backup import restore

def cut(*args, **options):
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
    finally:
        print("clean-up ran", flush=True)

restore.restore = restore.verify = cut
from jitaku.cli import main
sys.argv = ["jitaku", "backup", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("command", ["restore", "verify"])
def test_a_restore_or_verify_ended_by_sigterm_runs_its_clean_up(tmp_path: Path, command: str) -> None:
    secret = tmp_path / "backup.secret"
    secret.write_text("x\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "jitaku.toml").write_text(SQLITE + f'[backup]\ntarget = "{tmp_path / "repo"}"\n')
    if command == "restore":
        arguments = ["restore", "0123abcd", "--to", str(tmp_path / "to"), "--target", str(tmp_path / "repo")]
        arguments += ["--password-file", str(secret)]
    else:
        arguments = ["verify", "0123abcd", "--dir", str(tmp_path / "data")]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    ended = subprocess.run(
        [sys.executable, "-c", SIGNALLED, *arguments], capture_output=True, text=True, timeout=60, env=environment
    )
    assert "clean-up ran" in ended.stdout and ended.returncode == 143, ended.stderr
