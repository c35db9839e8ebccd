"""Accessibility and markup, proven by the tools: every page in English and Chinese, light and
dark, for a visitor and a member, with content that exercises every element (tests/content.py:
Markdown of every kind, attachments with a thumbnail, a link preview card, flash messages, form
errors, empty states, the chat, the error pages). axe-core runs inside Chromium on each page
(0 violations); the Nu Html Checker reads the same pages' HTML as the server sent it, all in one
run of vnu.jar (0 errors). Both come from npm into node_modules/ (scripts/test installs them).
Light pages are seen at desktop width and dark ones at phone width, so both layouts are checked
without doubling the visits."""

import asyncio
import json
import os
import re
import shutil
import subprocess

import pytest

from tests import content
from tests import serverproc as sp
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, skip_or_fail

DB = sp.database_name("a11y")
pytestmark = [pytest.mark.browser]
NODE_MODULES = os.path.join(sp.PROJECT, "node_modules")
AXE = os.path.join(NODE_MODULES, "axe-core", "axe.min.js")
VNU = os.path.join(NODE_MODULES, "vnu-jar", "build", "dist", "vnu.jar")
COMBOS = [(lang, theme) for lang in ("en", "zh") for theme in ("light", "dark")]
LONG_QUERY = "q" * 201
DESKTOP, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}


def tool_or_skip(path, what):
    if not os.path.exists(path):
        skip_or_fail("%s is not installed (%s): scripts/test installs it with npm." % (what, path))


@pytest.fixture(scope="module")
def a11y_site(tmp_path_factory):
    """A fresh server with one member and no stories yet: (base URL, ids, fill), where fill()
    adds tests/content.py's stories, files and cards to ids."""
    upload_dir = str(tmp_path_factory.mktemp("a11y-uploads"))
    sp.drop_databases(DB)
    try:
        with sp.running_server(DB, extra=["--upload_dir=" + upload_dir]) as (_server, port):
            ids = {"early": content.member(port, "early_bird")}  # a member who sees the empty index
            yield "http://127.0.0.1:%d" % port, ids, lambda: ids.update(content.seed(port, DB))
    finally:
        sp.drop_databases(DB)


EMPTY = [
    ("index, empty", None, [("goto", "/")]),
    ("index, empty, member", "early", [("goto", "/")]),
]


MAIN, TOKENS = "main form", "form[action='/account/tokens']"


def go(path):
    return ("goto", path)


def submit(form, **fields):
    return ("submit", form, fields)


def visits(ids, combo=""):
    """(name, who, steps): who is None (a visitor) or a member's key in ids; steps are
    ("goto", path) or ("submit", form selector, {field: value}) or ("chat", message)."""
    rich, zh, plain = "/story/%d" % ids["rich"], "/story/%d" % ids["zh"], "/story/%d" % ids["plain"]
    return [
        ("index", None, [go("/")]),
        ("index page 2", None, [go("/?page=2")]),
        ("index past the end", None, [go("/?page=9")]),
        ("search", None, [go("/?q=light")]),
        ("search, no match", None, [go("/?q=zebra")]),
        ("search, too long", None, [go("/?q=" + LONG_QUERY)]),
        ("story", None, [go(rich)]),
        ("story in Chinese", None, [go(zh)]),
        ("login", None, [go("/login")]),
        ("login failed", None, [go("/login"), submit(MAIN, username="nobody", password="wrong horse")]),
        ("register", None, [go("/register")]),
        ("register with errors", None, [go("/register"), submit(MAIN, username="a", password="short")]),
        ("404", None, [go("/no/such/page")]),
        ("400", None, [go("/?page=0")]),
        ("405", None, [go("/logout")]),
        ("index, member", "writer", [go("/")]),
        ("story, owner", "writer", [go(rich)]),
        ("story, owner, no files", "writer", [go(plain)]),
        ("new story", "writer", [go("/story/new")]),
        ("new story with errors", "writer", [go("/story/new"), submit(MAIN, title=" ", body=" ")]),
        ("published (flash)", "writer", [go("/story/new"), submit(MAIN, title=combo, body="*Hi*")]),
        ("edit story", "writer", [go(plain + "/edit")]),
        ("account", "reader", [go("/account")]),
        ("account, new token", "reader", [go("/account"), submit(TOKENS, name=combo[-20:])]),
        ("403", "reader", [go(rich + "/edit")]),
        ("chat", "writer", [go("/chat"), ("chat", "Hello from the checkers")]),
    ]


async def run_axe(page):
    result = await page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"][:5]]}
        for v in result["violations"]
    ]


