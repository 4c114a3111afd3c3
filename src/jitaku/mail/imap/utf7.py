"""Modified UTF-7 for mailbox names (RFC 3501 §5.1.3): how clients that have not enabled UTF8=ACCEPT
name "送信済み" or "Entwürfe"."""

from __future__ import annotations

import base64
import binascii


def encode(name: str) -> str:
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            data = "".join(run).encode("utf-16-be")
            out.append("&" + base64.b64encode(data).decode().rstrip("=").replace("/", ",") + "-")
            run.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            run.append(char)
    flush()
    return "".join(out)


def decode(name: str) -> str:
    """NAME decoded; ValueError when it is not valid modified UTF-7. RFC 3501 §5.1.3 gives each name one
    spelling (printable ASCII as itself, one run of base64 for each run of other characters, no bits to
    spare), and so do we: "&AGE-" for "a", or "&AOk-&AOk-" for "éé", would give one mailbox a second name
    that LIST never shows. Dovecot refuses those two as well."""
    out: list[str] = []
    position = 0
    while position < len(name):
        char = name[position]
        if char != "&":
            if not 0x20 <= ord(char) <= 0x7E:
                raise ValueError(f"{char!r} is not allowed in modified UTF-7")
            out.append(char)
            position += 1
            continue
        end = name.find("-", position)
        if end < 0:
            raise ValueError("a shifted run of modified UTF-7 does not end with '-'")
        encoded = name[position + 1 : end]
        if not encoded:
            out.append("&")
        else:
            padded = encoded.replace(",", "/") + "=" * (-len(encoded) % 4)
            try:
                out.append(base64.b64decode(padded, validate=True).decode("utf-16-be"))
            except (binascii.Error, UnicodeDecodeError):
                raise ValueError(f"&{encoded}- is not valid modified UTF-7") from None
        position = end + 1
    decoded = "".join(out)
    if encode(decoded) != name:
        raise ValueError(f"{name[:100]} is not modified UTF-7 as RFC 3501 §5.1.3 spells it")
    return decoded
