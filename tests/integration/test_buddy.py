"""Two jitakus watching each other (on loopback here; at two homes in life): when one dies, the other's
owner-facing channel hears of it, and each learns from the other how it looks from outside."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from tests.integration.harness import Jitaku
from tests.integration.test_health import Hook
from tests.peers import wait_until

TOKEN = "shared-buddy-token-7f3a"


def buddies(jitaku_factory: Any, stand_in: Any) -> tuple[Jitaku, Jitaku, Hook, Hook]:
    home: Jitaku = jitaku_factory(name="home")
    friend: Jitaku = jitaku_factory(name="friend")
    hooks = Hook(stand_in), Hook(stand_in)
    for server in (home, friend):  # each names the other's, before either starts
        server.fixed_port("mx")
        server.fixed_port("web")
    for me, other, hook in ((home, friend, hooks[0]), (friend, home, hooks[1])):
        me.settings["health"] = {
            "interval": 1,
            "buddy": {
                "url": f"http://127.0.0.1:{other.web_port}",
                "token": TOKEN,
                "name": "friend" if other is friend else "home",
                "theirs": [f"127.0.0.1:{other.smtp_port}"],
                "ours": [f"127.0.0.1:{me.smtp_port}"],
            },
        }
        me.settings["alerts"] = {"urls": [hook.url]}
        me.write_config()
        me.init("alice@example.test")
    return home, friend, hooks[0], hooks[1]


def test_buddies_alert_for_each_other_and_tell_each_other_how_they_look(jitaku_factory, stand_in) -> None:
    home, friend, home_hook, friend_hook = buddies(jitaku_factory, stand_in)
    home.start()
    friend.start()
    ran = home.cli("check", "buddy", "reachability", "--json", check=False)
    results = {r["check"]: r for r in json.loads(ran.stdout)}
    assert ran.returncode == 0, ran.stdout
    assert results["buddy"]["sentence"].startswith(
        f"our buddy friend answers: 127.0.0.1:{friend.smtp_port}, its jitaku"
    )
    assert results["reachability"]["sentence"] == f"seen from our buddy friend, 127.0.0.1:{home.smtp_port} answer."
    time.sleep(3)  # whichever started first has said its buddy was away, and then that it came
    home_hook.received.clear()
    friend_hook.received.clear()
    time.sleep(3)
    assert home_hook.received == [] and friend_hook.received == []  # all well: nothing to say

    died_at = time.monotonic()
    home.kill9()  # the power cut at home: home cannot say anything, its friend must
    # A round caught in the middle of the kill may first see only the web request cut off; the port's
    # silence is news of its own, so it comes in an alert of its own the next round at the latest.
    silent = f"our buddy home: 127.0.0.1:{home.smtp_port} does not answer (no connection"
    at, alert = wait_until(lambda: friend_hook.first(silent), timeout=15)
    assert at - died_at <= 2 + 1.5, f"{at - died_at:.2f} s"
    assert alert["title"] == "[mail.example.test] critical: buddy"
    assert "its jitaku does not answer" in alert["message"]

    home.start()
    wait_until(lambda: friend_hook.first("recovered: buddy"), timeout=15)


def test_the_buddy_endpoints_want_the_shared_token(jitaku_factory, stand_in) -> None:
    home, friend, _home_hook, _friend_hook = buddies(jitaku_factory, stand_in)
    friend.start()
    url = f"http://127.0.0.1:{friend.web_port}/api/buddy"
    assert httpx.get(url + "/hello").status_code == 401
    assert httpx.get(url + "/hello", headers={"Authorization": "Bearer wrong"}).status_code == 401
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(url + "/hello", headers=good).json()["hostname"] == "mail.example.test"
    assert httpx.post(url + "/probe", headers=good, json={"targets": ["nowhere"]}).status_code == 400
    probed = httpx.post(url + "/probe", headers=good, json={"targets": [f"127.0.0.1:{friend.smtp_port}"]}).json()
    assert probed == {"results": [{"target": f"127.0.0.1:{friend.smtp_port}", "ok": True, "error": None}]}
    home.settings["health"]["buddy"]["token"] = "not-the-shared-one"
    home.write_config()
    ran = home.cli("check", "reachability", "--json", check=False)
    (result,) = json.loads(ran.stdout)
    assert ran.returncode == 1
    assert result["sentence"] == "cannot ask our buddy friend how we look: it refused our token (HTTP 401)."
