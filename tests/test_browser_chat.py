"""The chat page in Debian's Chromium (Playwright), two members in two browser contexts against
server.py run as a process: text stays text (no HTML from a message), presence and join notices,
Enter sends, and a server restart shows "Reconnecting…", keeps the input, and reconnects."""

import re

import pytest

from tests import serverproc as sp
from tests.browser import Watched

DB = sp.database_name("webchat")
XSS = "<img src=x onerror=alert(1)>"

pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
def chat_site():
    """A fresh server on its own database with two members: (port, {name: cookies})."""
    sp.drop_databases(DB)
    try:
        port = sp.free_port()
        with sp.running_server(DB, port=port) as (_, port):
            members = {}
            for name in ("ada_chat", "bo_chat"):
                browser = sp.Browser(port)
                assert browser.register(name).status == 302
                members[name] = browser.cookies
        yield port, members
    finally:
        sp.drop_databases(DB)


@pytest.fixture
def member_page(browser_context):
    def make(port, cookies):
        context = browser_context(viewport={"width": 1100, "height": 800})
        context.add_cookies(
            [{"name": k, "value": v, "url": "http://127.0.0.1:%d" % port} for k, v in cookies.items()]
        )
        watched = Watched(context)
        watched.dialogs = []
        watched.page.on("dialog", lambda d: (watched.dialogs.append(d.message), d.dismiss()))
        return watched

    return make


def test_two_members_chat_and_html_stays_text(chat_site, member_page):
    from playwright.sync_api import expect

    port, members = chat_site
    base = "http://127.0.0.1:%d" % port
    with sp.running_server(DB, port=port):
        ada, bo = member_page(port, members["ada_chat"]), member_page(port, members["bo_chat"])
        ada.goto(base + "/")
        ada.page.locator("header").get_by_role("link", name="Chat", exact=True).click()
        expect(ada.page.locator("#chat-status")).to_have_text("Connected")
        expect(ada.page.locator("#chat-users li")).to_have_text(["ada_chat"])

        bo.goto(base + "/chat")
        expect(bo.page.locator("#chat-status")).to_have_text("Connected")
        expect(bo.page.locator("#chat-users li")).to_have_text(["ada_chat", "bo_chat"])
        expect(ada.page.locator("#chat-users li")).to_have_text(["ada_chat", "bo_chat"])
        expect(ada.page.locator("#chat-log .notice").last).to_contain_text("bo_chat joined")

        bo.page.locator("#chat-input").fill(XSS)
        bo.page.locator("#chat-input").press("Enter")
        for page in (ada.page, bo.page):
            last = page.locator("#chat-log .message").last
            expect(last.locator(".body")).to_have_text(XSS)
            expect(last.locator(".who")).to_have_text("bo_chat")
            expect(last.locator("time")).to_have_text(re.compile(r"\d"))  # a local time
            assert page.locator("#chat-log img").count() == 0
        expect(bo.page.locator("#chat-input")).to_have_value("")
        ada.page.wait_for_timeout(300)  # an onerror handler would have run by now
        for watched in (ada, bo):
            assert watched.dialogs == []
            watched.check()  # no CSP violation, no console error

    # The server is gone: the page says so, keeps what is typed, and comes back by itself.
    expect(ada.page.locator("#chat-status")).to_have_text("Reconnecting…")
    ada.page.locator("#chat-input").fill("typed while away")
    ada.page.locator("#chat-input").press("Enter")
    expect(ada.page.locator("#chat-input")).to_have_value("typed while away")
    with sp.running_server(DB, port=port):
        expect(ada.page.locator("#chat-status")).to_have_text("Connected", timeout=20000)
        expect(ada.page.locator("#chat-log .message .body").last).to_have_text(XSS)  # history again
        ada.page.locator("#chat-input").press("Enter")
        expect(ada.page.locator("#chat-log .message .body").last).to_have_text("typed while away")
        expect(ada.page.locator("#chat-input")).to_have_value("")
