"""The site in Debian's Chromium (Playwright's sync API) against server.py run as a process:
the newcomer's path through the forms, a clean console under the CSP, the stylesheets, a phone
screen, the dark theme, and a screenshot of the index (scripts/screenshots.py makes those in docs/)."""

import re
import struct

import pytest

from tests import serverproc as sp
from tests.browser import PASSWORD, Watched, log_in, main_button, open_menu

DB = sp.database_name("web")
LONG_WORD = "Supercalifragilisticexpialidocious" * 3  # no break opportunity: tests phone layout


pytestmark = [pytest.mark.browser]


STORIES = [
    ("The lighthouse keeper", "The lamp turned **all night**, and the keeper wrote down every ship."),
    ("Notes from a slow train", "Three hours to cross a valley.\n\n- tea\n- a borrowed book\n- rain"),
    ("What the baker knew", "Bread rises when it is ready, not when you are. *Patience* is an ingredient."),
]


@pytest.fixture(scope="module")
def site():
    """A fresh server on its own database, with one member and a few stories already there:
    (base URL, port, path of the newest story)."""
    sp.drop_databases(DB)
    try:
        with sp.running_server(DB) as (server, port):
            author = sp.Browser(port)
            assert author.register("reader_one", PASSWORD).status == 302
            for title, body in STORIES:
                r = author.post("/story/new", {"title": title, "body": body})
                assert r.status == 302
            yield "http://127.0.0.1:%d" % port, port, r.headers["Location"]
    finally:
        sp.drop_databases(DB)


@pytest.fixture
def make_page(browser_context, site):
    def make(width=1280, height=800, **kwargs):
        return Watched(browser_context(viewport={"width": width, "height": height}, **kwargs))

    return make


def test_screenshot_of_the_index(make_page, site, tmp_path):
    base, _, _ = site
    watched = make_page(1280, 800)
    watched.goto(base + "/")
    assert watched.page.locator(".story-card").count() >= 1
    shot = str(tmp_path / "index.png")
    watched.page.screenshot(path=shot)
    with open(shot, "rb") as f:
        header = f.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1280, 800)


def test_register_log_out_log_in_write_and_read(make_page, site):
    from playwright.sync_api import expect

    base, _, _ = site
    watched = make_page()
    page = watched.page

    watched.goto(base + "/")
    page.locator("header").get_by_role("link", name="Start writing").click()  # the visitor's main action
    page.get_by_label("Username", exact=True).fill("newcomer")
    page.get_by_label("Password (8 characters or more)", exact=True).fill(PASSWORD)
    page.get_by_label("Password again", exact=True).fill(PASSWORD)
    main_button(page, "Register").click()
    expect(page).to_have_url(base + "/")
    expect(page.locator(".flash")).to_have_text("Welcome, newcomer! Your account is ready.")
    open_menu(page)
    expect(page.get_by_role("link", name="newcomer")).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()

    page.get_by_role("button", name="Log out").click()
    expect(page.locator(".flash")).to_have_text("You are signed out.")
    expect(page.get_by_role("link", name="Log in")).to_be_visible()
    expect(page.get_by_role("link", name="newcomer")).to_have_count(0)

    page.get_by_role("link", name="Log in").click()
    page.get_by_label("Username", exact=True).fill("newcomer")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    main_button(page, "Log in").click()
    expect(page.locator(".flash")).to_have_text("Signed in as newcomer.")
    open_menu(page)
    expect(page.get_by_role("link", name="newcomer")).to_be_visible()

    page.get_by_role("link", name="Write").click()
    page.get_by_label("Title", exact=True).fill("The night ferry <3")
    page.get_by_label("Story (Markdown)", exact=True).fill(
        "It left at **midnight**.\n\n- a gull\n- the fog\n\n<script>alert(1)</script>"
    )
    page.get_by_role("button", name="Publish").click()
    expect(page).to_have_url(re.compile(re.escape(base) + r"/story/\d+$"))
    story_url = page.url
    expect(page.locator(".flash")).to_have_text("Story published.")
    expect(page.get_by_role("heading", level=1)).to_have_text("The night ferry <3")
    expect(page.locator(".story-body strong")).to_have_text("midnight")
    expect(page.locator(".story-body li")).to_have_count(2)
    expect(page.locator(".story-body")).to_contain_text("<script>alert(1)</script>")  # shown, not run
    expect(page.locator(".meta")).to_contain_text("newcomer")

    page.get_by_role("link", name="Storyhouse").click()
    link = page.get_by_role("link", name="The night ferry <3")
    expect(link).to_be_visible()
    assert base + link.get_attribute("href") == story_url

    open_menu(page)
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("link", name="Log in")).to_be_visible()
    expect(page.get_by_role("link", name="Write")).to_have_count(0)
    watched.check()


