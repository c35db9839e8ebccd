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
from tests.browser import CHROMIUM, CHROMIUM_ARGS, skip_or_fail

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
    adds tests/content.py's stories, files and cards to ids (the first call only)."""
    upload_dir = str(tmp_path_factory.mktemp("a11y-uploads"))
    sp.drop_databases(DB)
    try:
        # No page cache: a date set in the database shows on the next page (the times test).
        extra = ["--upload_dir=" + upload_dir, "--page_cache_seconds=0"]
        with sp.running_server(DB, extra=extra) as (_server, port):
            ids = {"early": content.member(port, "early_bird")}  # a member who sees the empty index

            def fill():  # once: the visits of the empty site come first
                if "writer" not in ids:
                    ids.update(content.seed(port, DB))
                    ids["port"] = port

            yield "http://127.0.0.1:%d" % port, ids, fill
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
        # A form's page with its errors holds everything the plain one has, and the messages.
        ("login failed", None, [go("/login"), submit(MAIN, username="nobody", password="wrong horse")]),
        ("register with errors", None, [go("/register"), submit(MAIN, username="a", password="short")]),
        ("404", None, [go("/no/such/page")]),
        ("index, member", "writer", [go("/")]),
        ("story, owner", "writer", [go(rich)]),
        ("story, owner, no files", "writer", [go(plain)]),
        ("new story with errors", "writer", [go("/story/new"), submit(MAIN, title=" ", body=" ")]),
        ("published (flash)", "writer", [go("/story/new"), submit(MAIN, title=combo, body="*Hi*")]),
        ("edit story", "writer", [go(plain + "/edit")]),
        ("account, no tokens", "writer", [go("/account")]),  # an empty state
        ("account, new token", "reader", [go("/account"), submit(TOKENS, name=combo[-20:])]),
        ("403", "reader", [go(rich + "/edit")]),  # error.html, as the 400, 404 and 405 pages
        ("405", "reader", [go("/logout")]),
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
    print("axe-core (%s, %s): %d pages" % (lang, theme, len(results[(lang, theme)])))
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
    warnings = [m for m in report["messages"] if m.get("subType") == "warning"]
    print("Nu Html Checker: %d pages, %d errors, %d warnings" % (len(files), len(errors), len(warnings)))
    assert not errors, json.dumps(errors[:20], indent=1, ensure_ascii=False)


# --- what the tools do not check: focus, the skip link, one header row, the theme toggle, times ---


def browse(work, **context_options):
    """Run `await work(page)` in a fresh Chromium page (async Playwright, its own event loop)."""
    from playwright.async_api import async_playwright

    if not os.path.exists(CHROMIUM):
        skip_or_fail("Debian's Chromium (%s) is not installed: scripts/test installs it as root." % CHROMIUM)

    async def run():
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = await browser.new_context(**context_options)
                context.set_default_timeout(10000)
                return await work(await context.new_page())
            finally:
                await browser.close()

    return asyncio.run(run())


def contrast(rgb1, rgb2):
    """WCAG contrast ratio of two 'rgb(r, g, b)' strings."""

    def luminance(rgb):
        channels = [int(c) / 255 for c in re.findall(r"[\d.]+", rgb)[:3]]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    high, low = sorted((luminance(rgb1), luminance(rgb2)), reverse=True)
    return (high + 0.05) / (low + 0.05)


FOCUSED = """() => {
  const el = document.activeElement, style = getComputedStyle(el);
  // The ring is drawn outside the element (outline-offset >= 0): what is behind it is the parent's.
  let back = el.parentElement, bg = 'rgba(0, 0, 0, 0)';
  while (back && (bg = getComputedStyle(back).backgroundColor).endsWith(', 0)')) back = back.parentElement;
  if (!back) bg = getComputedStyle(document.documentElement).backgroundColor;
  const box = el.getBoundingClientRect();
  return {tag: el.tagName, text: (el.textContent || '').trim().slice(0, 30), outline: style.outlineStyle,
          width: parseFloat(style.outlineWidth), color: style.outlineColor, bg: bg, top: box.top, id: el.id};
}"""


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_keyboard_focus_is_visible_with_3_to_1_contrast_and_a_skip_link_comes_first(a11y_site, theme):
    base, ids, fill = a11y_site
    fill()

    async def work(page):
        await page.goto(base + "/story/%d" % ids["rich"])
        seen = []
        for _ in range(14):
            await page.keyboard.press("Tab")
            seen.append(await page.evaluate(FOCUSED))
        await page.goto(base + "/")
        await page.keyboard.press("Tab")
        await page.keyboard.press("Enter")
        after_skip = await page.evaluate("document.activeElement.id")
        return seen, after_skip

    seen, after_skip = browse(work, color_scheme=theme, viewport=DESKTOP)
    assert seen[0]["text"] == "Skip to the content" and seen[0]["top"] >= 0  # shown when focused
    assert after_skip == "main"
    for focused in seen:
        assert focused["outline"] == "solid" and focused["width"] >= 2, focused
        assert contrast(focused["color"], focused["bg"]) >= 3, focused


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("who", [None, "writer"])
def test_the_phone_header_is_one_row(a11y_site, lang, who):
    base, ids, fill = a11y_site
    fill()

    async def work(page):
        cookies = dict(ids[who].cookies if who else {}, lang="zh_CN" if lang == "zh" else "en_US")
        await page.context.add_cookies([{"name": k, "value": v, "url": base} for k, v in cookies.items()])
        await page.goto(base + "/")
        header = await page.locator("header.site-header").bounding_box()
        items = await page.evaluate(
            "() => [...document.querySelectorAll('.site-nav > a, .nav-actions > li')]"
            ".filter(e => e.offsetParent)"
            ".map(e => { const b = e.getBoundingClientRect(); return b.top + b.height / 2; })"
        )
        await page.locator("#site-menu summary").click()
        menu = await page.locator(".menu-panel").inner_text()
        return header, items, menu

    header, centres, menu = browse(work, viewport=PHONE, is_mobile=True, has_touch=True)
    assert header["height"] <= 64, header
    assert len(centres) == 3 and max(centres) - min(centres) <= 4, centres  # name, main action, menu
    want = {"en": ["Language", "Theme"], "zh": ["语言", "主题"]}[lang]
    want += (
        {"en": ["Chat", "Your account", "Log out"], "zh": ["聊天", "你的账号", "退出"]}[lang] if who else []
    )
    for word in want:
        assert word in menu, (word, menu)


