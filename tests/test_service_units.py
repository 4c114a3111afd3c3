"""The pieces of `jitaku init --service` that need no machine of their own: the units' text, their writing,
and handing root's files in a data directory to the service user."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from jitaku import service


def installed_at(program: str) -> service.Installed:
    return service.Installed(Path(program), (Path(program), Path("/usr/bin/python3.11")))


def test_the_daemon_unit_runs_the_installed_program_on_the_data_dir_and_hides_homes_unless_installed_in_one() -> None:
    units = service.units(installed_at("/usr/local/bin/jitaku"), Path("/srv/jitaku"))
    assert set(units) == {"jitaku.service", "jitaku-smart.service", "jitaku-smart.timer"}
    assert "\nExecStart=/usr/local/bin/jitaku serve --dir /srv/jitaku\n" in units["jitaku.service"]
    assert "\nReadWritePaths=/srv/jitaku\n" in units["jitaku.service"]
    assert "\nProtectHome=yes\n" in units["jitaku.service"]
    assert "\nExecStart=/usr/local/bin/jitaku smart collect --dir /srv/jitaku\n" in units["jitaku-smart.service"]
    in_home = service.units(installed_at("/home/sota/venv/bin/jitaku"), Path("/var/lib/jitaku"))
    assert "\nProtectHome=read-only\n" in in_home["jitaku.service"]  # hidden, it could not start


@pytest.mark.parametrize("data_dir", ["/srv/my mail", "/srv/100%", "/srv/$HOME", '/srv/"x"'])
def test_a_path_systemd_would_read_otherwise_is_refused(data_dir: str) -> None:
    with pytest.raises(service.ServiceError, match="cannot stand in a systemd unit as it is"):
        service.units(installed_at("/usr/local/bin/jitaku"), Path(data_dir))


def test_a_unit_is_written_when_missing_or_different_and_left_when_the_same(tmp_path: Path) -> None:
    texts = {"jitaku.service": "[Service]\nExecStart=/bin/true\n"}
    umask = os.umask(0o077)
    try:
        (written,) = service.write_units(texts, tmp_path)
    finally:
        os.umask(umask)
    assert (
        written.change == "wrote" and written.path.stat().st_mode & 0o777 == 0o644
    )  # as systemd's own, whatever the umask
    assert [w.change for w in service.write_units(texts, tmp_path)] == ["unchanged"]
    written.path.write_text("[Service]\nExecStart=/bin/false\n")
    assert [w.change for w in service.write_units(texts, tmp_path)] == ["rewrote"]
    assert written.path.read_text() == texts["jitaku.service"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jitaku.service"]  # no .part left behind


def test_root_s_files_in_the_data_dir_go_to_the_service_user_but_never_through_a_link(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing owners needs root (CI runs as root)")
    account = pwd.getpwnam("nobody")
    data = tmp_path / "data"
    (data / "dkim").mkdir(parents=True)
    (data / "jitaku.db").write_bytes(b"")
    (data / "dkim" / "example.org.jitaku.key").write_bytes(b"")
    outside = tmp_path / "outside"
    outside.write_bytes(b"")
    (data / "linked").symlink_to(outside)
    os.link(outside, data / "hard")  # a second name of a file of root's: not the data dir's to give away
    assert service.adopt(data, account) == 5  # the dir, dkim/, the db, the key, the symbolic link itself
    for path in (data, data / "dkim", data / "jitaku.db", data / "dkim" / "example.org.jitaku.key"):
        assert path.stat().st_uid == account.pw_uid, path
    assert outside.stat().st_uid == 0
    assert service.adopt(data, account) == 0  # nothing of root's left to give


def test_a_data_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing owners needs root (CI runs as root)")
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, pwd.getpwnam("nobody").pw_uid, -1)
    with pytest.raises(service.ServiceError, match="belongs to nobody, not root"):
        service.adopt(data, pwd.getpwnam("root"))


def test_the_daemon_alone_hears_sigterm_and_systemd_waits_for_its_cluster_to_stop() -> None:
    """The managed PostgreSQL lives in the daemon's cgroup: SIGTERM to it too would end the daemon's sessions in
    the middle of its shutdown, and SIGKILL before the cluster's own stop (fast, then immediate) leaves it to crash
    recovery."""
    from jitaku.ha.cluster import STOP_TIMEOUT

    unit = service.units(installed_at("/usr/local/bin/jitaku"), Path("/srv/jitaku"))["jitaku.service"]
    assert "\nKillMode=mixed\n" in unit
    (timeout,) = [line.split("=")[1] for line in unit.splitlines() if line.startswith("TimeoutStopSec=")]
    assert timeout.endswith("s") and int(timeout[:-1]) >= 60 and int(timeout[:-1]) > 2 * STOP_TIMEOUT + 10


def test_the_daemon_may_move_the_floating_address_only_when_the_config_has_one() -> None:
    """`ip addr` needs CAP_NET_ADMIN, the ARP probe and gratuitous ARP CAP_NET_RAW and an AF_PACKET socket: a unit
    without them leaves the address where it is after a failover; one with them gives a lone box more than it
    uses."""
    lone = service.units(installed_at("/usr/local/bin/jitaku"), Path("/srv/jitaku"))["jitaku.service"]
    paired = service.units(installed_at("/usr/local/bin/jitaku"), Path("/srv/jitaku"), floating=True)["jitaku.service"]
    assert "CAP_NET_ADMIN" not in lone and "AF_PACKET" not in lone
    for line in ("AmbientCapabilities=", "CapabilityBoundingSet="):
        (paired_line,) = [text for text in paired.splitlines() if text.startswith(line)]
        assert paired_line.split("=")[1].split() == ["CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN", "CAP_NET_RAW"]
    (families,) = [text for text in paired.splitlines() if text.startswith("RestrictAddressFamilies=")]
    assert families.split("=")[1].split() == ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET"]
