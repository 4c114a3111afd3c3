"""Every POST form is guarded against cross-site forgery (issue 21, web/csrf.py): each form sent from the page
that serves it works, and the same POST without the page's CSRF field, with a wrong one, or with the field
but not the cookie it was made for (another site's form in the browser) is refused with a readable 403 page
and changes nothing; a POST to a path no route takes that way still gets the site's 405 or 404. One-click
unsubscribe (tests/integration/test_lists.py) and the buddy probe (test_buddy.py) still take their POSTs with no
token."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.forms import csrf_of, submit
from tests.integration.harness import Jitaku

ADMIN = {"address": "alice@example.test", "password": "secret-password", "next": "/admin/health"}
LIST = "sota@example.test"


@pytest.fixture
def web(jitaku_factory) -> Jitaku:
    """A running jitaku whose pages need a login from loopback too, with admin alice and a list."""
    server: Jitaku = jitaku_factory()
    server.settings["web"]["trust_loopback"] = False
    server.write_config()
    server.init("alice@example.test")
    server.start()
    server.cli("list", "create", LIST)
    return server


def browser(server: Jitaku) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{server.web_port}")


def forgeries(client: httpx.Client, page: str, action: str, data: dict[str, str]) -> list[httpx.Response]:
    """The POSTs another site could make the browser send: no field, a wrong one, its own copy of the page's
    field in a browser without the cookie (the cookie is SameSite=Strict), and the cookie's own value."""
    field = csrf_of(client.get(page).text)
    cookie = client.cookies["jitaku_csrf"]
    with httpx.Client(base_url=str(client.base_url)) as stranger:
        elsewhere = stranger.post(action, data={**data, "csrf": field})
    return [
        client.post(action, data=data),
        client.post(action, data={**data, "csrf": "0" * len(field)}),
        elsewhere,
        client.post(action, data={**data, "csrf": cookie}),
    ]


def assert_refused(answers: list[httpx.Response]) -> None:
    for answer in answers:
        assert answer.status_code == 403, (answer.request.url, answer.status_code, answer.text[:200])
        assert "Form refused" in answer.text and "Nothing was changed" in answer.text
        assert answer.headers["content-type"].startswith("text/html")


def test_logging_in_and_out_needs_the_forms_own_token(web: Jitaku) -> None:
    with browser(web) as client:
        assert_refused(forgeries(client, "/login", "/login", ADMIN))
        assert client.get("/api/health").status_code == 401  # no session was made
        assert "event=web_login " not in web.log()

        assert submit(client, "/login", ADMIN).status_code == 303
        assert client.get("/api/health").status_code == 200
        dashboard = client.get("/admin/health")
        assert "log out" in dashboard.text
        assert_refused(forgeries(client, str(dashboard.url), "/logout", {}))
        assert client.get("/api/health").status_code == 200  # still logged in
        assert "event=web_logout" not in web.log()

        assert submit(client, str(dashboard.url), {}, action="/logout").status_code == 303
        assert client.get("/api/health").status_code == 401


def test_a_post_no_route_takes_gets_the_sites_answer_not_a_403(web: Jitaku) -> None:
    with browser(web) as client:
        assert client.post("/", data={"x": "1"}).status_code == 405  # the blog's pages are only read
        assert client.post("/no/such/page/", data={"x": "1"}).status_code == 404


def test_subscribing_and_confirming_on_the_list_pages_need_their_token(web: Jitaku) -> None:
    def confirmations() -> list[tuple[str, str]]:
        return web.read(lambda s: [tuple(row) for row in s.run("SELECT token, address FROM list_confirmations", ())])

    page = f"/lists/{LIST}/subscribe"
    with browser(web) as client:
        assert_refused(forgeries(client, page, page, {"address": "hana@other.test"}))
        assert confirmations() == []  # nothing asked, nothing mailed

        asked = submit(client, page, {"address": "hana@other.test"})
        assert asked.status_code == 200 and "A confirmation has been mailed to hana@other.test." in asked.text
        [(token, who)] = confirmations()
        assert who == "hana@other.test"

        confirm = f"/lists/confirm/{token}"
        assert_refused(forgeries(client, confirm, confirm, {}))
        assert "hana@other.test" not in web.cli("list", "members", LIST).stdout

        joined = submit(client, confirm, {})
        assert joined.status_code == 200 and f"hana@other.test has joined {LIST}" in joined.text
    assert "hana@other.test" in web.cli("list", "members", LIST).stdout


def test_the_token_cookie_is_strict_and_hidden_from_scripts_and_multipart_forms_pass_too(web: Jitaku) -> None:
    with browser(web) as client:
        first = client.get("/login")
        cookie = first.headers["set-cookie"]
        assert cookie.startswith("jitaku_csrf=") and "SameSite=Strict" in cookie and "HttpOnly" in cookie
        assert "Secure" not in cookie  # plain HTTP: test_web_sessions.py checks HTTPS
        assert client.cookies["jitaku_csrf"] not in first.text  # the page carries a MAC of it, not the value
        again = client.get("/login")
        assert "set-cookie" not in again.headers and csrf_of(again.text) == csrf_of(first.text)  # one per browser

        fields = {**ADMIN, "csrf": csrf_of(first.text)}
        body = b"".join(
            f'--b\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in fields.items()
        )
        multipart = {"content-type": "multipart/form-data; boundary=b"}
        assert client.post("/login", content=body + b"--b--\r\n", headers=multipart).status_code == 303
