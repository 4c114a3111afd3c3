"""`jitaku smart collect`: the root helper that reads every disk's SMART for a daemon that is not root
(why a helper: jitaku.health.smart_readings). jitaku-smart.timer runs it."""

from __future__ import annotations

import typer

from jitaku.cli.common import DEFAULT_DIR, RootDirOption, console, load_config
from jitaku.words import counted

smart_app = typer.Typer(no_args_is_help=True, help="SMART readings of the disks.")


@smart_app.command("collect")
def collect(data_dir: RootDirOption = DEFAULT_DIR) -> None:
    """Read every disk's SMART (smartctl needs root) into DIR/smart.json, owned by the data directory's
    owner, for the smart and diskage checks of a daemon that runs as that user."""
    from jitaku.health import smart_readings, smartctl

    config = load_config(data_dir)
    readings = smart_readings.take(config.settings.health.smart)
    path = smart_readings.write(config.data_dir, readings)
    if readings.missing:
        said = str(smartctl.SmartctlMissing(readings.missing))
    else:
        names = ", ".join(drive.name for drive in readings.drives)
        said = counted(len(readings.drives), "disk") + (f" ({names})" if names else "")
    console.print(f"wrote {path}: {said}")
