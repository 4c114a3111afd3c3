"""`jitaku backup` to an S3-compatible store (issue 26): moto's server mode, started here on a loopback address
with its access control on, and a key made for the test through its IAM. jitaku reads the key from its
[backup] credentials_file. A backup goes there and comes back; a wrong secret key is one line and lists nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import READER, Jitaku
from tests.peers import free_port, wait_for_port
from tests.postgres import on_postgresql

HOST = "127.0.12.13"
BUCKET = "jitaku-backups"
SNAPSHOT = "snapshot "  # `backup now` says "snapshot ID: ..."
# the requests moto answers before it checks signatures: the three that make the test's user, key and policy
UNCHECKED = 3
# moto's server (`python3 -m moto.server`), with one fix: it checks an S3 request's signature against its query
# string as it arrived, where S3 (and restic's client, minio-go) sign it URI-encoded ("delimiter=%2F"): restic's
# listings with "/" in them would all be refused. Re-encoded as S3 canonicalizes it, they pass.
SERVER = """
import sys
from urllib.parse import quote, unquote
from moto.iam import access_control
from moto.server import main

received = access_control.S3IAMRequest.__init__

def canonical(self, *args, path, **kwargs):
    where, _, query = path.partition("?")
    if query:
        pairs = (pair.split("=", 1) for pair in query.split("&"))
        where += "?" + "&".join("=".join(quote(unquote(part), safe="-_.~") for part in pair) for pair in pairs)
    received(self, *args, path=where, **kwargs)

access_control.S3IAMRequest.__init__ = canonical
main(sys.argv[1:])
"""


class S3:
    """moto's S3 on HOST:port, with the access key id and secret of a user allowed s3:*."""

    def __init__(self, place: Path) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log = open(place / "moto.log", "wb")  # noqa: SIM115 - the server's, for as long as it runs
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER, "-H", HOST, "-p", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(UNCHECKED)},
        )
        try:
            self.key_id, self.secret = self._user()
        except BaseException:  # moto not up, or it refused a request: nothing left running, no file left open
            self.close()
            raise

    def _user(self) -> tuple[str, str]:
        """The access key id and secret of a user made for the test, allowed s3:*."""
        import boto3

        wait_for_port(self.port, timeout=60, host=HOST)
        iam = boto3.client(
            "iam", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )
        iam.create_user(UserName="jitaku")
        key = iam.create_access_key(UserName="jitaku")["AccessKey"]
        allowed = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="jitaku", PolicyName="backups", PolicyDocument=json.dumps(allowed))
        return str(key["AccessKeyId"]), str(key["SecretAccessKey"])

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        self.log.close()


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3]:
    store = S3(tmp_path)
    yield store
    store.close()


@pytest.fixture
def box(jitaku_factory: Any, s3: S3) -> Jitaku:
    """A jitaku whose [backup] target is a bucket of S3's that `backup init` makes, with its keys in a file."""
    if on_postgresql():
        pytest.skip("backup on PostgreSQL comes later (issue 26)")
    server: Jitaku = jitaku_factory()
    server.init(READER)
    _credentials(server, f"# moto's test user\nAWS_ACCESS_KEY_ID={s3.key_id}\nAWS_SECRET_ACCESS_KEY={s3.secret}\n")
    server.settings["backup"] = {"target": f"s3:{s3.url}/{BUCKET}", "credentials_file": "s3.credentials", "every": 0}
    server.write_config()
    made = server.cli("backup", "init")  # restic makes the bucket
    assert f"made the restic repository s3:{s3.url}/{BUCKET}" in made.stdout
    return server


def test_a_backup_goes_to_the_s3_store_and_comes_back(box: Jitaku, s3: S3, tmp_path: Path) -> None:
    (box.dir / "media").mkdir()
    (box.dir / "media" / "photo.jpg").write_bytes(os.urandom(1 << 20))
    snapshot = box.cli("backup", "now").stdout.split(":")[0].removeprefix(SNAPSHOT)
    assert [item["id"] for item in json.loads(box.cli("backup", "list", "--json").stdout)] == [snapshot]

    restored = tmp_path / "restored"
    box.cli("backup", "restore", snapshot, "--to", str(restored))
    assert (restored / "media" / "photo.jpg").read_bytes() == (box.dir / "media" / "photo.jpg").read_bytes()
    assert (restored / "jitaku.db").is_file()
    assert f"snapshot {snapshot} verified" in box.cli("backup", "verify").stdout


def test_a_wrong_secret_key_is_one_line_that_the_store_refused_it_and_lists_nothing(box: Jitaku, s3: S3) -> None:
    wrong = s3.secret[:-4] + "AAAA"
    _credentials(box, f"AWS_ACCESS_KEY_ID={s3.key_id}\nAWS_SECRET_ACCESS_KEY={wrong}\n")
    for command in (["backup", "list", "--json"], ["backup", "now"]):
        refused = box.cli(*command, check=False)
        assert (refused.returncode, refused.stdout) == (1, "")
        assert refused.stderr == (
            f"jitaku: the store at s3:{s3.url}/{BUCKET} refused the credentials in {box.dir / 's3.credentials'}:"
            " wrong AWS_SECRET_ACCESS_KEY?\n"
        )
        assert wrong not in refused.stderr and s3.key_id not in refused.stderr
    _credentials(box, f"AWS_ACCESS_KEY_ID={s3.key_id}\nAWS_SECRET_ACCESS_KEY={s3.secret}\n")
    assert json.loads(box.cli("backup", "list", "--json").stdout) == []  # the refused backup left nothing


def test_a_credentials_file_others_may_read_is_refused_before_restic_runs(box: Jitaku) -> None:
    (box.dir / "s3.credentials").chmod(0o644)
    refused = box.cli("backup", "list", check=False)
    path = box.dir / "s3.credentials"
    assert (refused.returncode, refused.stderr) == (
        1,
        f"jitaku: {path} ([backup] credentials_file) may be read by others (mode 0644): chmod 600 {path} first\n",
    )


def _credentials(box: Jitaku, text: str) -> None:
    path = box.dir / "s3.credentials"
    path.write_text(text)
    path.chmod(0o600)
