"""Members of a list whose archive is "members" log in with a one-time link mailed to their address: no password.

The page that asks for the address answers alike whether or not it is a member's (and whether or not a link
was sent), so it tells nobody who is on the list; links are limited per address and per client. A link's GET
shows a button and only its POST logs in, since mail scanners follow the links in mail. The login is a signed
cookie naming the list and the address: the list's id is under the signature, so one list's cookie opens no
other list, and each page checks that the address is still a member.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import deque
from urllib.parse import urlencode

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from jitaku import addresses, log
from jitaku.config import Settings
from jitaku.lists import notices
from jitaku.store import Database
from jitaku.store import archive as stored
from jitaku.store.lists import MailingList
from jitaku.web.bodies import read_form
from jitaku.web.comment_mail import LocalMail

COOKIE = "jitaku_archive_{}"  # one per list, by its id
COOKIE_DAYS = 30
LINKS_PER_ADDRESS = 3  # links mailed to one address for one list within LINK_WINDOW
LINKS_PER_CLIENT = 10  # login forms sent from one client address within LINK_WINDOW
LINK_WINDOW = 3600.0
MAX_CLIENTS = 10_000  # client addresses remembered for the rate limit


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


class ArchiveLogins:
    def __init__(self, settings: Settings, database: Database, mail: LocalMail | None, secret: str) -> None:
        """SECRET: web/secret.py's key, which signs every cookie of the web."""
        self._settings = settings
        self._database = database
        self._mail = mail
        self._key = hashlib.sha256(b"jitaku archive login\0" + secret.encode()).digest()
        self._clients: dict[str, deque[float]] = {}

    # the cookie

    def _mac(self, list_id: int, issued: int, address: str) -> str:
        message = f"{list_id}\0{issued}\0{address}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def cookie_value(self, list_id: int, address: str, now: float) -> str:
        issued = int(now)
        encoded = base64.urlsafe_b64encode(address.encode()).decode("ascii").rstrip("=")
        return f"{list_id}.{issued}.{encoded}.{self._mac(list_id, issued, address)}"

    def _cookie_address(self, request: Request, mailing_list: MailingList) -> str | None:
        value = request.cookies.get(COOKIE.format(mailing_list.id), "")
        parts = value.split(".")
        if len(parts) != 4 or not parts[0].isdecimal() or not parts[1].isdecimal():
            return None
        list_id, issued = int(parts[0]), int(parts[1])
        try:
            address = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        if list_id != mailing_list.id or not hmac.compare_digest(parts[3], self._mac(list_id, issued, address)):
            return None
        if time.time() - issued > COOKIE_DAYS * 86400:
            return None
        return address

    async def member(self, request: Request, mailing_list: MailingList) -> str | None:
        """The member this request's cookie logs in to MAILING_LIST, while they are one."""
        address = self._cookie_address(request, mailing_list)
        if address is None:
            return None
        still = await self._database.query(lambda s: stored.is_member(s, mailing_list.id, address), snapshot=False)
        return address if still else None

    # asking for a link

    def _client_allowed(self, request: Request, now: float) -> bool:
        client = request.client.host if request.client else "?"
        times = self._clients.get(client)
        if times is None:
            if len(self._clients) >= MAX_CLIENTS:
                self._clients.clear()  # a flood from many addresses: forget, rather than grow
            times = self._clients[client] = deque()
        while times and times[0] < now - LINK_WINDOW:
            times.popleft()
        if len(times) >= LINKS_PER_CLIENT:
            return False
        times.append(now)
        return True

    async def ask(
        self, request: Request, mailing_list: MailingList, target: str
    ) -> tuple[str, int, BackgroundTask | None]:
        """The login form's POST: (the address asked for, the status, the mailing to do after answering). The
        mail goes after the answer, so its time tells nothing either. The link leads to TARGET, the archive page
        the member came for."""
        form = await read_form(request)
        parsed = addresses.parse(str(form.get("address", "")).strip())
        if parsed is None:
            return "", 400, None
        who = addresses.normalize(str(parsed))
        now = time.time()
        if not self._client_allowed(request, now):
            return who, 429, None
        return who, 200, BackgroundTask(self._send_link, mailing_list, who, now, target)

    async def _send_link(self, mailing_list: MailingList, who: str, now: float, target: str) -> None:
        try:
            if not await self._database.query(lambda s: stored.is_member(s, mailing_list.id, who), snapshot=False):
                log.event("archive_login_refused", list=mailing_list.address, address=who, reason="not a member")
                return
            if self._mail is None:
                log.event("archive_login_refused", list=mailing_list.address, address=who, reason="no mail here")
                return
            token = secrets.token_urlsafe(32)
            hashed = token_hash(token)
            added = await self._database.transact(
                lambda tx: stored.add_login(tx, hashed, mailing_list.id, who, now, LINKS_PER_ADDRESS, LINK_WINDOW)
            )
            if not added:
                log.event("archive_login_refused", list=mailing_list.address, address=who, reason="rate limited")
                return
            url = f"{self._settings.web_url}/lists/{mailing_list.address}/archive/login/{token}"
            if target != f"/lists/{mailing_list.address}/archive/":
                url += "?" + urlencode({"next": target})
            sender = mailing_list.role_address("request")
            text = (
                f"Someone, probably you, asked to read the archive of {mailing_list.name} ({mailing_list.address})"
                f" on the web as {who}.\n\nThis link logs you in; it works once, within an hour:\n\n  {url}\n\n"
                "If it was not you, ignore this mail: nothing happens without the link.\n"
            )
            subject = f"Your link to the {mailing_list.name} archive"
            data = notices.message(sender, [who], subject, text, domain=mailing_list.domain)
            sent_ok = await self._mail.send(sender, [who], data)
            log.event("archive_login_mailed", list=mailing_list.address, address=who, accepted=sent_ok)
        except Exception as error:  # after the answer: nobody else hears of it
            log.event("archive_login_refused", list=mailing_list.address, address=who, reason=repr(error))

    # using a link

    async def link_address(self, mailing_list: MailingList, token: str) -> str | None:
        """Whom the link logs in, while it is unused and fresh (its GET page names them)."""
        hashed = token_hash(token)
        now = time.time()
        return await self._database.query(lambda s: stored.find_login(s, hashed, mailing_list.id, now), snapshot=False)

    async def use(self, request: Request, mailing_list: MailingList, token: str, target: str) -> Response | None:
        """The link's POST: use it up, set the cookie and go to TARGET; None when the link is no good."""
        hashed = token_hash(token)
        now = time.time()
        address = await self._database.transact(lambda tx: stored.use_login(tx, hashed, mailing_list.id, now))
        if address is None:
            return None
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE.format(mailing_list.id),
            self.cookie_value(mailing_list.id, address, now),
            max_age=COOKIE_DAYS * 86400,
            path="/lists/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="lax",  # a link to a post in a member's mail must find them logged in
        )
        log.event("archive_login", list=mailing_list.address, address=address)
        return response

    def log_out(self, request: Request, mailing_list: MailingList, target: str) -> Response:
        """This browser's cookie dropped (another device's stays until it expires or the member leaves)."""
        response = RedirectResponse(target, status_code=303)
        response.delete_cookie(
            COOKIE.format(mailing_list.id), path="/lists/", secure=request.url.scheme == "https", httponly=True
        )
        return response
