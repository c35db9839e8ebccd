"""The pages in Chinese and English (issue 9): the catalogues are complete, the language comes from
the member's choice, the lang cookie, Accept-Language, then English; the switcher; form messages,
flash messages, error pages and dates in Chinese; the JSON API stays English."""

import ast
import asyncio
import csv
import html
import json
import os
import re

import pytest
import tornado.locale

from tests.helpers import cookie_header, query, set_cookie, text
from tests.i18n_keys import PROJECT, used_keys
from views import i18n
from views.forms import MESSAGES

ZH_PAGE = "最新故事"  # the index's heading in Chinese
EN_PAGE = "Newest stories"
PLACEHOLDER = re.compile(r"%\([a-z_]+\)[sd]|%[sd]|\{[a-z]+\}")
SAME_IN_CHINESE = {"JSON API"}  # a name, the same in both


def catalogue(code):
    """{kind: {key: translation}} of locale/<code>.csv, read as tornado.locale reads it."""
    rows = {"unknown": {}, "singular": {}, "plural": {}}
    with open(os.path.join(PROJECT, "locale", code + ".csv"), encoding="utf-8-sig") as f:
        for i, row in enumerate(csv.reader(f)):
            assert len(row) in (2, 3), "locale/%s.csv line %d: %r" % (code, i + 1, row)
            kind = (row[2] if len(row) == 3 else "") or "unknown"
            assert kind in rows, "locale/%s.csv line %d: plural indicator %r" % (code, i + 1, kind)
            assert row[0] not in rows[kind], "locale/%s.csv: %r twice" % (code, row[0])
            rows[kind][row[0]] = row[1]
    return rows


def html_lang(page):
    return re.search(r"<html lang=\"([^\"]+)\"", page).group(1)


# --- the catalogues ----------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["zh_CN", "en_US"])
def test_every_string_in_the_code_is_in_the_catalogue(code):
    """Scans the templates and views for _("...") and translate("...") (and the message tables):
    a string added to the code without a row in locale/<code>.csv fails here."""
    used, have = used_keys(), catalogue(code)
    assert len(used["unknown"]) > 150 and len(used["plural"]) >= 6  # the scan itself works
    for kind in used:
        missing = sorted(used[kind] - set(have[kind]))
        assert not missing, "locale/%s.csv lacks these %s strings: %s" % (code, kind, missing)
        stale = sorted(set(have[kind]) - used[kind])
        assert not stale, "locale/%s.csv has strings no code uses (%s): %s" % (code, kind, stale)


def test_the_scan_finds_strings_in_templates_and_handlers():
    used = used_keys()
    assert "Newest stories" in used["unknown"]  # template/index.html, _("...")
    assert "Story published." in used["unknown"]  # views/stories.py, self.locale.translate("...")
    assert "Password changed. %(count)d other sessions signed out." in used["plural"]
    assert MESSAGES["username_invalid"] in used["unknown"]


def test_chinese_translations_are_translated_and_keep_their_placeholders():
    zh = catalogue("zh_CN")
    for rows in zh.values():
        for key, value in rows.items():
            assert value.strip(), "empty translation of %r" % key
            if key not in SAME_IN_CHINESE:
                assert value != key, "%r is not translated" % key
                assert re.search(r"[\u4e00-\u9fff]", value), "%r: no Chinese in %r" % (key, value)
            assert sorted(PLACEHOLDER.findall(value)) == sorted(PLACEHOLDER.findall(key)), (key, value)


def test_english_catalogue_says_what_the_code_says():
    for rows in catalogue("en_US").values():
        for key, value in rows.items():
            assert sorted(PLACEHOLDER.findall(value)) == sorted(PLACEHOLDER.findall(key)), (key, value)


def test_plural_forms():
    i18n.load()
    en, zh = tornado.locale.get("en_US"), tornado.locale.get("zh_CN")
    one, many = "%(count)d file attached.", "%(count)d files attached."
    assert en.translate(one, many, 1) % {"count": 1} == "1 file attached."
    assert en.translate(one, many, 3) % {"count": 3} == "3 files attached."
    assert zh.translate(one, many, 1) % {"count": 1} == "已添加 1 个附件。"
    assert zh.translate(one, many, 3) % {"count": 3} == "已添加 3 个附件。"
    assert i18n.size_text(zh, 12) == "12 字节" and i18n.size_text(en, 1) == "1 byte"