async def visit_all(browser, base, ids, visits_of, results, html_dir):
    """Every combo's visits, the combos side by side (each a few browser contexts, one per
    member); axe's findings go into results[(lang, theme)][name], the HTML of the page's last
    document into html_dir."""
    with open(AXE, encoding="utf-8") as f:
        axe_source = f.read()

    async def combo(lang, theme):
        found = results.setdefault((lang, theme), {})
        contexts = {}
        try:
            for name, who, steps in visits_of("Written in %s, %s" % (lang, theme)):
                if who not in contexts:
                    cookies = ids[who].cookies if who else {}
                    contexts[who] = await new_context(browser, base, lang, theme, cookies)
                page = await contexts[who].new_page()
                saved = []  # the page's document responses
                page.on("response", lambda r, kept=saved: is_document(r) and kept.append(r))
                try:
                    await walk(page, base, steps)
                    await page.evaluate(axe_source)  # Runtime.evaluate: no page script, so the CSP allows it
                    found[name] = await run_axe(page)
                    last = [r for r in saved if not 300 <= r.status < 400][-1]
                    slug = re.sub(r"\W+", "-", "%s-%s-%s" % (lang, theme, name)).strip("-")
                    with open(os.path.join(html_dir, slug + ".html"), "w", encoding="utf-8") as f:
                        f.write(await last.text())
                except Exception as e:
                    raise AssertionError("%s (%s, %s): %s" % (name, lang, theme, e)) from e
                finally:
                    await page.close()
        finally:
            for context in contexts.values():
                await context.close()

    await asyncio.gather(*(combo(lang, theme) for lang, theme in COMBOS))


def is_document(response):
    return response.request.resource_type == "document"


async def new_context(browser, base, lang, theme, cookies):
    context = await browser.new_context(
        viewport=DESKTOP if theme == "light" else PHONE,
        locale="zh-CN" if lang == "zh" else "en-US",
        color_scheme=theme,
    )
    context.set_default_timeout(20000)
    cookies = dict(cookies, lang="zh_CN" if lang == "zh" else "en_US")
    if theme == "dark":
        cookies["theme"] = "dark"
    await context.add_cookies([{"name": k, "value": v, "url": base} for k, v in cookies.items()])
    return context


async def walk(page, base, steps):
    for step in steps:
        if step[0] == "goto":
            await page.goto(base + step[1])
        elif step[0] == "submit":
            form = page.locator(step[1])
            await form.evaluate("f => { f.noValidate = true; }")  # the server must answer
            for field, value in step[2].items():
                await form.locator("[name=%s]" % field).fill(value)
            async with page.expect_navigation():
                await form.locator("button[type=submit]").first.click()
        elif step[0] == "chat":
            await page.locator("#chat-users li").first.wait_for()  # connected: the presence frame
            await page.locator("#chat-input").fill(step[1])
            await page.locator("#chat-form button").click()
            await page.locator("#chat-log .message").last.wait_for()
    await page.wait_for_load_state("load")


async def check_site(base, ids, fill, html_dir):
    from playwright.async_api import Error, async_playwright

    results = {}
    async with async_playwright() as pw:
        try:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Error as e:
            return "Chromium did not start (%s), so the accessibility tests are skipped." % e
        try:
            await visit_all(browser, base, ids, lambda combo: EMPTY, results, html_dir)
            fill()
            await visit_all(browser, base, ids, lambda combo: visits(ids, combo), results, html_dir)
        finally:
            await browser.close()
    return results


@pytest.fixture(scope="module")
def checked(a11y_site, tmp_path_factory):
    """Every visit in every language and theme, the empty site first: {(lang, theme): {name: axe
    violations}}, and the directory of the HTML as the server sent it (for the Nu Html Checker)."""
    if not os.path.exists(CHROMIUM):
        skip_or_fail("Debian's Chromium (%s) is not installed: scripts/test installs it as root." % CHROMIUM)
    tool_or_skip(AXE, "axe-core")
    base, ids, fill = a11y_site
    html_dir = tmp_path_factory.mktemp("a11y-html")
    results = asyncio.run(check_site(base, ids, fill, html_dir))
    if isinstance(results, str):
        skip_or_fail(results)
    return results, html_dir


@pytest.mark.parametrize("lang,theme", COMBOS)
def test_axe_finds_no_violations(checked, lang, theme):
    results, _ = checked
    bad = {name: found for name, found in results[(lang, theme)].items() if found}
    assert not bad, json.dumps(bad, indent=1, ensure_ascii=False)


def test_the_nu_html_checker_finds_no_errors(checked):
    tool_or_skip(VNU, "The Nu Html Checker (vnu-jar)")
    if not shutil.which("java"):
        skip_or_fail("Java is not installed (Debian's default-jre-headless): scripts/test installs it.")
    _, html_dir = checked
    files = sorted(os.listdir(html_dir))
    assert len(files) == len(COMBOS) * (len(EMPTY) + len(visits({"rich": 0, "zh": 0, "plain": 0})))
    # One Java start for every page (a run per page would cost seconds each).
    done = subprocess.run(
        ["java", "-jar", VNU, "--format", "json", "--exit-zero-always", str(html_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(done.stderr or done.stdout)
    errors = [m for m in report["messages"] if m["type"] in ("error", "non-document-error")]
    assert not errors, json.dumps(errors[:20], indent=1, ensure_ascii=False)
