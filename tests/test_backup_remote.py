"""Off-box backup targets (issue 26): the ssh command jitaku gives restic for an sftp: target, the credentials
file of an s3: target, and what is refused, with the file, line and key named and no secret in the sentence
(tests/integration/test_backup_sftp.py and test_backup_s3.py drive real servers)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jitaku.backup.restic import Restic
from jitaku.backup.targets import credentials, sftp_command
from jitaku.config import Config, ConfigError, parse
from jitaku.errors import BackupError

PATH = Path("/srv/jitaku/jitaku.toml")
DOMAINS = 'domains = ["example.org"]\n'
KEEPALIVE = "-o BatchMode=yes -o ServerAliveInterval=15 -o ServerAliveCountMax=4"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def test_the_ssh_command_names_the_port_key_and_known_hosts_of_each_target_form() -> None:
    key, known = Path("/srv/jitaku/backup/id"), Path("/srv/jitaku/backup/known")
    assert sftp_command("sftp://backup@nas.lan:2222//srv/jitaku", key, known) == (
        "ssh -p 2222 -i /srv/jitaku/backup/id -o IdentitiesOnly=yes -o UserKnownHostsFile=/srv/jitaku/backup/known"
        f" -o StrictHostKeyChecking=yes {KEEPALIVE} backup@nas.lan -s sftp"
    )
    assert sftp_command("sftp:backup@nas.lan:/srv/jitaku", key, None) == (
        f"ssh -i /srv/jitaku/backup/id -o IdentitiesOnly=yes {KEEPALIVE} backup@nas.lan -s sftp"
    )
    assert sftp_command("sftp:nas.lan:jitaku", None, known) == (
        f"ssh -o UserKnownHostsFile=/srv/jitaku/backup/known -o StrictHostKeyChecking=yes {KEEPALIVE} nas.lan -s sftp"
    )
    assert sftp_command("sftp://nas.lan/jitaku", None, known).endswith(f"{KEEPALIVE} nas.lan -s sftp")


def test_restic_is_given_the_command_only_when_a_key_or_known_hosts_is_set(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("key\n")
    key.chmod(0o600)
    text = DOMAINS + '[backup]\ntarget = "sftp://root@127.0.0.1:2222//srv/b"\nssh_key = "id"\n'
    restic = Restic.of(Config(parse(text, PATH), tmp_path))
    assert restic.reach.ssh == sftp_command(restic.target, key, None)
    # and ssh's messages go to a file of the run's own, which restic cannot end before it has passed them on
    assert restic.reach.options(Path("/srv/jitaku/backup/ssh.1.log")) == (
        "-o",
        f"sftp.command=ssh -E /srv/jitaku/backup/ssh.1.log -p 2222 -i {key} -o IdentitiesOnly=yes {KEEPALIVE}"
        " root@127.0.0.1 -s sftp",
    )
    plain = Restic.of(Config(parse(DOMAINS + '[backup]\ntarget = "sftp:nas:/b"\n', PATH), tmp_path))
    assert plain.reach.options(Path("/srv/jitaku/backup/ssh.1.log")) == () and plain.reach.environment == {}


def test_a_key_others_may_read_is_refused_in_one_line_before_ssh_refuses_it(tmp_path: Path) -> None:
    (tmp_path / "id").write_text("key\n")
    (tmp_path / "id").chmod(0o644)
    text = DOMAINS + '[backup]\ntarget = "sftp:root@nas:/b"\nssh_key = "id"\n'
    with pytest.raises(
        BackupError, match=r"\(\[backup\] ssh_key\) may be read by others \(mode 0644\): chmod 600"
    ) as e:
        Restic.of(Config(parse(text, PATH), tmp_path))
    assert "\n" not in str(e.value) and "ssh refuses such a key" in str(e.value)
    missing = DOMAINS + '[backup]\ntarget = "sftp:root@nas:/b"\nssh_known_hosts = "known"\n'
    with pytest.raises(BackupError, match=r"^no known_hosts file at .*/known \(\[backup\] ssh_known_hosts\)$"):
        Restic.of(Config(parse(missing, PATH), tmp_path))


@pytest.mark.parametrize(
    ("backup", "refused"),
    [
        (
            'target = "sftp:root@nas:/b"\nssh_key = "my key"',
            r"jitaku.toml:5: \[backup\] ssh_key: expected a path with no",
        ),
        ('target = "sftp:root@nas:/b"\nssh_known_hosts = "it\'s"', r"jitaku.toml:5: \[backup\] ssh_known_hosts: "),
        ('target = "/mnt/b"\nssh_key = "id"', r"jitaku.toml:5: \[backup\] ssh_key: is for an SFTP target"),
        ('target = "sftp:root@nas:/b"\ncredentials_file = "s3"', r"jitaku.toml:5: \[backup\] credentials_file: is for"),
        ('target = "sftp:nas"', r"jitaku.toml:4: \[backup\] target: expected \"sftp:USER@HOST:/PATH\""),
        ('target = "sftp://nas:99999//b"', r"jitaku.toml:4: \[backup\] target: the port is not a number"),
        ('target = "sftp://nas:22"', r"jitaku.toml:4: \[backup\] target: expected \"sftp://USER@HOST:PORT//PATH\""),
    ],
)
def test_bad_ssh_settings_are_refused_with_file_line_and_key(backup: str, refused: str) -> None:
    with pytest.raises(ConfigError, match=refused):
        parse(DOMAINS + "\n[backup]\n" + backup + "\n", PATH)


def test_a_data_directory_with_a_space_cannot_hold_the_key_restic_passes_to_ssh(tmp_path: Path) -> None:
    here = tmp_path / "my jitaku"
    here.mkdir()
    text = DOMAINS + '[backup]\ntarget = "sftp:root@nas:/b"\nssh_key = "id"\n'
    with pytest.raises(BackupError, match=r"^\[backup\] ssh_key, ssh_known_hosts: .*/my jitaku has a space, quote or"):
        Restic.of(Config(parse(text, PATH), here))


def _credentials(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "s3.credentials"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_credentials_file_goes_into_restics_environment_only(tmp_path: Path) -> None:
    _credentials(
        tmp_path,
        f"# the NAS's keys\nAWS_ACCESS_KEY_ID=AKIAEXAMPLE\n\nexport AWS_SECRET_ACCESS_KEY = '{SECRET}'\n"
        "AWS_DEFAULT_REGION=ap-northeast-1\n",
    )
    text = DOMAINS + '[backup]\ntarget = "s3:http://127.0.0.1:9000/b"\ncredentials_file = "s3.credentials"\n'
    restic = Restic.of(Config(parse(text, PATH), tmp_path))
    assert restic.reach.environment == {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "ap-northeast-1",
    }
    assert restic.reach.ssh == "" and SECRET not in repr(restic.reach)


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        (f"AWS_ACCESS_KEY_ID=AKIA\nAWS_SECRET={SECRET}\n", r":2: unknown key 'AWS_SECRET': expected one of AWS_ACC"),
        (f"AWS_ACCESS_KEY_ID=AKIA\n{SECRET}\n", r":2: expected KEY=VALUE"),
        ("AWS_ACCESS_KEY_ID=AKIA\nAWS_SECRET_ACCESS_KEY=\n", r":2: AWS_SECRET_ACCESS_KEY has no value"),
        (f"AWS_SECRET_ACCESS_KEY={SECRET}\n", r"s3.credentials: AWS_ACCESS_KEY_ID missing"),
        (
            f"AWS_SECRET_ACCESS_KEY={SECRET}\nAWS_SECRET_ACCESS_KEY={SECRET}\n",
            r":2: AWS_SECRET_ACCESS_KEY is set twice",
        ),
    ],
)
def test_a_bad_credentials_file_is_refused_naming_file_and_line_and_never_a_value(
    tmp_path: Path, text: str, refused: str
) -> None:
    path = _credentials(tmp_path, text)
    with pytest.raises(BackupError, match=refused) as error:
        credentials(path)
    assert str(error.value).startswith(str(path)) and SECRET not in str(error.value)


def test_a_credentials_file_others_may_read_is_refused_in_one_line(tmp_path: Path) -> None:
    path = _credentials(tmp_path, f"AWS_ACCESS_KEY_ID=AKIA\nAWS_SECRET_ACCESS_KEY={SECRET}\n", 0o640)
    with pytest.raises(BackupError, match=r"\(\[backup\] credentials_file\) may be read by others \(mode 0640\)"):
        credentials(path)


def test_restics_failures_never_carry_a_credential_or_a_password_in_the_target(tmp_path: Path) -> None:
    _credentials(tmp_path, f"AWS_ACCESS_KEY_ID=AKIAEXAMPLE\nAWS_SECRET_ACCESS_KEY={SECRET}\n")
    text = (
        DOMAINS + '[backup]\ntarget = "s3:https://AKIAEXAMPLE:hunter2@s3.lan/b"\ncredentials_file = "s3.credentials"\n'
    )
    restic = Restic.of(Config(parse(text, PATH), tmp_path))
    said = f"Fatal: unable to save snapshot: key {SECRET} for AKIAEXAMPLE at {restic.target}: disk on fire\n"
    failure = str(restic.failure("backup", said))
    assert "disk on fire" in failure and "hunter2" not in failure
    assert SECRET not in failure and "AKIAEXAMPLE" not in failure
    refused = (
        "Fatal: unable to open config file: Stat: The AWS Access Key Id you provided does not exist in our records."
    )
    sentence = str(restic.failure("snapshots", refused))
    assert sentence == (
        f"the store at s3:https://***:***@s3.lan/b refused the credentials in {os.path.abspath(tmp_path)}/s3.credentials:"
        " no such AWS_ACCESS_KEY_ID"
    )


def test_an_sftp_target_with_a_password_in_it_never_shows_it(tmp_path: Path) -> None:
    (tmp_path / "id").write_text("key\n")
    (tmp_path / "id").chmod(0o600)
    text = DOMAINS + '[backup]\ntarget = "sftp://bob:hunter2@nas.lan:2222//srv/b"\nssh_key = "id"\n'
    restic = Restic.of(Config(parse(text, PATH), tmp_path))
    assert "hunter2" not in restic.reach.ssh and "bob@nas.lan -s sftp" in restic.reach.ssh  # the user alone
    said = (
        f"subprocess ssh: Connection closed\nFatal: unable to save snapshot: Write: connection lost ({restic.target})\n"
    )
    failure = str(restic.failure("backup", said))
    assert failure.startswith("the SFTP connection to sftp://bob:***@nas.lan:2222//srv/b was lost during restic backup")
    with pytest.raises(ConfigError) as refused:
        parse(DOMAINS + '[backup]\ntarget = "sftp://bob:hunter2@nas.lan:99999//b"\n', PATH)
    assert "hunter2" not in str(refused.value) and "the port is not a number" in str(refused.value)


def test_a_user_restic_would_split_is_refused_naming_the_target(tmp_path: Path) -> None:
    (tmp_path / "known").write_text("nas ssh-ed25519 AAAA\n")
    text = DOMAINS + '[backup]\ntarget = "sftp:b\'ob@nas:/b"\nssh_known_hosts = "known"\n'
    with pytest.raises(BackupError, match=r"^\[backup\] target: its user and host cannot be given to ssh"):
        Restic.of(Config(parse(text, PATH), tmp_path))