def test_the_theme_toggles_in_one_click_without_javascript(a11y_site):
    base, _ids, _fill = a11y_site

    async def work(page):
        seen = []

        async def click(name):
            await page.locator("#site-menu summary").click()
            async with page.expect_navigation():
                await page.locator("#site-menu").get_by_role("button", name=name, exact=True).click()
            seen.append(await page.evaluate("document.documentElement.dataset.theme || 'auto'"))

        await page.goto(base + "/login")
        await click("Dark theme")
        await click("Light theme")
        await click("Auto")
        await page.locator("#site-menu summary").click()
        flips = []
        for scheme in ("light", "dark"):
            await page.emulate_media(color_scheme=scheme)
            buttons = await page.locator(".theme-form button").all()
            flips.append([(await b.inner_text()).strip() for b in buttons if await b.is_visible()])
        return seen, page.url, flips

    seen, url, flips = browse(work, java_script_enabled=False, color_scheme="light")
    assert seen == ["dark", "light", "auto"] and url == base + "/login"
    # In Auto, the one button flips away from what the system shows.
    assert flips == [["Dark theme", "Auto"], ["Light theme", "Auto"]]


def test_times_in_the_readers_zone_and_utc_without_javascript(a11y_site):
    base, ids, fill = a11y_site
    fill()
    writer = ids["writer"]
    r = writer.post("/story/new", {"title": "Written before midnight UTC", "body": "Late."})
    story = r.headers["Location"]
    con = sp.mysql_connection(DB)
    try:
        with con.cursor() as cur:
            cur.execute(
                "UPDATE stories SET created_at = '2026-01-10 20:30:00', updated_at = '2026-01-10 20:30:00'"
                " WHERE id = %s",
                (int(story.rsplit("/", 1)[1]),),
            )
        con.commit()
    finally:
        con.close()

    def reader(lang, script=True):
        async def work(page):
            await page.context.add_cookies([{"name": "lang", "value": lang, "url": base}])
            await page.goto(base + story)
            byline = await page.locator(".byline time").first.inner_text()
            title = await page.locator(".byline time").first.get_attribute("title")
            await page.goto(base + "/story/%d" % ids["rich"])
            recent = await page.locator(".byline time").first.inner_text()
            await page.goto(base + "/")
            card = await page.locator(".story-card time").first.inner_text()
            return byline, title, recent, card

        return browse(work, timezone_id="Asia/Shanghai", java_script_enabled=script)

    byline, title, recent, card = reader("en_US")
    assert byline == "Jan 11, 2026, 04:30 AM" and card == "Jan 11, 2026"  # 20:30 UTC is 04:30 in Beijing
    assert "January 11, 2026" in title and "GMT+8" in title
    assert re.fullmatch(r"\d+ minutes ago", recent), recent
    byline, title, recent, card = reader("zh_CN")
    assert byline == "2026年1月11日 04:30" and card == "2026年1月11日"
    assert re.fullmatch(r"\d+分钟前", recent), recent
    byline, title, recent, card = reader("zh_CN", script=False)
    assert byline == card == "2026年1月10日 下午8:30 UTC" and title is None


def test_code_blocks_scroll_inside_the_column_on_a_phone(a11y_site):
    base, ids, fill = a11y_site
    fill()

    async def work(page):
        await page.goto(base + "/story/%d" % ids["rich"])
        return await page.evaluate(
            """() => { const pre = document.querySelector('.story-body pre');
                 return {page: document.scrollingElement.scrollWidth,
                         scrolls: pre.scrollWidth > pre.clientWidth,
                         overflow: getComputedStyle(pre).overflowX,
                         tabindex: pre.getAttribute('tabindex')}; }"""
        )

    got = browse(work, viewport=PHONE, is_mobile=True)
    assert got == {"page": 390, "scrolls": True, "overflow": "auto", "tabindex": "0"}
