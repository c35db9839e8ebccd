"""Helpers for the browser tests (Debian's Chromium through Playwright's sync API, against server.py
run as a process): where Chromium is, skipping or failing when it cannot run, a page that records
console errors and CSP violations, and logging in through the form. The `chromium` and
`browser_context` fixtures are in conftest.py."""

import os

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery"  # the browser tests' members

# CI sets STORYHOUSE_REQUIRE_BROWSER=1: there a missing browser is a failure, not a skip.
REQUIRED = os.environ.get("STORYHOUSE_REQUIRE_BROWSER") == "1"


def skip_or_fail(sentence):
    if REQUIRED:
        pytest.fail(sentence)
    pytest.skip(sentence)


class Watched:
    """A page whose console errors, uncaught errors and CSP violations are recorded."""

    def __init__(self, context):
        self.context = context
        self.problems = []
        context.add_init_script(
            "window.__cspViolations = [];"
            "document.addEventListener('securitypolicyviolation', e =>"
            "  window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"
        )
        self.page = context.new_page()
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(m.text))
        self.page.on("pageerror", lambda e: self.problems.append(str(e)))

    def goto(self, url):
        response = self.page.goto(url)
        self.check()
        return response

    def check(self):
        violations = self.page.evaluate("window.__cspViolations || []")
        assert violations == [], "CSP violations on %s" % self.page.url
        assert self.problems == [], "console errors on %s" % self.page.url


def open_menu(page):
    """Open the header's menu (a <details>), where the account, language, theme and log out are."""
    menu = page.locator("#site-menu")
    if menu.get_attribute("open") is None:
        menu.locator("summary").click()


def main_button(page, name):
    """A button in <main> (the header has a link styled as a button with the same name)."""
    return page.locator("main").get_by_role("button", name=name, exact=True)


def log_in(page, base, username, password=PASSWORD):
    page.goto(base + "/login")
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    main_button(page, "Log in").click()
