"""What the buddy client (jitaku.buddy_client) makes of a friend's refusals: the pair's witness and the buddy check
tell a person which setting to fix, the token or the targets."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from jitaku import buddy_client
from jitaku.config import BuddySettings

SETTINGS = BuddySettings(url="https://w.example", token="0123456789abcdef", ours=("203.0.113.5:25",))
REAL_CLIENT = httpx.AsyncClient


def refused_with(monkeypatch: pytest.MonkeyPatch, status: int, body: dict[str, Any]) -> str:
    """What the client says of a friend answering STATUS with BODY to a probe."""

    def client(**options: Any) -> httpx.AsyncClient:
        options.pop("verify", None)
        return REAL_CLIENT(transport=httpx.MockTransport(lambda request: httpx.Response(status, json=body)), **options)

    monkeypatch.setattr(httpx, "AsyncClient", client)
    with pytest.raises(buddy_client.Unreachable) as raised:
        asyncio.run(buddy_client.ask_probe(SETTINGS))
    assert raised.value.ja
    return str(raised.value)


def test_a_probe_refused_for_a_target_not_at_our_address_is_told_apart_from_a_refused_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    said = refused_with(monkeypatch, 403, {"error": "203.0.113.5:25 is not at your address 198.51.100.7"})
    assert "refused to probe a target that is not at our address as it sees us" in said
    assert "198.51.100.7" in said and "token" not in said
    assert refused_with(monkeypatch, 401, {"error": "unknown buddy"}) == "it refused our token (HTTP 401)"
    assert refused_with(monkeypatch, 403, {"error": "forbidden"}) == "it refused our token (HTTP 403)"


def test_an_answer_without_end_is_read_up_to_its_bound_and_not_understood(monkeypatch: pytest.MonkeyPatch) -> None:
    """A witness (or buddy) that streams without end must not fill the daemon's memory: the pair asks it every
    10 s while the primary is silent."""
    sent = 0

    async def endless() -> Any:
        nonlocal sent
        while True:
            sent += 65536
            yield b" " * 65536

    def client(**options: Any) -> httpx.AsyncClient:
        options.pop("verify", None)
        answer = httpx.MockTransport(lambda request: httpx.Response(200, content=endless()))
        return REAL_CLIENT(transport=answer, **options)

    monkeypatch.setattr(httpx, "AsyncClient", client)
    with pytest.raises(buddy_client.Unreachable, match="something other than JSON"):
        asyncio.run(buddy_client.ask_probe(SETTINGS))
    assert sent <= buddy_client.MAX_BODY + 2 * 65536
