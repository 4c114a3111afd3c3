"""The DynDNS2 protocol (dyn.com's, spoken by many providers and self-hosted servers):
GET /nic/update?hostname=NAME&myip=ADDRESS with Basic auth; the first word of the answer says what happened."""

from __future__ import annotations

import httpx

from jitaku.ddns.providers import USER_AGENT, Answer
from jitaku.interfaces import Address

DEFAULT_ENDPOINT = "https://members.dyndns.org"
KEEPALIVE = 28 * 86400.0  # dyn.com expires hosts not updated for 30 days
# The protocol: after 911 or dnserr a client waits at least 30 minutes; the others need a person.
SERVER_TROUBLE = ("911", "dnserr")
FATAL = {
    "badauth": "the user name or password is wrong",
    "nohost": "the host name does not exist in this account",
    "notfqdn": "the host name is not a fully qualified domain name",
    "badagent": "the server refuses this client",
    "!donator": "the account lacks a feature the request used",
    "abuse": "the host name is blocked for abuse",
    "numhost": "too many host names in one request",
}


class DynDns2:
    keepalive = KEEPALIVE

    def __init__(self, name: str, username: str, password: str, endpoint: str = "") -> None:
        self._name = name
        self._auth = httpx.BasicAuth(username, password)
        self._endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")

    async def update(self, client: httpx.AsyncClient, address: Address) -> Answer:
        try:
            response = await client.get(
                f"{self._endpoint}/nic/update",
                params={"hostname": self._name, "myip": str(address)},
                auth=self._auth,
                headers={"User-Agent": USER_AGENT},
            )
        except httpx.HTTPError as error:
            return Answer(False, f"DynDNS2 server unreachable: {error.__class__.__name__}")
        if response.status_code in (401, 403):
            return Answer(False, f"badauth: {FATAL['badauth']} (HTTP {response.status_code})", fatal=True)
        words = response.text.split()
        code = words[0] if words else ""
        if code in ("good", "nochg"):
            return Answer(True, " ".join(words[:2]))
        if code in FATAL:
            return Answer(False, f"{code}: {FATAL[code]}", fatal=True)
        if code in SERVER_TROUBLE:
            return Answer(False, f"{code}: the server has trouble; waiting 30 minutes", retry_after=1800.0)
        return Answer(False, f"unexpected answer (HTTP {response.status_code}): {response.text[:80]!r}")
