"""The language switcher in Debian's Chromium against server.py run as a process: a visitor switches
to Chinese and back on the same page (with and without JavaScript), a member's choice follows them
to another browser, the upload script speaks Chinese, and a screenshot of a Chinese page in which
the characters are drawn by a CJK font (Debian's fonts-noto-cjk), not as empty boxes."""

import shutil
import struct
import subprocess

import pytest

from tests import serverproc as sp
from tests.browser import PASSWORD, Watched, log_in, open_menu, skip_or_fail

DB = sp.database_name("web_locale")
pytestmark = [pytest.mark.browser]
ZH_TITLE = "灯塔看守人的笔记"
COOKIES = {}  # a second member's session, for the chat


@pytest.fixture(scope="module")
def locale_site():
    """A fresh server on its own database, a member and a story with a Chinese title."""
    sp.drop_databases(DB)
    try:
        with sp.running_server(DB) as (server, port):
            member = sp.Browser(port)
            assert member.register("lin_wei", PASSWORD).status == 302
            r = member.post("/story/new", {"title": ZH_TITLE, "body": "灯整夜转着，他记下每一艘船。"})
            assert r.status == 302
            friend = sp.Browser(port)
            assert friend.register("wang_fang", PASSWORD).status == 302
            COOKIES["wang_fang"] = dict(friend.cookies)
            yield "http://127.0.0.1:%d" % port, r.headers["Location"]
    finally:
        sp.drop_databases(DB)


@pytest.fixture
def new_page(browser_context):
    def make(**kwargs):
        kwargs.setdefault("viewport", {"width": 1280, "height": 800})
        kwargs.setdefault("locale", "en-US")  # Accept-Language: en-US
        return Watched(browser_context(**kwargs))

    return make


def html_lang(page):
    return page.evaluate("document.documentElement.lang")


def switch_to(page, name):
    """Click the language button in the header's menu and wait for the page it comes back to."""
    open_menu(page)
    with page.expect_navigation():
        page.locator("header").get_by_role("button", name=name, exact=True).click()


def cjk_font_installed():
    if not shutil.which("fc-list"):
        return False
    out = subprocess.run(["fc-list", ":lang=zh-cn", "family"], capture_output=True, text=True).stdout
    return bool(out.strip())


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_visitor_switches_to_chinese_and_back_on_the_same_page(new_page, locale_site, tmp_path):
    if not cjk_font_installed():
        skip_or_fail("No CJK font (Debian's fonts-noto-cjk) is installed: Chinese would show as boxes.")
    base, story_path = locale_site
    watched = new_page()
    page = watched.page
    watched.goto(base + "/?q=%E7%81%AF%E5%A1%94")  # a search for 灯塔: the query must survive
    assert html_lang(page) == "en"
    assert page.locator("h1").inner_text() == "Stories matching “灯塔”"

    switch_to(page, "中文")
    watched.check()
    assert page.url == base + "/?q=%E7%81%AF%E5%A1%94"
    assert html_lang(page) == "zh-CN"
    assert page.locator("h1").inner_text() == "“灯塔”的搜索结果"
    assert page.locator("header").get_by_role("link", name="登录").is_visible()
    assert page.locator(".story-card .meta").inner_text().startswith("作者：lin_wei · ")
    # The font stack names CJK fonts, and one of them draws the characters: a Han character is as
    # wide as it is tall in a CJK font (a missing glyph's box is narrower).
    family = page.evaluate("getComputedStyle(document.body).fontFamily")
    assert "Noto Sans CJK SC" in family and "PingFang SC" in family
    widths = page.evaluate(
        """() => {
          const span = document.createElement('span');
          span.style.fontSize = '40px';
          document.body.appendChild(span);
          span.textContent = '灯塔看守人';
          const han = span.getBoundingClientRect().width;
          span.remove();
          return han;
        }"""
    )
    assert 190 <= widths <= 210, widths  # five full-width characters at 40px
    shot = tmp_path / "index-zh.png"
    page.screenshot(path=str(shot), full_page=True)
    width, height = png_size(shot)
    assert width == 1280 and height >= 400

    watched.goto(base + story_path)
    assert html_lang(page) == "zh-CN" and page.locator("h1").inner_text() == ZH_TITLE
    byline = page.locator(".byline")
    assert byline.inner_text().startswith("作者：lin_wei · ") and "阅读约 1 分钟" in byline.inner_text()
    switch_to(page, "English")
    watched.check()
    assert page.url == base + story_path and html_lang(page) == "en"
    assert byline.inner_text().startswith("by lin_wei · ") and "1 min read" in byline.inner_text()


