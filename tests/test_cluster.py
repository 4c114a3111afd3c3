"""jitaku.ha.cluster on a real cluster (Debian's PostgreSQL): whoever finds it down starts it, the last process to
leave stops it, and a process that comes while another uses it leaves it running."""

from __future__ import annotations

import os
import shutil
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
    with pytest.raises(ClusterError, match=r"^PostgreSQL 15 or newer is not installed .*: apt install postgresql-15$"):
        cluster.binaries()
    (tmp_path / "16" / "bin").mkdir(parents=True)
    (tmp_path / "16" / "bin" / "pg_ctl").touch(mode=0o755)
    assert cluster.binaries().version == 16