def test_language_tags():
    for tag in ("zh", "zh-CN", "zh-Hans-CN", "ZH_tw", "zh-SG"):
        assert i18n.closest(tag) == "zh_CN"
    for tag in ("en", "en-GB", "EN-us"):
        assert i18n.closest(tag) == "en_US"
    for tag in ("fr", "", "*", "zhx"):
        assert i18n.closest(tag) is None


# --- which language a page is in ----------------------------------------------------------------


@pytest.mark.gen_test
async def test_english_by_default(client):
    r = await client.get("/")
    assert r.code == 200 and html_lang(text(r)) == "en" and EN_PAGE in text(r)
    assert "Accept-Language" in r.headers.get("Vary", "")


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "cookie,lang,heading",
    [("zh_CN", "zh-CN", ZH_PAGE), ("en_US", "en", EN_PAGE), ("klingon", "en", EN_PAGE)],
)
async def test_page_language_by_cookie(client, cookie, lang, heading):
    client.cookies["lang"] = cookie
    page = text(await client.get("/"))
    assert html_lang(page) == lang and heading in page


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "accept,lang",
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        ("zh", "zh-CN"),
        ("zh-TW", "zh-CN"),
        ("fr-FR, zh;q=0.5, en;q=0.4", "zh-CN"),
        ("en-US,en;q=0.9,zh-CN;q=0.8", "en"),
        ("zh;q=0.3, en;q=0.7", "en"),
        ("zh;q=0", "en"),
        ("zh;q=nonsense", "en"),
        ("fr", "en"),
        ("", "en"),
    ],
)
async def test_page_language_by_accept_language(client, accept, lang):
    page = text(await client.get("/login", headers={"Accept-Language": accept}))
    assert html_lang(page) == lang
    assert ("<h1>登录</h1>" if lang == "zh-CN" else "<h1>Log in</h1>") in page


@pytest.mark.gen_test
async def test_cookie_beats_accept_language(client):
    client.cookies["lang"] = "en_US"
    page = text(await client.get("/", headers={"Accept-Language": "zh-CN"}))
    assert html_lang(page) == "en" and EN_PAGE in page
    client.cookies["lang"] = "zh_CN"
    page = text(await client.get("/", headers={"Accept-Language": "en-US"}))
    assert html_lang(page) == "zh-CN" and ZH_PAGE in page


@pytest.mark.gen_test
async def test_every_page_in_chinese(client):
    """The pages a member sees, in Chinese, with none of their English words left."""
    await client.register("alice", "correct horse")
    story_id = await client.new_story("A story", "Some *words*")
    client.cookies["lang"] = "zh_CN"
    pages = {
        "/": [
            "最新故事",
            "写故事",
            "退出",
            "作者：<strong>alice</strong>",
            "主题",
            "跟随系统",
            "分享你的故事。",
        ],
        "/story/%d" % story_id: ["附件", "编辑", "添加附件", "上传", "还没有附件。"],
        "/story/new": ["写新故事", "标题", "正文（支持 Markdown）", "发布"],
        "/story/%d/edit" % story_id: ["编辑故事", "保存", "删除这篇故事"],
        "/account": ["已登录的设备", "当前设备", "API 令牌", "还没有令牌。", "修改密码", "再次输入新密码"],
        "/?q=zebra": ["没有找到与“zebra”相关的故事。", '<a href="/">查看全部故事</a>。'],
    }
    english = ["Newest stories", ">Write<", "Log out", "Attachments", "Publish", "Your sessions", "See all"]
    for path, words in pages.items():
        r = await client.get(path)
        assert r.code == 200, path
        page = text(r)
        assert html_lang(page) == "zh-CN", path
        for word in words:
            assert word in page, (path, word)
        for word in english:
            assert word not in page, (path, word)
    await client.logout()
    page = text(await client.get("/register"))
    assert "注册账号" in page and '已有账号？<a href="/login">登录</a>。' in page


