"""This box's id: random, made once (DIR/ha/box_id, 0600), sent as `by` in every fence it asks of its peer.

A fence is signed with the pair's shared secret, which both boxes hold: a signature alone cannot tell a fence the
peer sent from one this box sent that came back to it (recorded on the LAN and replayed, or a `[ha] peer` that
names this box itself). The fence endpoint refuses a fence whose `by` is this box's own id (jitaku.web.ha).
"""

from __future__ import annotations

import re
import secrets

from jitaku import files
from jitaku.config import Config

NAME = "box_id"
_ID = re.compile(r"[0-9a-f]{32}")


def box_id(config: Config) -> str:
    """This box's id; made at the first call, by whichever process comes first (the file is the run user's, as
    the directory it is in, when root makes it)."""
    path = config.data_dir / "ha" / NAME
    try:
        found = path.read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        found = ""
    if _ID.fullmatch(found):
        return found
    return renew(config)


def renew(config: Config) -> str:
    """A new id for this box: `jitaku standby setup` makes one, since a box whose DIR was copied from its peer's
    disk (a cloned VM, a restored backup) holds the peer's id, and each would then refuse the other's fences."""
    path = config.data_dir / "ha" / NAME
    path.parent.mkdir(mode=0o700, exist_ok=True)
    made = secrets.token_hex(16)
    files.replace(path, (made + "\n").encode(), 0o600, files.owner(path.parent))
    return made
