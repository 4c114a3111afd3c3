"""Off-box backup targets (issue 26): the ssh command jitaku gives restic for an sftp: target, the credentials
file of an s3: target, and what is refused, with the file, line and key named and no secret in the sentence
(tests/integration/test_backup_sftp.py and test_backup_s3.py drive real servers)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from jitaku.backup.restic import Restic
from jitaku.backup.targets import clear_left_logs, credentials, sftp_command, ssh_log_file
from jitaku.config import Config, ConfigError, parse
from jitaku.errors import BackupError

PATH = Path("/srv/jitaku/jitaku.toml")
DOMAINS = 'domains = ["example.org"]\n'
KEEPALIVE = "-o BatchMode=yes -o ConnectTimeout=30 -o ServerAliveInterval=15 -o ServerAliveCountMax=4"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEJr/xTpLmQ9zWbVnKfR2wEaCX=="  # a session token: base64, so it may end in "="
KEYS = "AWS_ACCESS_KEY_ID=AKIA\n"


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


def test_restic_is_given_the_command_for_every_sftp_target_and_the_key_only_when_set(tmp_path: Path) -> None:
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
    # the usual setup, the daemon user's own key: no prompt, a timeout and keepalives all the same
    plain = Restic.of(Config(parse(DOMAINS + '[backup]\ntarget = "sftp:backup@nas:/b"\n', PATH), tmp_path))
    assert plain.reach.options(Path("/srv/jitaku/backup/ssh.1.log")) == (
        "-o",
        f"sftp.command=ssh -E /srv/jitaku/backup/ssh.1.log {KEEPALIVE} backup@nas -s sftp",
    )
    assert plain.reach.environment == {}
    local = Restic.of(Config(parse(DOMAINS + '[backup]\ntarget = "/mnt/b"\n', PATH), tmp_path))
    assert local.reach.options(Path("/srv/jitaku/backup/ssh.1.log")) == ()


@pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH's client reads the options")
def test_ssh_itself_reads_the_timeout_keepalives_user_and_port_from_the_command() -> None:
    """ssh -G: what ssh makes of the words, without connecting (restic splits the command at spaces)."""
    words = sftp_command("sftp://a%40b@nas.lan:2222//srv/b", None, None).split()
    assert words[-2:] == ["-s", "sftp"]
    read = subprocess.run([words[0], "-G", *words[1:-2]], capture_output=True, text=True, check=True, timeout=30)
    settings = set(read.stdout.splitlines())
    assert {
        "user a@b",  # restic's own reading of %40: the user the repository was made with
        "hostname nas.lan",
        "port 2222",
        "batchmode yes",
        "connecttimeout 30",
        "serveraliveinterval 15",
        "serveralivecountmax 4",
    } <= settings


def test_a_data_directory_with_a_space_leaves_out_only_ssh_s_log_when_no_key_is_set(tmp_path: Path) -> None:
    here = tmp_path / "my jitaku"
    here.mkdir()
    plain = Restic.of(Config(parse(DOMAINS + '[backup]\ntarget = "sftp:nas:/b"\n', PATH), here))
    assert plain.reach.options(here / "backup" / "ssh.1.log") == ("-o", f"sftp.command=ssh {KEEPALIVE} nas -s sftp")


def test_the_ssh_logs_of_runs_killed_before_they_removed_them_go_and_live_ones_stay(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    left = tmp_path / f"ssh.{gone.pid}.140245.log"  # a `backup now` killed with -9
    mine = ssh_log_file(tmp_path)  # another thread's run of this process
    live = tmp_path / "ssh.1.7.log"  # another process's run (`backup list` takes no lock): pid 1 is always there
    other = tmp_path / "ssh.known_hosts.log"
    for path in (left, mine, live, other):
        path.write_text("Connection closed\n")
    clear_left_logs(tmp_path)
    assert sorted(tmp_path.iterdir()) == sorted([mine, live, other])


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
        ('target = "sftp://nas:0//b"', r"jitaku.toml:4: \[backup\] target: the port is not a number from 1 to"),
        (
            'target = "sftp:user@[::1]:/srv/b"',
            r"jitaku.toml:4: \[backup\] target: an IPv6 address needs the other form: \"sftp://USER@\[::1\]//PATH\"",
        ),
        ('target = "sftp:my nas:/b"', r"jitaku.toml:4: \[backup\] target: its user and host cannot be given to ssh"),
        ('target = "sftp:b\'ob@nas:/b"', r"jitaku.toml:4: \[backup\] target: its user and host cannot be given to"),
        ('target = "sftp://a%20b@nas//b"', r"jitaku.toml:4: \[backup\] target: its user and host cannot be given"),
        ('target = "sftp:-oProxyCommand=x@nas:/b"', r"jitaku.toml:4: \[backup\] target: its user and host cannot"),
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
        # a token wrapped onto a second line: its "=" makes that line look like a key, which is never quoted
        (f"{KEYS}AWS_SECRET_ACCESS_KEY={SECRET}\nAWS_SESSION_TOKEN=FwoG\n  {TOKEN}\n", r":4: expected KEY=VALUE, KEY"),
        (f"{KEYS}AWS_SECRET_ACCESS_KEY: {SECRET}=\n", r":2: expected KEY=VALUE, KEY one of AWS_ACCESS_KEY_ID, AWS_"),
        # what a shell reads otherwise, which the store would refuse as a wrong key
        (f"{KEYS}AWS_SESSION_TOKEN=\\\n  {TOKEN}\n", r":2: AWS_SESSION_TOKEN ends in a backslash: put the whole"),
        (f'{KEYS}AWS_SECRET_ACCESS_KEY="{SECRET}\n', r":2: AWS_SECRET_ACCESS_KEY has a quote at one end only"),
        (f"{KEYS}AWS_SECRET_ACCESS_KEY={SECRET}'\n", r":2: AWS_SECRET_ACCESS_KEY has a quote at one end only"),
        (f"{KEYS}AWS_SECRET_ACCESS_KEY={SECRET}  # prod\n", r":2: AWS_SECRET_ACCESS_KEY has a comment after its"),
        (f'{KEYS}AWS_SECRET_ACCESS_KEY="{SECRET}" # prod\n', r":2: AWS_SECRET_ACCESS_KEY has a comment after its"),
    ],
)
def test_a_bad_credentials_file_is_refused_naming_file_and_line_and_never_a_value(
    tmp_path: Path, text: str, refused: str
) -> None:
    path = _credentials(tmp_path, text)
    with pytest.raises(BackupError, match=refused) as error:
        credentials(path)
    said = str(error.value)
    assert said.startswith(str(path)) and "\n" not in said
    for secret in (SECRET, TOKEN):  # not even a part of one
        assert not [secret[i : i + 6] for i in range(len(secret) - 5) if secret[i : i + 6] in said]


def test_a_quoted_value_keeps_what_is_between_its_quotes(tmp_path: Path) -> None:
    text = f"{KEYS}AWS_SECRET_ACCESS_KEY='{SECRET} #1'\nexport  AWS_SESSION_TOKEN=\"{TOKEN}\"\n"
    path = _credentials(tmp_path, text)
    assert credentials(path) == {
        "AWS_ACCESS_KEY_ID": "AKIA",
        "AWS_SECRET_ACCESS_KEY": f"{SECRET} #1",
        "AWS_SESSION_TOKEN": TOKEN,
    }


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