@pytest.mark.gen_test
async def test_dates_in_the_readers_language(client):
    await client.register("alice", "correct horse")
    story_id = await client.new_story("Dated", "body")
    en = text(await client.get("/story/%d" % story_id))
    assert re.search(r"<time datetime=\"[0-9T:-]+Z\">\d\d [A-Z][a-z]{2} \d{4}, \d\d:\d\d UTC</time>", en)
    client.cookies["lang"] = "zh_CN"
    zh = text(await client.get("/story/%d" % story_id))
    assert re.search(
        r"<time datetime=\"[0-9T:-]+Z\">\d{4}年\d{1,2}月\d{1,2}日 [上下]午\d{1,2}:\d\d UTC</time>", zh
    )
    # The index too: without JavaScript a date is only right with its zone (a UTC day is not
    # Beijing's), so it says UTC like the rest (static/js/site.js shows the reader's own).
    index = text(await client.get("/"))
    assert re.search(
        r"<time datetime=\"[0-9T:-]+Z\">\d{4}年\d{1,2}月\d{1,2}日 [上下]午\d{1,2}:\d\d UTC</time>", index
    )


# --- the switcher -------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_switcher_for_a_visitor(client):
    page = text(await client.get("/login?next=%2Faccount"))
    form = re.search(r'<form method="post" action="/lang".*?</form>', page, re.S).group(0)
    assert 'name="_xsrf"' in form and 'name="back" value="/login?next=%2Faccount"' in form
    assert 'name="lang" value="zh_CN"' in form and "中文" in form and 'value="en_US"' not in form
    r = await client.post("/lang", {"lang": "zh_CN", "back": "/login?next=%2Faccount"})
    assert r.code == 302 and r.headers["Location"] == "/login?next=%2Faccount"
    assert set_cookie(r, "lang").value == "zh_CN"
    page = text(await client.get(r.headers["Location"]))
    assert html_lang(page) == "zh-CN" and "<h1>登录</h1>" in page
    assert 'name="lang" value="en_US"' in page and ">English<" in page  # and the way back
    r = await client.post("/lang", {"lang": "en_US", "back": "/"})
    assert r.code == 302 and html_lang(text(await client.get("/"))) == "en"


@pytest.mark.gen_test
async def test_switcher_on_a_page_that_answered_a_post_returns_to_the_form(client, base_url):
    await client.register("alice", "correct horse")
    r = await client.post(
        "/account/password",
        {"current": "wrong", "password": "x", "confirm": "y"},
        headers={"Referer": base_url + "/account?tab=1"},
    )
    assert r.code == 400 and 'name="back" value="/account?tab=1"' in text(r)
    r = await client.post(
        "/account/password", {"current": "wrong"}, headers={"Referer": "http://evil.example/x"}
    )
    assert 'name="back" value="/"' in text(r)


@pytest.mark.gen_test
@pytest.mark.parametrize("back", ["//evil.example/", "https://evil.example/", "", "/\\evil.example"])
async def test_switcher_returns_only_to_this_site(client, back):
    r = await client.post("/lang", {"lang": "zh_CN", "back": back})
    assert r.code == 302 and r.headers["Location"] == "/"


@pytest.mark.gen_test
async def test_switcher_refuses_bad_input(client):
    r = await client.post("/lang", {"lang": "xx_XX", "back": "/"})
    assert r.code == 400 and "Unknown language." in text(r) and "lang" not in client.cookies
    r = await client.post("/lang", {"lang": "zh_CN"}, xsrf=False)
    assert r.code == 403 and "lang" not in client.cookies
    assert (await client.get("/lang")).code == 405


@pytest.mark.gen_test
async def test_switcher_for_a_member_is_saved_and_survives_logout(client, make_client, db_settings):
    await client.register("alice", "correct horse")
    r = await client.post("/lang", {"lang": "zh_CN", "back": "/account"})
    assert r.code == 302 and r.headers["Location"] == "/account"
    assert query(db_settings, "SELECT locale FROM users WHERE username = 'alice'") == [{"locale": "zh_CN"}]
    assert "已登录的设备" in text(await client.get("/account"))
    await client.logout()
    # Another browser, which says English in both its cookie and its Accept-Language: once
    # alice logs in, her saved choice wins.
    other = make_client()
    other.cookies["lang"] = "en_US"
    r = await other.login("alice", "correct horse")
    assert r.code == 302
    page = text(await other.get("/", headers={"Accept-Language": "en"}))
    assert html_lang(page) == "zh-CN" and ZH_PAGE in page
    assert "欢迎回来，alice！" in page  # the flash of the login, in her language
    assert other.cookies["lang"] == "zh_CN"  # the browser took her choice at log in
    await other.logout()
    assert html_lang(text(await other.get("/"))) == "zh-CN"  # and keeps it once she has gone
    other.cookies["lang"] = "en_US"
    assert html_lang(text(await other.get("/"))) == "en"  # a visitor again: the cookie decides
    # Switching back saves English.
    await other.login("alice", "correct horse")
    await other.post("/lang", {"lang": "en_US", "back": "/"})
    assert query(db_settings, "SELECT locale FROM users WHERE username = 'alice'") == [{"locale": "en_US"}]


