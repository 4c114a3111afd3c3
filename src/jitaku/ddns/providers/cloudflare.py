"""Cloudflare's API v4: with an API token, find the zone and the A or AAAA record by name, then set it; and the
TXT records of ACME's DNS-01 challenges (jitaku.acme.dns01), set and deleted with the same token."""

from __future__ import annotations

from typing import Any

import httpx

from jitaku.ddns.providers import USER_AGENT, Answer
from jitaku.interfaces import Address

DEFAULT_ENDPOINT = "https://api.cloudflare.com/client/v4"
KEEPALIVE = 7 * 86400.0  # Cloudflare keeps records for ever; this only re-checks now and then


class ApiError(Exception):
    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.message)
        self.answer = answer


class Cloudflare:
    keepalive = KEEPALIVE

    def __init__(self, name: str, zone: str, token: str, endpoint: str = "") -> None:
        self._name = name
        self._zone = zone
        self._headers = {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT}
        self._endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self._zone_id: str | None = None

    async def update(self, client: httpx.AsyncClient, address: Address) -> Answer:
        kind = "A" if address.version == 4 else "AAAA"
        try:
            zones = await self._call(client, "GET", "/zones", params={"name": self._zone})
            if not zones:
                return Answer(False, f"zone {self._zone} is not in this Cloudflare account", fatal=True)
            base = f"/zones/{zones[0]['id']}/dns_records"
            records = await self._call(client, "GET", base, params={"type": kind, "name": self._name})
            record = {"type": kind, "name": self._name, "content": str(address), "ttl": 60, "proxied": False}
            if records:
                await self._call(client, "PUT", f"{base}/{records[0]['id']}", json=record)
            else:
                await self._call(client, "POST", base, json=record)
        except ApiError as error:
            return error.answer
        return Answer(True, f"{kind} {self._name} set to {address}")

    async def set_txt(self, client: httpx.AsyncClient, name: str, value: str) -> str:
        """A TXT record NAME (ttl 60) holding VALUE, beside any other (two challenges for one name, a wildcard's and
        the name's, each have theirs); its id, for delete_txt. Raises ApiError with Cloudflare's answer."""
        record = {"type": "TXT", "name": name, "content": value, "ttl": 60}
        created = await self._call(client, "POST", await self._records(client), json=record)
        return str(created["id"])

    async def find_txt(self, client: httpx.AsyncClient, name: str, value: str) -> list[str]:
        """The ids of the TXT records NAME holding VALUE: one POSTed whose answer was lost is found so. Cloudflare
        may show a TXT's content in quotes."""
        found = await self._call(client, "GET", await self._records(client), params={"type": "TXT", "name": name})
        return [str(record["id"]) for record in found or [] if str(record.get("content", "")).strip('"') == value]

    async def delete_txt(self, client: httpx.AsyncClient, record_id: str) -> None:
        await self._call(client, "DELETE", f"{await self._records(client)}/{record_id}")

    async def _records(self, client: httpx.AsyncClient) -> str:
        """The zone's dns_records path, its zone id looked up once."""
        if self._zone_id is None:
            zones = await self._call(client, "GET", "/zones", params={"name": self._zone})
            if not zones:
                raise ApiError(Answer(False, f"zone {self._zone} is not in this Cloudflare account", fatal=True))
            self._zone_id = str(zones[0]["id"])
        return f"/zones/{self._zone_id}/dns_records"

    async def _call(self, client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await client.request(method, self._endpoint + path, headers=self._headers, **kwargs)
        except httpx.HTTPError as error:
            raise ApiError(Answer(False, f"Cloudflare unreachable: {error.__class__.__name__}")) from None
        if response.status_code in (401, 403):
            raise ApiError(Answer(False, f"Cloudflare refused the API token (HTTP {response.status_code})", fatal=True))
        if response.status_code == 429:
            wait = float(response.headers.get("Retry-After", "300") or 300)
            raise ApiError(Answer(False, "Cloudflare asks us to slow down", retry_after=wait))
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400 or not body.get("success", False):
            errors = (
                "; ".join(str(e.get("message", e)) for e in body.get("errors", [])) or f"HTTP {response.status_code}"
            )
            raise ApiError(Answer(False, f"Cloudflare: {errors}"))
        return body.get("result")
