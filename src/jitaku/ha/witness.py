"""The pair's witness: a jitaku outside the home (the health buddy, or `[ha] witness`) asked whether the pair's
public services answer from its side of the Internet. Both boxes sit behind one router that forwards to the
floating address, so "answers from outside" means "some box of the pair serves now". A standby that lost its
primary promotes itself only when the witness cannot reach it either (a cable between the boxes is not a dead
primary), and a primary alone after a cold start takes the address only when the witness sees nobody else serving.

The question is the buddy's own probe (`POST /api/buddy/probe`, jitaku.web.buddy), which connects only to the
caller's own address: the pair's public name, the same for both boxes behind their router.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from jitaku.config import BuddySettings, Config


class Seen(Enum):
    ANSWERS = "answers"  # at least one target answered the witness: a box of the pair serves
    SILENT = "silent"  # none did
    UNKNOWN = "unknown"  # no witness configured, or it could not be asked (down, refused our token, garbage)


@dataclass(frozen=True)
class Answer:
    seen: Seen
    words: str  # what the witness said (or why it could not be asked), one line for logs and alerts


def settings(config: Config) -> BuddySettings | None:
    """The witness to ask, as a buddy's settings (url, token, ours = the targets); None without one."""
    ha, buddy = config.settings.ha, config.settings.health.buddy
    if ha.witness:
        return BuddySettings(url=ha.witness, token=ha.witness_token, ours=ha.witness_targets)
    if not buddy.url:
        return None
    targets = ha.witness_targets or buddy.ours
    return BuddySettings(url=buddy.url, token=buddy.token, name=buddy.name, ours=targets, verify_tls=buddy.verify_tls)


def configured(config: Config) -> bool:
    """Whether there is a witness to ask, and targets to ask it about: one that cannot be asked then is not known
    either way, where without one nobody can tell."""
    witness = settings(config)
    return witness is not None and bool(witness.ours)


async def ask(config: Config) -> Answer:
    """Whether the pair's public services answer the witness; bounded by the buddy client's timeout."""
    from jitaku import buddy_client as buddy

    witness = settings(config)
    if witness is None or not configured(config):
        return Answer(Seen.UNKNOWN, "no witness configured ([ha] witness, or [health.buddy] url and ours)")
    name = buddy.name(witness)
    try:
        found = await buddy.ask_probe(witness)
    except buddy.Unreachable as error:
        return Answer(Seen.UNKNOWN, f"cannot ask the witness {name}: {error}")
    answering = [str(result["target"]) for result in found if result.get("ok")]
    if answering:
        return Answer(Seen.ANSWERS, f"the witness {name} reaches {', '.join(answering)}")
    return Answer(Seen.SILENT, f"the witness {name} reaches none of {', '.join(witness.ours)}")