# --- messages ------------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_form_validation_messages_in_chinese(client):
    client.cookies["lang"] = "zh_CN"
    r = await client.register("a!", "short", "other")
    assert r.code == 400
    assert "请使用 3 到 32 个字母、数字或下划线。" in text(r) and "至少需要 8 个字符。" in text(r)
    r = await client.register("bob", "correct horse", "correct horsf")
    assert r.code == 400 and "两次输入的密码不一致。" in text(r)
    r = await client.post("/login", {"username": "", "password": ""})
    assert "请输入用户名。" in text(r) and "请输入密码。" in text(r)
    r = await client.login("nobody", "wrong password")
    assert r.code == 400 and "用户名不存在或密码错误。" in text(r)
    await client.register("carol", "correct horse")
    r = await client.post("/story/new", {"title": "", "body": " "})
    assert r.code == 400 and "请给故事起个标题。" in text(r) and "请写下你的故事。" in text(r)
    r = await client.get("/?q=" + "x" * 201)
    assert r.code == 400 and "搜索内容最多 200 个字符。" in text(r)
    r = await client.post("/account/password", {"current": "nope", "password": "longenough", "confirm": "x"})
    assert r.code == 400 and "当前密码不正确。" in text(r) and "两次输入的密码不一致。" in text(r)
    r = await client.post("/account/tokens", {"name": ""})
    assert r.code == 400 and "给令牌起个名字（比如使用它的脚本）。" in text(r)


@pytest.mark.gen_test
async def test_flash_messages_in_chinese(client):
    client.cookies["lang"] = "zh_CN"
    r = await client.register("alice", "correct horse")
    assert "欢迎你，alice！账号已经注册好了。" in text(await client.get(r.headers["Location"]))
    r = await client.post("/story/new", {"title": "T", "body": "B"})
    assert "故事已发布。" in text(await client.get(r.headers["Location"]))
    r = await client.post(
        "/account/password", {"current": "correct horse", "password": "a new one!", "confirm": "a new one!"}
    )
    assert "密码已修改，其他 0 个设备已退出登录。" in text(await client.get(r.headers["Location"]))
    r = await client.logout()
    assert "你已退出登录。" in text(await client.get(r.headers["Location"]))


@pytest.mark.gen_test
async def test_error_pages_in_chinese(client):
    client.cookies["lang"] = "zh_CN"
    r = await client.get("/nothing-here")
    assert r.code == 404 and html_lang(text(r)) == "zh-CN"
    assert "404 · 页面不存在" in text(r) and "这里什么也没有。" in text(r) and "返回故事列表" in text(r)
    r = await client.post("/story/new", {"title": "x"}, xsrf=False)
    assert r.code == 403 and "表单已过期，或者来自其他网站。请刷新页面后重试。" in text(r)
    r = await client.get("/?page=0")
    assert r.code == 400 and "页码无效。" in text(r)


@pytest.mark.gen_test
async def test_upload_texts_in_chinese(client):
    await client.register("alice", "correct horse")
    story_id = await client.new_story()
    client.cookies["lang"] = "zh_CN"
    page = text(await client.get("/story/%d" % story_id))
    form = re.search(r'<form method="post" enctype="multipart/form-data".*?>', page, re.S).group(0)
    assert 'data-text-uploading="正在上传…"' in form
    assert 'data-text-progress="{percent}% · 已上传 {loaded}，共 {total} · {speed}/s"' in form
    assert 'data-text-done-many="100% · 已添加 {count} 个附件（{size}，{speed}/s）。"' in form
    assert "<script" not in page.split("</main>")[0]  # words reach the script as data, not as code
    # The page script's JSON answers (not the JSON API) are in the reader's language too.
    r = await client.fetch(
        "/story/%d/attachments?_xsrf=%s" % (story_id, client.xsrf),
        "POST",
        body=b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--b--\r\n',
        headers={"Content-Type": "multipart/form-data; boundary=b", "Accept": "application/json"},
    )
    assert r.code == 400 and json.loads(r.body)["error"]["message"] == "请至少选择一个文件。"