def test_switcher_works_without_javascript(new_page, locale_site):
    base, _story = locale_site
    watched = new_page(java_script_enabled=False)
    page = watched.page
    page.goto(base + "/login")
    assert page.locator("h1").inner_text() == "Log in"
    switch_to(page, "中文")
    assert page.url == base + "/login" and page.locator("h1").inner_text() == "登录"
    assert page.get_by_label("用户名", exact=True).is_visible()


def test_member_choice_follows_them_and_the_upload_script_speaks_chinese(new_page, locale_site, tmp_path):
    from playwright.sync_api import expect

    base, story_path = locale_site
    watched = new_page()
    page = watched.page
    log_in(page, base, "lin_wei")
    page.wait_for_url(base + "/")
    watched.goto(base + story_path)
    switch_to(page, "中文")
    assert html_lang(page) == "zh-CN"
    note = tmp_path / "笔记.txt"
    note.write_bytes("第一页\n".encode() * 100)
    page.set_input_files("#upload-files", str(note))
    page.locator("#upload-form").get_by_role("button", name="上传").click()
    expect(page.locator("#upload-status")).to_contain_text("已添加 1 个附件")
    expect(page.locator(".attachment-name")).to_have_text(["笔记.txt"])
    watched.check()
    open_menu(page)
    with page.expect_navigation():
        page.locator("header").get_by_role("button", name="退出").click()
    expect(page.locator(".flash")).to_have_text("你已退出登录。")

    # Another browser that asks for English: once she logs in, her saved choice wins.
    other = new_page(locale="en-GB")
    other_page = other.page
    log_in(other_page, base, "lin_wei")
    other_page.wait_for_url(base + "/")
    other.goto(base + "/account")
    assert html_lang(other_page) == "zh-CN"
    assert other_page.locator("h2").first.inner_text() == "已登录的设备"


def test_chat_in_chinese_and_a_phone_header(new_page, locale_site, tmp_path):
    from playwright.sync_api import expect

    base, _story = locale_site
    lin = new_page()
    log_in(lin.page, base, "lin_wei")
    lin.page.wait_for_url(base + "/")
    lin.context.add_cookies([{"name": "lang", "value": "zh_CN", "url": base}])
    lin.goto(base + "/")
    with lin.page.expect_navigation():
        lin.page.locator("header").get_by_role("link", name="聊天", exact=True).click()
    expect(lin.page.locator("#chat-status")).to_have_text("已连接")
    expect(lin.page.locator("#chat-count")).to_have_text("1 人在线")

    wang = new_page()
    cookies = dict(COOKIES["wang_fang"], lang="zh_CN")
    wang.context.add_cookies([{"name": k, "value": v, "url": base} for k, v in cookies.items()])
    wang.goto(base + "/chat")
    expect(wang.page.locator("#chat-status")).to_have_text("已连接")
    expect(lin.page.locator("#chat-count")).to_have_text("2 人在线")
    expect(lin.page.locator("#chat-log .notice").last).to_contain_text("wang_fang 加入了聊天")
    wang.page.locator("#chat-input").fill("你好，灯塔！")
    wang.page.get_by_role("button", name="发送").click()
    expect(lin.page.locator("#chat-log .message .body").last).to_have_text("你好，灯塔！")
    lin.page.screenshot(path=str(tmp_path / "chat-zh.png"))
    wang.page.close()
    expect(lin.page.locator("#chat-log .notice").last).to_contain_text("wang_fang 离开了聊天")
    expect(lin.page.locator("#chat-count")).to_have_text("1 人在线")
    lin.check()

    phone = new_page(viewport={"width": 390, "height": 844})
    phone.context.add_cookies([{"name": k, "value": v, "url": base} for k, v in cookies.items()])
    phone.goto(base + "/")
    assert html_lang(phone.page) == "zh-CN"
    width = phone.page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "the Chinese header is %dpx wide on a 390px phone" % width
