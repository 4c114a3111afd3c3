"""Where the data directory is when neither `--dir` nor $JITAKU_DIR says: ./jitaku-data when it exists,
else the service's /var/lib/jitaku when it holds a config, else ./jitaku-data (where `jitaku init` then
makes one). So `jitaku user add` finds the service's data as it finds a test setup's."""

from __future__ import annotations

from pathlib import Path

from jitaku.config import CONFIG_NAME

LOCAL_DIR = Path("jitaku-data")
SERVICE_DIR = Path("/var/lib/jitaku")  # where `jitaku init --service` puts the service's data


def find() -> Path:
    if LOCAL_DIR.exists():
        return LOCAL_DIR
    try:
        (SERVICE_DIR / CONFIG_NAME).stat()
    except PermissionError:  # the service's own dir, 0700: name it, so what fails says where and why
        return SERVICE_DIR
    except OSError:
        return LOCAL_DIR
    return SERVICE_DIR
