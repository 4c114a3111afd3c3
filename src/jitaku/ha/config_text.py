"""jitaku.toml turned over to a managed PostgreSQL cluster: `[database]`'s managed, url and listen keys added by
editing the text, so that every comment, key and blank line the owner wrote stays as it was (a TOML writer would
drop the comments, which are most of what `jitaku init` writes)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from jitaku.config import PASSFILE_NAME, DatabaseSettings, parse

HEADER = re.compile(r"\s*\[\s*(?P<name>[A-Za-z0-9_.\-\"' ]+?)\s*\]\s*(#.*)?$")
ANY_HEADER = re.compile(r"\s*\[")
STRING = r"(\"(?:[^\"\\]|\\.)*\"|'[^']*')"


class ConfigTextError(Exception):
    """The config asks for a database that a managed cluster would replace; one line for a person."""


@dataclass(frozen=True)
class Edited:
    text: str
    added: list[str]  # the keys written, as `key = value`, for a person


def managed_database(text: str, path: Path) -> Edited:
    """TEXT with `[database] managed = true`, a `listen` (the default, unless one is there) and the `url` of the
    cluster's database on it (DatabaseSettings.managed_url: the config says where the store is, as CONTRACTS asks,
    and a listen port changed later without the url is refused by name). A url already there must be
    PostgreSQL's, and is kept. TEXT must be a valid config (a ConfigError says why not)."""
    settings = parse(text, path).database
    if settings.url and not settings.url.startswith(("postgresql://", "postgres://")):
        raise ConfigTextError(f"{path}: [database] url names {settings.url}, not PostgreSQL: empty it first")
    if text and not text.endswith("\n"):
        text += "\n"  # a last line without its newline would run into the key added after it
    lines = text.splitlines(keepends=True)
    start, end = _section(lines, "database")
    url = settings.url or settings.model_copy(update={"managed": True}).managed_url
    if start is None:
        block = _keys(settings, ["managed", "url", "listen"], url)
        separator = "" if not text or text.endswith("\n\n") else "\n"
        return Edited(text + separator + "[database]\n" + "".join(block), [line.split("  #")[0] for line in block])
    body = lines[start + 1 : end]
    found = {key: _find(body, key) for key in ("managed", "url", "listen")}
    added = []
    managed_line, url_line = found["managed"], found["url"]
    if managed_line is not None and not settings.managed:
        body[managed_line] = _replace_value(body[managed_line], "managed", "true")
        added.append("managed = true")
    if url_line is not None and not settings.url:
        body[url_line] = _replace_value(body[url_line], "url", f'"{url}"')
        added.append(f'url = "{url}"')
    new = _keys(settings, [key for key, index in found.items() if index is None], url)
    added += [line.split("  #")[0] for line in new]
    # after url and managed (one line each), before listen (which may span lines)
    single = [index for index in (url_line, managed_line) if index is not None]
    at = found["listen"] if found["listen"] is not None else (max(single) + 1 if single else _after_keys(body))
    body[at:at] = new
    return Edited("".join(lines[: start + 1] + body + lines[end:]), added)


def _keys(settings: DatabaseSettings, keys: list[str], url: str) -> list[str]:
    lines = {
        "managed": f"managed = true  # jitaku runs this PostgreSQL cluster in postgres/ (password: {PASSFILE_NAME})\n",
        "url": f"url = \"{url}\"  # the cluster's jitaku database, on listen's first address\n",
        "listen": f"listen = [{', '.join(f'{chr(34)}{address}{chr(34)}' for address in settings.listen)}]"
        "  # where that cluster listens (one port)\n",
    }
    return [lines[key] for key in keys]


def _section(lines: list[str], name: str) -> tuple[int | None, int]:
    """The index of [NAME]'s header line, and of the line after its last (the next header's, or the end)."""
    start = None
    for index, line in enumerate(lines):
        header = HEADER.match(line)
        if start is None and header and header.group("name").strip("\"'") == name and "[[" not in line:
            start = index
        elif start is not None and ANY_HEADER.match(line):
            return start, index
    return start, len(lines)


def _find(body: list[str], key: str) -> int | None:
    pattern = re.compile(rf"\s*{key}\s*=")
    return next((index for index, line in enumerate(body) if pattern.match(line)), None)


def _after_keys(body: list[str]) -> int:
    """Past the section's last line that is not blank or a comment: new keys go with the others, not after the
    commented-out examples of the next section's."""
    keys = [index for index, line in enumerate(body) if line.strip() and not line.lstrip().startswith("#")]
    return keys[-1] + 1 if keys else 0


def _replace_value(line: str, key: str, value: str) -> str:
    """LINE with KEY's value replaced, its comment kept."""
    return re.sub(rf"^(\s*{key}\s*=\s*)({STRING}|[^#\s]+)", lambda match: match.group(1) + value, line, count=1)
