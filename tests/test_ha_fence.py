"""The fence file (DIR/ha/fenced): what is written is read back, it is private, and whatever is there fences."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from jitaku.config import Config, parse
from jitaku.ha import fence
from jitaku.ha.fence import Fence


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(parse('domains = ["example.org"]\n', tmp_path / "jitaku.toml"), tmp_path)


def test_without_a_file_there_is_no_fence(config: Config) -> None:
    assert fence.read(config) is None
    fence.clear(config)  # nothing to clear is fine
    assert fence.read(config) is None


def test_a_written_fence_is_read_back_and_private(config: Config) -> None:
    written = Fence(
        "switchover", "http://192.168.1.11:8080", 1_800_000_000.5, "192.168.1.11:5433", "0/3000028", "stopped"
    )
    fence.write(config, written)
    assert fence.read(config) == written
    mode = stat.S_IMODE(os.stat(config.data_dir / "ha" / "fenced").st_mode)
    assert mode == 0o600
    assert [p.name for p in (config.data_dir / "ha").iterdir()] == ["fenced"]  # no part file left beside it


def test_a_rewritten_fence_replaces_the_old_one(config: Config) -> None:
    fence.write(config, Fence("switchover", "peer", 1.0, "h:5433"))
    fence.write(config, Fence("switchover", "peer", 1.0, "h:5433", "0/5000060", "standby"))
    found = fence.read(config)
    assert found is not None and found.cluster == "standby" and found.checkpoint == "0/5000060"


def test_cleared_it_is_gone(config: Config) -> None:
    fence.write(config, Fence("failover", "self", 2.0))
    fence.clear(config)
    assert fence.read(config) is None
    assert not (config.data_dir / "ha" / "fenced").exists()


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"{not json",
        b"[]",
        b'{"purpose": "vacation", "by": "x", "at": 1}',
        b'{"purpose": "failover", "by": "x", "at": "yesterday"}',
        b'{"purpose": "failover", "by": "x", "at": 1, "cluster": "gone"}',
        b'{"purpose": "failover", "by": "x", "at": 1, "junk": "' + b"x" * 5000 + b'"}',
        b"\xff\xfe",
    ],
)
def test_a_file_that_cannot_be_read_still_fences(config: Config, text: bytes) -> None:
    """Fail safe: a damaged fence must never let this box serve as a second primary."""
    (config.data_dir / "ha").mkdir()
    (config.data_dir / "ha" / "fenced").write_bytes(text)
    found = fence.read(config)
    assert found is not None
    assert found.purpose == fence.UNKNOWN and found.rejoin is None  # an unknown fence re-joins nothing
