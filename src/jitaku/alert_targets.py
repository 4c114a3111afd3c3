"""Alert targets: apprise URLs made into apprise's notifiers, with the process's mail encoding kept.

A leaf module: config checks `[alerts] urls` with it without importing the health package, which sends
through it. Loading apprise changes the whole process's UTF-8 mail encoding; this is the one place that
loads it, and undoes that before anything else can see it.
"""

from __future__ import annotations

import email.charset
from typing import Any

import apprise
from apprise import NotifyBase


def _load_plugins() -> None:
    """Load apprise's plugins now, and undo what its e-mail plugin does to the whole process as it loads:
    `email.charset.add_charset("utf-8", QP, QP)`. Left alone, every UTF-8 header and body this process writes
    afterwards (list mail, DSNs) would come out quoted-printable, and a folded name would gain a space."""
    registries: tuple[dict[str, Any], ...] = (email.charset.CHARSETS, email.charset.ALIASES, email.charset.CODEC_MAP)
    saved = [dict(registry) for registry in registries]
    apprise.Apprise.instantiate("json://localhost/")  # the first use loads every plugin module
    for registry, before in zip(registries, saved, strict=True):
        registry.clear()
        registry.update(before)


_load_plugins()


def target(url: str) -> NotifyBase | None:
    """The notifier for URL, or None when apprise does not understand it."""
    return apprise.Apprise.instantiate(url)


def is_valid_url(url: str) -> bool:
    return target(url) is not None
