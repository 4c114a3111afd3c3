"""lists/requests.py without a daemon: a subscription asked on the list's web page and one mailed to
-request@ get the same confirmation mail and the same pending row, and the page leaves nothing in the inbox."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from jitaku.config import Settings
from jitaku.lists.runner import ListRunner
from jitaku.mail import dkim
from jitaku.mail.pipeline import Pipeline
from jitaku.mail.policy import Policy
from jitaku.store import Database, lists, queue
from jitaku.web import lists as list_pages
from tests.postgres import database_url

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

HOSTNAME = "mx.example.test"
WEB_URL = "https://mx.example.test"
LIST = "sota@example.test"
BY_WEB = "gina@other.test"
BY_MAIL = "hana@other.test"


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(database_url(tmp_path))
    with database.transaction() as connection:
        lists.create_list(connection, LIST, "SOTA", "[sota:%05d]", "list", "auto", "")
    yield database
    database.close()


def runner(database: Database) -> ListRunner:
    policy = Policy(Settings(domains=["example.test"]), database)
    pipeline = Pipeline(HOSTNAME, database, dkim.Signer([]), lambda: None, lambda: None)
    return ListRunner(database, dkim.Signer([]), policy, pipeline, HOSTNAME, WEB_URL, asyncio.Event(), lambda: None)


async def subscribe_on_the_page(database: Database, runner: ListRunner) -> str:
    app = Starlette(routes=list_pages.routes(database, runner.requests))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=WEB_URL) as client:
        response = await client.post(f"/lists/{LIST}/subscribe", data={"address": BY_WEB})
    assert response.status_code == 200
    return response.text


async def subscribe_by_mail(database: Database, runner: ListRunner) -> None:
    request = f"From: <{BY_MAIL}>\r\nTo: <sota-request@example.test>\r\nSubject: subscribe\r\n\r\n".encode()
    await database.transact(
        lambda tx: lists.add_inbox(tx, LIST, "request", "sota-request@example.test", BY_MAIL, request, time.time())
    )
    running = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(20):
            while await database.query(lambda s: lists.next_inbox(s, time.time())) is not None:
                await asyncio.sleep(0.05)
    finally:
        running.cancel()


def confirmations(database: Database) -> dict[str, tuple[str, str, str, str]]:
    """Each queued confirmation by recipient: envelope sender, From, Subject with the token masked, and text."""
    found = {}
    for entry in database.read_now(queue.list_queue):
        body = database.read_now(lambda c, queue_id=entry.id: queue.body_of(c, queue_id))
        assert body is not None
        message = message_from_bytes(body, policy=default_policy)
        text = message.get_body().get_content().replace("\r\n", "\n").replace(entry.recipients[0], "ADDRESS")
        subject = str(message["Subject"])
        token = subject.removeprefix("confirm ")
        assert re.fullmatch("[0-9a-f]{32}", token)
        assert database.read_now(lambda c, token=token: lists.find_confirmation(c, token))[1:] == (
            entry.recipients[0],
            "subscribe",
        )
        found[entry.recipients[0]] = (entry.sender, str(message["From"]), "confirm TOKEN", text.replace(token, "TOKEN"))
    return found


def test_a_subscription_on_the_web_page_gets_the_mailed_one_s_confirmation_and_leaves_no_inbox_item(
    database: Database,
) -> None:
    lists_runner = runner(database)
    page = asyncio.run(subscribe_on_the_page(database, lists_runner))
    assert f"A confirmation has been mailed to {BY_WEB}." in page
    # done when the page answers: nothing waits in the list's inbox for the runner
    assert database.read_now(lambda c: lists.next_inbox(c, time.time())) is None
    found_list = database.read_now(lambda c: lists.find_list(c, LIST))
    assert found_list is not None
    assert database.read_now(lambda c: lists.pending_confirmation(c, found_list.id, BY_WEB, "subscribe"))
    asyncio.run(subscribe_by_mail(database, lists_runner))
    found = confirmations(database)
    assert set(found) == {BY_WEB, BY_MAIL}
    assert found[BY_WEB] == found[BY_MAIL]
    assert found[BY_WEB][:3] == ("sota-bounces@example.test", "sota-request@example.test", "confirm TOKEN")
    assert found[BY_WEB][3] == (
        "subscribe: to confirm that ADDRESS wants to subscribe, reply to this mail keeping its subject, or open\n"
        f"  {WEB_URL}/lists/confirm/TOKEN\n"
    )
