"""MyDNS.jp: an HTTP GET with the master ID and password (Basic auth); MyDNS records the address the
request comes from, so the IPv4 and IPv6 records each have their own host name to call."""

from __future__ import annotations

import httpx

from jitaku.ddns.providers import USER_AGENT, Answer
from jitaku.interfaces import Address

ENDPOINTS = {4: "https://ipv4.mydns.jp/login.html", 6: "https://ipv6.mydns.jp/login.html"}
KEEPALIVE = 86400.0  # MyDNS drops records not renewed for about a week; once a day is its own advice


class MyDns:
    keepalive = KEEPALIVE

    def __init__(self, username: str, password: str, endpoint: str = "") -> None:
        self._auth = httpx.BasicAuth(username, password)
        self._endpoint = endpoint

    async def update(self, client: httpx.AsyncClient, address: Address) -> Answer:
        url = self._endpoint or ENDPOINTS[address.version]
        try:
            response = await client.get(url, auth=self._auth, headers={"User-Agent": USER_AGENT})
        except httpx.HTTPError as error:
            return Answer(False, f"MyDNS unreachable: {error.__class__.__name__}")
        if response.status_code in (401, 403):
            return Answer(False, f"MyDNS refused the master ID and password (HTTP {response.status_code})", fatal=True)
        if response.status_code != 200:
            return Answer(False, f"MyDNS answered HTTP {response.status_code}")
        return Answer(True, "MyDNS accepted the login")