def test_pages_have_no_console_errors_or_csp_violations(make_page, site):
    base, _, story_path = site
    watched = make_page()
    for path in ("/", story_path, "/login", "/register", "/?q=lighthouse"):
        watched.goto(base + path)
    response = watched.page.goto(base + "/no/such/page")
    assert response.status == 404
    assert watched.problems == [
        "Failed to load resource: the server responded with a status of 404 (Not Found)"
    ]  # the page itself, which is right
    watched.problems.clear()
    watched.check()
    log_in(watched.page, base, "reader_one")
    for path in ("/", "/story/new", story_path + "/edit", "/account"):
        response = watched.goto(base + path)
        assert response.status == 200, path


def test_stylesheets_load_and_apply(make_page, site):
    base, _, _ = site
    watched = make_page()
    css = {}
    watched.page.on(
        "response",
        lambda r: (
            r.url.split("?")[0].endswith(".css")
            and css.setdefault(r.url.split("?")[0].rsplit("/", 1)[1], r.status)
        ),
    )
    watched.goto(base + "/")
    assert css == {"base.css": 200, "site.css": 200}
    style = watched.page.evaluate("""() => {
        const body = getComputedStyle(document.body);
        const main = getComputedStyle(document.querySelector('main'));
        return {font: body.fontFamily, margin: body.margin, mainMax: main.maxWidth,
                sheets: document.styleSheets.length};
    }""")
    assert style["sheets"] >= 2
    assert "Times" not in style["font"]  # base.css's system font stack, not the default serif
    assert style["margin"] == "0px"  # the browser's default body margin is 8px
    assert style["mainMax"] != "none"  # site.css: main.container has a max width


def test_layout_fits_a_phone(make_page, site):
    base, port, _ = site
    # Long unbroken words in a title, a body and a link must wrap, not widen the page.
    author = sp.Browser(port)
    assert author.register("long_words", PASSWORD).status == 302
    r = author.post(
        "/story/new",
        {"title": "Notes " + LONG_WORD, "body": LONG_WORD + "\n\nhttps://example.com/" + LONG_WORD},
    )
    assert r.status == 302
    story_path = r.headers["Location"]
    watched = make_page(390, 844, is_mobile=True, has_touch=True, device_scale_factor=3)
    page = watched.page

    def fits():
        width = page.evaluate("document.scrollingElement.scrollWidth")
        assert width <= 390, "%s is %dpx wide on a 390px phone" % (page.url, width)

    for path in ("/", story_path, "/login", "/register"):
        watched.goto(base + path)
        fits()
    log_in(page, base, "reader_one")
    for path in ("/", "/story/new", "/account"):
        watched.goto(base + path)
        fits()


def test_dark_theme_is_remembered(make_page, site):
    base, _, _ = site
    watched = make_page(color_scheme="light")
    page = watched.page
    watched.goto(base + "/")
    background = "getComputedStyle(document.documentElement).backgroundColor"
    light = page.evaluate(background)
    open_menu(page)
    with page.expect_navigation():
        page.get_by_role("button", name="Dark theme").click()  # one click
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    dark = page.evaluate(background)
    assert dark != light
    watched.goto(base + "/login")  # the choice is a cookie: it stays on the next page
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