@pytest.mark.gen_test
async def test_json_api_stays_english(client):
    headers = {"Accept-Language": "zh-CN"}
    client.cookies["lang"] = "zh_CN"
    r = await client.get("/api/stories?q=" + "x" * 201, headers=headers)
    assert r.code == 400 and json.loads(r.body)["error"]["message"] == MESSAGES["search_long"] % 200
    r = await client.get("/api/stories/4000000000", headers=headers)
    assert r.code == 404 and json.loads(r.body)["error"]["message"] == "No story has that id."
    r = await client.post("/api/stories", {"title": "x"}, xsrf=False, headers=headers)
    message = json.loads(r.body)["error"]["message"]
    assert r.code == 403 and message.startswith("Missing or wrong XSRF token"), message


@pytest.mark.gen_test
async def test_a_visitors_choice_is_kept_when_they_register(client, make_client, db_settings):
    await client.post("/lang", {"lang": "zh_CN", "back": "/register"})
    assert (await client.register("mei", "correct horse")).code == 302
    assert query(db_settings, "SELECT locale FROM users WHERE username = 'mei'") == [{"locale": "zh_CN"}]
    plain = make_client()  # never used the switcher: nothing saved, the browser decides
    assert (await plain.register("ada", "correct horse")).code == 302
    assert query(db_settings, "SELECT locale FROM users WHERE username = 'ada'") == [{"locale": None}]


# --- the chat page -------------------------------------------------------------------------------

CHAT_FRAME_ERRORS = re.compile(
    r'(?:return None, |send_error_frame\(|"message": )("(?:[^"\\]|\\.)*")( % MAX_BODY)?'
)


def chat_error_table(page):
    attribute = re.search(r'data-text-errors="([^"]*)"', page).group(1)
    return json.loads(html.unescape(attribute))


def chat_frame_messages():
    """The English sentences views/chat.py sends in error frames."""
    from views.chat import MAX_BODY

    with open(os.path.join(PROJECT, "views", "chat.py"), encoding="utf-8") as f:
        found = CHAT_FRAME_ERRORS.findall(f.read())
    return {ast.literal_eval(s) % MAX_BODY if fmt else ast.literal_eval(s) for s, fmt in found}


@pytest.mark.gen_test
async def test_chat_page_in_chinese(client):
    await client.register("alice", "correct horse")
    client.cookies["lang"] = "zh_CN"
    page = text(await client.get("/chat"))
    assert html_lang(page) == "zh-CN" and "<h1>聊天</h1>" in page
    for words in (
        'data-text-connected="已连接"',
        'data-text-joined="{user} 加入了聊天"',
        'data-text-online-many="{count} 人在线"',
        'placeholder="输入消息，按回车发送"',
        ">发送</button>",
        ">聊天</a>",
    ):
        assert words in page, words
    # Every error a chat frame can carry is in the page's table, translated.
    table = chat_error_table(page)
    messages = chat_frame_messages()
    assert len(messages) >= 8 and "A message is at most 2000 characters." in messages
    for message in messages:
        assert re.search(r"[\u4e00-\u9fff]", table.get(message, "")), message
    english = chat_error_table(
        text(await client.get("/chat", headers={"Cookie": "session=%s" % client.cookies["session"]}))
    )
    assert english["The message is empty."] == "The message is empty."


@pytest.mark.gen_test
async def test_chat_frames_stay_english(http_server, client, base_url):
    """The socket's frames are the same whatever the page's language: the page translates them."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    await client.register("alice", "correct horse")
    client.cookies["lang"] = "zh_CN"
    cookie = cookie_header(client.cookies)
    request = HTTPRequest(
        base_url.replace("http://", "ws://") + "/chat/ws",
        headers={"Cookie": cookie, "Accept-Language": "zh-CN"},
    )
    ws = await websocket_connect(request)
    try:
        for _ in range(2):  # history, presence
            await asyncio.wait_for(ws.read_message(), 5)
        ws.write_message(json.dumps({"body": "x" * 2001}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.read_message(), 5))
            if frame["type"] == "error":
                break
        assert frame == {"type": "error", "message": "A message is at most 2000 characters."}
        table = chat_error_table(text(await client.get("/chat")))
        assert table[frame["message"]] == "一条消息最多 2000 个字符。"
    finally:
        ws.close()
