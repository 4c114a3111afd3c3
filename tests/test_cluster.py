"""jitaku.ha.cluster on a real cluster (Debian's PostgreSQL): whoever finds it down starts it, the last process to
leave stops it, and a process that comes while another uses it leaves it running."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from jitaku.config import Config, parse
from jitaku.errors import ClusterError
from jitaku.ha import cluster
from tests.peers import free_port

HOLD = """
import sys
from pathlib import Path
from jitaku.config import load
from jitaku.ha import cluster
with cluster.using(load(Path(sys.argv[1]))):
    print("holding", flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def config() -> Iterator[Config]:
    """A managed config in a directory the postgres user may reach (the tests run as root: it runs the cluster)."""
    base = Path(tempfile.mkdtemp(prefix="jitaku-cluster-"))
    base.chmod(0o755)
    data_dir = base / "data"
    data_dir.mkdir(mode=0o700)
    text = f'domains = ["example.org"]\n[database]\nmanaged = true\nlisten = ["127.0.0.1:{free_port()}"]\n'
    (data_dir / "jitaku.toml").write_text(text)
    made = Config(parse(text, data_dir / "jitaku.toml"), data_dir)
    yield made
    if cluster.running(made) is not None:  # a test that failed half way
        cluster.stop(made)
    shutil.rmtree(base, ignore_errors=True)


def test_the_last_process_to_leave_stops_the_cluster(config: Config) -> None:
    assert cluster.state(config) == "absent"
    assert cluster.create(config) and cluster.create(config) == []  # made once
    assert cluster.state(config) == "stopped"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(config.data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert holder.stdout is not None and holder.stdin is not None
    try:
        assert holder.stdout.readline() == "holding\n"
        pid = cluster.running(config)
        assert pid is not None and cluster.state(config) == "running"
        with cluster.using(config):
            assert cluster.running(config) == pid  # the same server, not a second one
        assert cluster.running(config) == pid  # the holder still uses it
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=60) == 0
    finally:
        holder.kill()
    assert cluster.running(config) is None and cluster.state(config) == "stopped"


def test_a_data_dir_without_its_cluster_is_not_given_a_new_empty_one(config: Config) -> None:
    """A disk not mounted must not look like a new install: only `init` makes a cluster."""
    with pytest.raises(ClusterError, match=r"holds no PostgreSQL cluster; run `jitaku init --database postgresql`"):
        with cluster.using(config):
            pass
    assert not config.postgres_dir.exists()


def test_without_postgresql_the_error_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "14" / "bin").mkdir(parents=True)
    (tmp_path / "14" / "bin" / "pg_ctl").touch(mode=0o755)  # too old
    monkeypatch.setattr(cluster, "BINARIES", str(tmp_path / "*" / "bin"))
    with pytest.raises(ClusterError, match=r"^PostgreSQL 15 or newer is not installed .*: apt install postgresql$"):
        cluster.binaries()
    (tmp_path / "16" / "bin").mkdir(parents=True)
    (tmp_path / "16" / "bin" / "pg_ctl").touch(mode=0o755)
    assert cluster.binaries().version == 16


def test_a_cluster_keeps_its_own_major_after_a_newer_one_is_installed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A dist-upgrade that adds postgresql-17: pg_ctl 17 would refuse a 15 cluster's files, and jitaku be down."""
    for version in ("15", "17"):
        (tmp_path / version / "bin").mkdir(parents=True)
        (tmp_path / version / "bin" / "pg_ctl").touch(mode=0o755)
    monkeypatch.setattr(cluster, "BINARIES", str(tmp_path / "*" / "bin"))
    data = tmp_path / "postgres"
    data.mkdir()
    assert cluster.binaries(data).version == 17  # no cluster yet: initdb's, the newest
    (data / "PG_VERSION").write_text("15\n")
    assert cluster.binaries(data).version == 15 and cluster.binaries(data)["pg_ctl"].startswith(str(tmp_path / "15"))
    assert cluster.binaries().version == 17
    (tmp_path / "15" / "bin" / "pg_ctl").unlink()  # 15 removed by the upgrade
    with pytest.raises(
        ClusterError, match=r"is a PostgreSQL 15 cluster, .* not installed .*: apt install postgresql-15$"
    ):
        cluster.binaries(data)


@pytest.mark.skipif(os.geteuid() != 0, reason="hands a directory's group to postgres: needs root (CI is)")
def test_the_group_postgres_is_given_may_search_the_data_dir_and_nothing_more(config: Config) -> None:
    """A 0750 data directory (a backup group's) given to postgres's group: postgres may pass through, not list it."""
    import pwd

    data_dir = config.data_dir.with_name("backed-up")
    data_dir.mkdir()
    os.chown(data_dir, 0, 0)
    data_dir.chmod(0o750)
    user = pwd.getpwnam("postgres")
    cluster.reachable(data_dir, user)
    info = data_dir.stat()
    assert info.st_gid == user.pw_gid and info.st_mode & 0o777 == 0o710


def test_a_pg_hba_block_missing_its_end_is_said_in_one_sentence(config: Config) -> None:
    cluster.create(config)
    hba = config.postgres_dir / "pg_hba.conf"
    hba.write_text(hba.read_text() + cluster.HBA_BEGIN + "\nhost all all 192.0.2.1/32 scram-sha-256\n")
    with pytest.raises(ClusterError, match=r"pg_hba.conf has the line .* without its '# jitaku: end'"):
        with cluster.using(config):
            pass
    assert cluster.running(config) is None


HOLD_IN_CLI = """
import sys, time
from pathlib import Path
from jitaku.cli.common import hold_cluster
from jitaku.config import load
hold_cluster(load(Path(sys.argv[1])))
print("holding", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP])
def test_a_command_ended_by_sigterm_or_sighup_stops_the_cluster_it_held(config: Config, number: int) -> None:
    """An ssh session dropped in the middle of `jitaku db copy` (SIGHUP), or a kill: the cluster it started stops."""
    cluster.create(config)
    command = subprocess.Popen(
        [sys.executable, "-c", HOLD_IN_CLI, str(config.data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert command.stdout is not None and command.stderr is not None
    try:
        assert command.stdout.readline() == "holding\n"
        assert cluster.running(config) is not None
        command.send_signal(number)
        assert command.wait(timeout=60) == 128 + number
    finally:
        command.kill()
    assert cluster.running(config) is None
    assert command.stderr.read() == ""  # no traceback, nothing ignored in atexit
