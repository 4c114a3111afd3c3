"""Which physical disk a block device lives on, with its model and serial: what a person needs to pull
the right drive (`lsblk --json`; a partition's parent is its disk)."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass

# The disks `smartctl --scan` looks for on Linux: SCSI, SATA and USB (sd), IDE (hd), NVMe. A virtual
# machine's disk (vda, xvda), zram or a loop device has no SMART to read.
WITH_SMART = re.compile(r"sd[a-z]+|hd[a-z]+|nvme\d+n\d+")


@dataclass(frozen=True)
class Disk:
    name: str
    model: str | None = None
    serial: str | None = None

    def __str__(self) -> str:
        return self._said("disk", "serial")

    @property
    def ja(self) -> str:
        return self._said("ディスク", "シリアル")

    def _said(self, disk: str, serial: str) -> str:
        parts = [self.model or "", f"{serial} {self.serial}" if self.serial else ""]
        described = " ".join(part for part in parts if part)
        return f"{disk} {described or self.name}"


def parent_name(device: str) -> str:
    """sdb3 -> sdb, nvme0n1p2 -> nvme0n1, mmcblk0p1 -> mmcblk0: the guess when lsblk cannot say."""
    found = re.fullmatch(r"((?:nvme\d+n\d+|mmcblk\d+|loop\d+))p\d+|([a-z]+)\d+", device)
    if not found:
        return device
    return found.group(1) or found.group(2)


def read(lsblk: str) -> dict[str, Disk]:
    """Every block device by name, mapped to the disk it is on; empty when lsblk is missing or fails."""
    try:
        ran = subprocess.run(
            [lsblk, "--json", "--list", "-o", "NAME,PKNAME,TYPE,MODEL,SERIAL"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        devices = json.loads(ran.stdout)["blockdevices"] if ran.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError):
        return {}
    by_name = {str(item.get("name")): item for item in devices if isinstance(item, dict)}
    disks: dict[str, Disk] = {}
    for name, item in by_name.items():
        top = item
        for _ in range(8):  # partitions of partitions, dm over disks: follow pkname to the disk
            parent = by_name.get(str(top.get("pkname")))
            if parent is None:
                break
            top = parent
        model, serial = top.get("model"), top.get("serial")
        disks[name] = Disk(str(top.get("name")), model.strip() if model else None, serial.strip() if serial else None)
    return disks


def disk_of(device: str, known: dict[str, Disk]) -> Disk:
    return known.get(device) or known.get(parent_name(device)) or Disk(parent_name(device))


def with_smart(known: dict[str, Disk]) -> list[str]:
    """The physical disks among KNOWN (from read) that keep SMART, which someone should be reading."""
    return sorted({disk.name for disk in known.values() if WITH_SMART.fullmatch(disk.name)})
