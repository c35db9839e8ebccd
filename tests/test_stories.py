"""Stories over real HTTP and a real MariaDB: create (POST/redirect/GET), the story page, form
validation (a form over 1 MB included), Markdown safety and its render bound, publishing (double
submits, the hourly limit, the member's row lock), edit/delete for the owner only, and the 404/301
routes."""

import asyncio
import datetime
import html
import html.parser
import re
import time

import pytest
from tornado import gen
from tornado.escape import xhtml_escape

from models import markdown
from models.stories import AlreadyPublished
from serving.housekeeping import housekeeping
from tests.helpers import (
    XSRF_MESSAGE,
    assert_error_page,
    assert_security_headers,
    count,
    eventually,
    field_error,
    input_value,
    query,
    raw_connection,
    text,
)
from views.forms import MESSAGES

NOT_ALLOWED = "You are not allowed to do that."
NOT_YOURS = "Only the story's author may change it."
NOT_FOUND = "There is nothing here."
NO_STORY = "No story has that id."


# --- helpers ---------------------------------------------------------------------------------


def stored(db_settings, story_id):
    rows = query(db_settings, "SELECT * FROM stories WHERE id = %s", (story_id,))
    return rows[0] if rows else None


def textarea_value(page, name):
    m = re.search(r'<textarea id="field-%s"[^>]*>(.*?)</textarea>' % name, page, re.S)
    return m and m.group(1)


def tags(markup):
    """Every start tag in markup as (name, {attribute: value}), as a browser would parse them."""
    found = []

    class Parser(html.parser.HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, dict(attrs)))

    Parser().feed(markup)
    return found


def story_body_html(page):
    m = re.search(r'<div class="story-body">(.*?)</div>', page, re.S)
    assert m, page
    return m.group(1)


async def published_html(client, title, body):
    """Register alice, publish the story, return its rendered body as the story page shows it."""
    await client.register("alice")
    story_id = await client.new_story(title, body)
    return story_body_html(text(await client.get("/story/%d" % story_id)))


# --- create and read ---------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_create_redirects_to_the_new_story_and_flashes(client, db_settings):
    await client.register("alice")
    r = await client.post("/story/new", {"title": "First light", "body": "It *was* a **bright** day."})
    assert r.code == 302
    row = query(db_settings, "SELECT id FROM stories")
    assert len(row) == 1
    assert r.headers["Location"] == "/story/%d" % row[0]["id"]

    path = r.headers["Location"]
    r = await client.get(path)
    assert r.code == 200
    page = text(r)
    assert '<p class="flash" role="status">Story published.</p>' in page
    assert "<h1>First light</h1>" in page
    assert "<title>First light · Storyhouse</title>" in page
    assert "by <strong>alice</strong>" in page
    assert story_body_html(page) == "<p>It <em>was</em> a <strong>bright</strong> day.</p>\n"
    # The flash is shown once.
    r = await client.get(path)
    assert "Story published." not in text(r)


@pytest.mark.gen_test
async def test_new_ids_come_from_lastrowid(client, db_settings):
    await client.register("alice")
    first = await client.new_story("One", "1")
    second = await client.new_story("Two", "2")
    assert second == first + 1
    assert stored(db_settings, first)["title"] == "One"
    assert stored(db_settings, second)["title"] == "Two"


@pytest.mark.gen_test
async def test_story_page_shows_date_in_utc(client, db_settings):
    await client.register("alice")
    story_id = await client.new_story()
    created = stored(db_settings, story_id)["created_at"]
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    assert abs((now - created).total_seconds()) < 120, "created_at is not stored in UTC"
    page = text(await client.get("/story/%d" % story_id))
    assert (
        '<time datetime="%sZ">%s UTC</time>' % (created.isoformat(), created.strftime("%d %b %Y, %H:%M"))
        in page
    )
    assert "· edited" not in page


@pytest.mark.gen_test
async def test_author_name_comes_from_the_users_table(client, db_settings, make_client):
    await client.register("alice")
    story_id = await client.new_story()
    query(db_settings, "UPDATE users SET username = 'alicia' WHERE username = 'alice'")
    page = text(await make_client().get("/story/%d" % story_id))
    assert "by <strong>alicia</strong>" in page


@pytest.mark.gen_test
async def test_story_is_public_and_only_the_owner_sees_edit(client, make_client, member):
    await client.register("alice")
    story_id = await client.new_story()
    edit_link = '<a href="/story/%d/edit"' % story_id
    assert edit_link in text(await client.get("/story/%d" % story_id))
    anonymous = make_client()
    r = await anonymous.get("/story/%d" % story_id)
    assert r.code == 200 and edit_link not in text(r)
    bob = await member("bob")
    r = await bob.get("/story/%d" % story_id)
    assert r.code == 200 and edit_link not in text(r)


@pytest.mark.gen_test
async def test_new_story_needs_login(client, db_settings):
    r = await client.get("/story/new")
    assert r.code == 302 and r.headers["Location"] == "/login?next=%2Fstory%2Fnew"
    r = await client.post("/story/new", {"title": "T", "body": "B"})
    assert_error_page(r, 403, NOT_ALLOWED)
    assert count(db_settings, "stories") == 0


@pytest.mark.gen_test
async def test_new_story_form(client):
    await client.register("alice")
    r = await client.get("/story/new")
    assert r.code == 200
    page = text(r)
    assert '<form method="post" action="/story/new">' in page
    assert 'name="_xsrf"' in page
    assert input_value(page, "title") == "" and textarea_value(page, "body") == ""
    assert "danger-zone" not in page


# --- form validation ---------------------------------------------------------------------------

KEPT_TITLE = "<i>\"kept\" & 'title'</i>"
KEPT_BODY = "<b>\"kept\" & 'body'</b>\n  indented"

REJECTED = [
    # (case, title, body, field with the message, message key)
    ("empty title", "", KEPT_BODY, "title", "title_empty"),
    ("whitespace title", " \t  ", KEPT_BODY, "title", "title_empty"),
    ("control-character title", "\x00\x01", KEPT_BODY, "title", "title_empty"),
    ("zero-width title", "\u200b\ufeff", KEPT_BODY, "title", "title_empty"),  # blank, as the API says
    ("201-char title", "t" * 201, KEPT_BODY, "title", "title_long"),
    ("empty body", KEPT_TITLE, "", "body", "body_empty"),
    ("whitespace body", KEPT_TITLE, " \n\t\n  ", "body", "body_empty"),
    ("BOM body", KEPT_TITLE, "\ufeff\n\u3000", "body", "body_empty"),
    ("120 KB of CJK body", KEPT_TITLE, "中" * 40000, "body", "body_long"),
    ("100 KB + 1 byte body", KEPT_TITLE, "a" * (100 * 1024 + 1), "body", "body_long"),
    ("100 KB - 1 byte + one 3-byte char", KEPT_TITLE, "a" * (100 * 1024 - 1) + "中", "body", "body_long"),
]


@pytest.mark.parametrize("case,title,body,field,key", REJECTED, ids=[r[0] for r in REJECTED])
@pytest.mark.gen_test
async def test_rejected_story_input(client, db_settings, case, title, body, field, key):
    await client.register("alice")
    r = await client.post("/story/new", {"title": title, "body": body})
    assert r.code == 400
    page = text(r)
    assert field_error(page, field) == MESSAGES[key]
    assert page.count('class="field-error"') == 1
    assert 'aria-invalid="true" aria-describedby="error-%s"' % field in page
    # The user's values are kept, escaped (the title is stripped, as get_argument does).
    assert input_value(page, "title") == xhtml_escape(title.strip("\x00\x01 \t"))
    assert textarea_value(page, "body") == xhtml_escape(body)
    assert "<i>" not in page and "<b>" not in page
    assert '<form method="post" action="/story/new">' in page
    assert count(db_settings, "stories") == 0


@pytest.mark.parametrize("data", [{"title": "", "body": ""}, {}], ids=["both-empty", "both-missing"])
@pytest.mark.gen_test
async def test_both_fields_wrong_show_both_messages(client, db_settings, data):
    await client.register("alice")
    r = await client.post("/story/new", data)
    assert r.code == 400
    page = text(r)
    assert field_error(page, "title") == MESSAGES["title_empty"]
    assert field_error(page, "body") == MESSAGES["body_empty"]
    assert count(db_settings, "stories") == 0


@pytest.mark.gen_test
async def test_invalid_utf8_is_a_400_not_a_500(client, db_settings):
    await client.register("alice")
    if not client.xsrf:
        await client.get("/login")
    body = "title=%FF%FE&body=ok&_xsrf=" + client.xsrf
    r = await client.fetch("/story/new", "POST", body)
    assert_error_page(r, 400, "The request could not be understood.")
    assert count(db_settings, "stories") == 0


@pytest.mark.gen_test(timeout=30)
async def test_a_story_over_one_megabyte_gets_the_413_page_with_the_forms_message(client, db_settings):
    await client.register("alice")
    body = "中" * 120_000  # 360 KB of UTF-8, 1.08 MB once form-encoded
    r = await client.post("/story/new", {"title": "Big", "body": body})
    assert_error_page(r, 413, MESSAGES["form_too_large"])  # the site's page
    assert_security_headers(r)
    assert count(db_settings, "stories") == 0
    assert (await client.get("/")).code == 200  # the session survives: nothing was lost


SQL_TITLE = 'It\'s "quoted" \\ 100% a_b -- ; DROP TABLE stories; --'
SQL_BODY = "O'Brien said \"hi\" \\ back\\slash 100% a_b_c -- '; DELETE FROM users; --"
UNICODE_TITLE = "中文标题 😀 👨‍👩‍👧 café"
UNICODE_BODY = "你好，世界。\n\nEmoji: 🎉👍🏽 and ZWJ 👩‍💻, accents: naïve Ångström, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢."

ACCEPTED = [
    # (case, title sent, body sent, title stored, body stored)
    ("200-char title", "t" * 200, "body", "t" * 200, "body"),
    ("200 emoji title", "😀" * 200, "body", "😀" * 200, "body"),
    ("title stripped", "  padded  ", "body", "padded", "body"),
    ("exactly 100 KB body", "T", "a" * (100 * 1024), "T", "a" * (100 * 1024)),
    ("just under 100 KB of CJK", "T", "中" * 34133, "T", "中" * 34133),
    ("SQL metacharacters", SQL_TITLE, SQL_BODY, SQL_TITLE, SQL_BODY),
    ("unicode and emoji", UNICODE_TITLE, UNICODE_BODY, UNICODE_TITLE, UNICODE_BODY),
    ("NUL becomes a space", "a\x00b", "x\x00y", "a b", "x y"),
    # Every code point HTML forbids becomes a space, as the API does (issue 14, item 7).
    ("DEL, C1, noncharacters", "a\x7fb\x85c\ufdd0d\U0001ffffe", "x\x9f\ufffey", "a b c d e", "x  y"),
    ("body keeps its indentation", "T", "    code\n\ntext  ", "T", "    code\n\ntext  "),
]


@pytest.mark.parametrize("case,title,body,want_title,want_body", ACCEPTED, ids=[a[0] for a in ACCEPTED])
@pytest.mark.gen_test
async def test_accepted_story_input_round_trips(
    client, db_settings, case, title, body, want_title, want_body
):
    await client.register("alice")
    story_id = await client.new_story(title, body)
    row = stored(db_settings, story_id)
    assert row["title"] == want_title
    assert row["body"] == want_body
    page = text(await client.get("/story/%d" % story_id))
    assert "<h1>%s</h1>" % xhtml_escape(want_title) in page
    # The edit form gives back exactly what was stored.
    page = text(await client.get("/story/%d/edit" % story_id))
    assert input_value(page, "title") == xhtml_escape(want_title)
    assert textarea_value(page, "body") == xhtml_escape(want_body)


@pytest.mark.gen_test
async def test_sql_metacharacters_are_shown_literally(client, db_settings):
    await client.register("alice")
    story_id = await client.new_story(SQL_TITLE, SQL_BODY)
    page = text(await client.get("/story/%d" % story_id))
    assert "<h1>It&#x27;s &quot;quoted&quot; \\ 100% a_b -- ; DROP TABLE stories; --</h1>" in page
    body = story_body_html(page)
    assert "O'Brien said &quot;hi&quot; \\ back\\slash 100% a_b_c -- '; DELETE FROM users; --" in body
    assert query(db_settings, "SELECT COUNT(*) AS n FROM users")[0]["n"] == 1


@pytest.mark.gen_test
async def test_unicode_is_shown_unchanged(client):
    await client.register("alice")
    story_id = await client.new_story(UNICODE_TITLE, UNICODE_BODY)
    r = await client.get("/story/%d" % story_id)
    assert r.headers["Content-Type"] == "text/html; charset=UTF-8"
    page = text(r)
    assert "<h1>%s</h1>" % UNICODE_TITLE in page
    assert "Emoji: 🎉👍🏽 and ZWJ 👩‍💻, accents: naïve Ångström, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢." in story_body_html(page)


# --- Markdown safety ---------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_raw_html_is_escaped_not_stripped(client):
    await client.register("alice")
    title = "<script>alert('t')</script>"
    body = (
        "Hello <script>alert(1)</script> and <b>bold</b> and <img src=x onerror=alert(2)>\n\n<div>block</div>"
    )
    story_id = await client.new_story(title, body)
    page = text(await client.get("/story/%d" % story_id))
    rendered = story_body_html(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered
    assert "&lt;b&gt;bold&lt;/b&gt;" in rendered
    assert "&lt;img src=x onerror=alert(2)&gt;" in rendered
    assert "&lt;div&gt;block&lt;/div&gt;" in rendered
    assert "<h1>&lt;script&gt;alert(&#x27;t&#x27;)&lt;/script&gt;</h1>" in page
    # no script but the site's own files from static/ (the owner's upload form has one)
    for tag in re.findall(r"<script[^>]*>", page.lower()):
        assert re.fullmatch(r'<script src="/static/js/[\w.]+\?v=\w+" defer>', tag), tag
    assert "<b>" not in page and "<img" not in page and "<div>" not in page


@pytest.mark.gen_test
async def test_markdown_still_renders(client):
    body = "# Heading\n\n*em* **strong** ~~gone~~ `<code>`\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |"
    rendered = await published_html(client, "md", body)
    for fragment in (
        "<h2>Heading</h2>",  # under the page's own h1, the title (models/markdown.outline)
        "<em>em</em>",
        "<strong>strong</strong>",
        "<del>gone</del>",
        "<code>&lt;code&gt;</code>",
        "<li>one</li>",
        "<table>",
        "<td>1</td>",
    ):
        assert fragment in rendered


BAD_LINKS = [
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x]( javascript:alert(1))",
    "[x](<javascript:alert(1)>)",
    "[x](javascript%3Aalert(1))",
    "[x](%6A%61vascript:alert(1))",
    "[x](java&#115;cript:alert(1))",
    "[x](&#x6A;avascript:alert(1))",
    "[x](java%0Ascript:alert(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x](data:image/png;base64,iVBORw0KGgo=)",
    "[x](vbscript:msgbox(1))",
    "[x](file:///etc/passwd)",
    "[x][ref]\n\n[ref]: javascript:alert(1)",
    "<javascript:alert(1)>",
    "![x](javascript:alert(1))",
    # Obfuscated spellings, now that relative links are kept (issue 14, item 12).
    "[x](<java\tscript:alert(1)>)",
    "[x](java&Tab;script:alert(1))",
    "[x](&#9;javascript:alert(1))",
    "[x](&#x01;javascript:alert(1))",
    "[x](&amp;#106;avascript:alert(1))",
    "[x](&#0000106;avascript:alert(1))",
    "[x](javascript&colon;alert(1))",
    "[x](<java script:alert(1)>)",
    "[x](<\u2028javascript:alert(1)>)",
    "[x](%20javascript:alert(1))",
    "[x](jAvAsCrIpT&#58;alert(1))",
    "[x](DATA:text/html,x)",
    "[x](VbScript:msgbox(1))",
    "[x](livescript:alert(1))",
    "[x](story:1)",
    "[x](//evil.example/story/1)",
    "[x](\\\\\\\\evil.example)",  # two backslashes (Markdown escapes each): //evil.example
    "[x](\\\\/evil.example)",
    "[x](/%5Cevil.example)",
    "[x](%2F%2Fevil.example)",
    "[x](<\t//evil.example>)",
]


@pytest.mark.parametrize("markdown", BAD_LINKS)
@pytest.mark.gen_test
async def test_dangerous_links_are_neutralised(client, markdown):
    body = await published_html(client, "links", markdown)
    urls = [attrs.get("href", attrs.get("src")) for tag, attrs in tags(body) if tag in ("a", "img")]
    assert urls == ["#"], body  # the link is still there, only its target is neutralised


GOOD_LINKS = [
    ("[x](http://example.com/a?b=1&c=2)", "http://example.com/a?b=1&amp;c=2"),
    ("[x](https://example.com/b)", "https://example.com/b"),
    ("[x](HTTPS://example.com/c)", "HTTPS://example.com/c"),
    ("[x](mailto:someone@example.com)", "mailto:someone@example.com"),
    ("<https://example.com/auto>", "https://example.com/auto"),
    ("see https://example.com/bare here", "https://example.com/bare"),
    # Relative links stay relative (issue 14, item 12).
    ("[x](story/1)", "story/1"),
    ("[x](./x)", "./x"),
    ("[x](../x)", "../x"),
    ("[x](?q=x)", "?q=x"),
    ("[x](?q=a&b=c)", "?q=a&amp;b=c"),
    ("[x](x.html#part)", "x.html#part"),
    ("[x](/story/1)", "/story/1"),
    ("[x](#top)", "#top"),
    ("[x][ref]\n\n[ref]: ../tag/x", "../tag/x"),
]


@pytest.mark.parametrize("markdown,href", GOOD_LINKS)
@pytest.mark.gen_test
async def test_http_https_mailto_links_are_kept(client, markdown, href):
    rendered = await published_html(client, "links", markdown)
    assert re.search(r'<a [^>]*href="%s"' % re.escape(href), rendered), rendered


@pytest.mark.gen_test
async def test_link_attributes_cannot_be_broken_out_of(client):
    body = '[x](<http://e.com/" onmouseover="alert(1)>) ![a" onerror="alert(2)](http://e.com/i.png)'
    body = await published_html(client, "attrs", body)
    found = tags(body)
    assert [t for t, _ in found] == ["p", "a", "img"], body
    for _, attrs in found:
        assert not [name for name in attrs if name.startswith("on")], body
    assert found[1][1]["href"] == "http://e.com/%22%20onmouseover=%22alert(1)"
    assert found[2][1]["alt"] == 'a" onerror="alert(2)'


@pytest.mark.parametrize(
    "source,href",
    [
        ("[other](/story/1)", "/story/1"),
        ("[top](#top)", "#top"),
        ("[q](/?q=a)", "/?q=a"),
        ("[evil](//evil.example)", "#"),
        ("[evil](/\\evil.example)", "#"),
        ("[evil](/%2F/evil.example)", "#"),
        ("[evil](javascript:alert(1))", "#"),
    ],
)
def test_same_site_relative_links_are_kept(source, href):
    assert 'href="%s"' % href.replace("&", "&amp;") in markdown.render(source)


@pytest.mark.gen_test(timeout=20)
async def test_a_body_too_slow_to_render_is_refused_quickly(client, db_settings):
    await client.register("alice")
    started = time.monotonic()
    r = await client.post("/story/new", {"title": "Stars", "body": "*_" * 50_000})  # 1 s of mistune before
    assert r.code == 400
    assert time.monotonic() - started < 0.5
    assert "too much formatting" in text(r)
    assert count(db_settings, "stories") == 0


def test_the_markup_bound_keeps_renders_short():
    for pattern in ["*_", "a*b_", "[a](", "*a", "<", "~~a", "!["]:
        body = pattern * (markdown.MARKUP_MAX // max(1, sum(c in "*_[]<~" for c in pattern)))
        started = time.thread_time()  # CPU time of this thread: other programs' load does not count
        markdown.render(body)
        assert time.thread_time() - started < 0.3, pattern


# --- publishing: double submits, the hourly limit, the member's row lock --------------------


@pytest.mark.gen_test
async def test_the_same_story_twice_is_published_once(client, db_settings):
    await client.register("alice")
    first = await client.post("/story/new", {"title": "Twice", "body": "Same body."})
    second = await client.post("/story/new", {"title": "Twice", "body": "Same body."})
    assert first.code == second.code == 302
    assert second.headers["Location"] == first.headers["Location"]
    page = await client.get(second.headers["Location"])
    assert "This story was already published." in text(page)
    assert count(db_settings, "stories") == 1
    other = await client.post("/story/new", {"title": "Twice", "body": "Another body."})
    assert other.code == 302 and other.headers["Location"] != first.headers["Location"]


@pytest.mark.gen_test
async def test_a_double_click_in_parallel_publishes_once(client, db_settings):
    await client.register("alice")
    responses = await gen.multi(
        [client.post("/story/new", {"title": "Click", "body": "Body."}) for _ in range(4)]
    )
    assert {r.code for r in responses} == {302}
    assert len({r.headers["Location"] for r in responses}) == 1
    assert count(db_settings, "stories") == 1


@pytest.mark.gen_test
@pytest.mark.parametrize("app_settings", [{"stories_per_hour": 3}], indirect=True)
async def test_stories_per_hour_are_limited_with_retry_after(client, db_settings):
    await client.register("alice")
    for i in range(3):
        await client.new_story("Story %d" % i, "Body %d" % i)
    r = await client.post("/story/new", {"title": "One more", "body": "Kept body"})
    assert r.code == 429
    assert 0 < int(r.headers["Retry-After"]) <= 3600
    page = text(r)
    assert "You have published 3 stories in the last hour." in page
    assert 'value="One more"' in page and "Kept body" in page  # nothing the member typed is lost
    assert count(db_settings, "stories") == 3


@pytest.mark.gen_test(timeout=20)
async def test_publishing_waits_for_the_members_row_lock(app, db_settings):
    # Two posts of one member are serialised on the member's row: while another transaction holds
    # it, create() waits, then sees what that transaction committed (so the guard cannot be raced).
    query(db_settings, "INSERT INTO users (username, password_hash) VALUES ('locker', 'x')")
    user_id = query(db_settings, "SELECT id FROM users WHERE username = 'locker'")[0]["id"]
    other = raw_connection(db_settings, db_settings["database"])
    try:
        with other.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT id FROM users WHERE id = %s FOR UPDATE", (user_id,))
            task = asyncio.ensure_future(app.models.stories.create(user_id, "Same", "Same body."))
            # create() waits on the lock: its statement stays in the process list (a text, not run)
            locking = "SELECT id FROM users WHERE id = %d FOR UPDATE" % user_id  # noqa: S608
            assert await eventually(
                lambda: count(db_settings, "information_schema.processlist", "info = %s", (locking,))
            )
            assert not task.done()  # waiting for the lock
            cur.execute(
                "INSERT INTO stories (user_id, title, body, body_html, excerpt, search_text)"
                " VALUES (%s, 'Same', 'Same body.', '', '', '')",
                (user_id,),
            )
            first = cur.lastrowid
            cur.execute("COMMIT")
        with pytest.raises(AlreadyPublished) as caught:
            await task
        assert caught.value.story_id == first
    finally:
        other.close()


# --- edit and delete ---------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_owner_edits_a_story(client, db_settings):
    await client.register("alice")
    story_id = await client.new_story("Old <title>", "Old & body")
    r = await client.get("/story/%d/edit" % story_id)
    assert r.code == 200
    page = text(r)
    assert '<form method="post" action="/story/%d/edit">' % story_id in page
    assert '<form method="post" action="/story/%d/delete"' % story_id in page
    assert input_value(page, "title") == "Old &lt;title&gt;"
    assert textarea_value(page, "body") == "Old &amp; body"

    # Make the story older so that the "edited" mark can show.
    query(
        db_settings,
        "UPDATE stories SET created_at = created_at - INTERVAL 1 HOUR,"
        " updated_at = updated_at - INTERVAL 1 HOUR WHERE id = %s",
        (story_id,),
    )
    r = await client.post("/story/%d/edit" % story_id, {"title": "New title", "body": "New *body*"})
    assert r.code == 302 and r.headers["Location"] == "/story/%d" % story_id
    row = stored(db_settings, story_id)
    assert (row["title"], row["body"]) == ("New title", "New *body*")
    assert row["body_html"] == "<p>New <em>body</em></p>\n"
    assert row["updated_at"] > row["created_at"]

    page = text(await client.get("/story/%d" % story_id))
    assert '<p class="flash" role="status">Story saved.</p>' in page
    assert "<h1>New title</h1>" in page and "<em>body</em>" in page
    assert "· edited" in page
    assert count(db_settings, "stories") == 1


EDIT_REJECTED = [
    r for r in REJECTED if r[0] in ("empty title", "201-char title", "whitespace body", "120 KB of CJK body")
]


@pytest.mark.parametrize("case,title,body,field,key", EDIT_REJECTED, ids=[r[0] for r in EDIT_REJECTED])
@pytest.mark.gen_test
async def test_edit_validation_keeps_values(client, db_settings, case, title, body, field, key):
    await client.register("alice")
    story_id = await client.new_story("Original", "Original body")
    r = await client.post("/story/%d/edit" % story_id, {"title": title, "body": body})
    assert r.code == 400
    page = text(r)
    assert field_error(page, field) == MESSAGES[key]
    assert input_value(page, "title") == xhtml_escape(title.strip(" \t"))
    assert textarea_value(page, "body") == xhtml_escape(body)
    assert '<form method="post" action="/story/%d/edit">' % story_id in page
    row = stored(db_settings, story_id)
    assert (row["title"], row["body"]) == ("Original", "Original body")


@pytest.mark.gen_test
async def test_owner_deletes_a_story(client, db_settings):
    await client.register("alice")
    keep = await client.new_story("Keep", "k")
    story_id = await client.new_story("Doomed", "d")
    r = await client.post("/story/%d/delete" % story_id)
    assert r.code == 302 and r.headers["Location"] == "/"
    assert stored(db_settings, story_id) is None
    assert stored(db_settings, keep) is not None
    r = await client.get("/")
    page = text(r)
    assert '<p class="flash" role="status">Story deleted.</p>' in page
    assert "Doomed" not in page and "Keep" in page
    assert_error_page(await client.get("/story/%d" % story_id), 404, NO_STORY)
    assert_error_page(await client.post("/story/%d/delete" % story_id), 404, NO_STORY)


@pytest.mark.gen_test
@pytest.mark.parametrize("app_settings", [{"stories_per_hour": 3}])
async def test_deleting_does_not_give_back_the_hourly_limit(app, client, db_settings, app_settings):
    """Issue 14, item 9: the limit counts creations, not the stories still there."""
    await client.register("alice")
    for n in range(3):
        story_id = await client.new_story("Gone %d" % n, "Deleted at once")
        assert (await client.post("/story/%d/delete" % story_id)).code == 302
    assert count(db_settings, "stories") == 0
    r = await client.post("/story/new", {"title": "One more", "body": "Refused"})
    assert r.code == 429 and "You have published 3 stories in the last hour." in text(r)
    r = await client.fetch(
        "/api/stories",
        "POST",
        '{"title": "Through the API", "body": "Refused too"}',
        headers={"Content-Type": "application/json", "X-XSRFToken": client.xsrf},
    )
    assert r.code == 429 and 0 < int(r.headers["Retry-After"]) <= 3600
    assert count(db_settings, "stories") == 0
    # Housekeeping forgets creations past the hour, and only those.
    query(db_settings, "UPDATE story_creations SET created_at = NOW() - INTERVAL 61 MINUTE LIMIT 2")
    await housekeeping(app.models)
    assert query(db_settings, "SELECT COUNT(*) AS n FROM story_creations")[0]["n"] == 1
    await client.new_story("Allowed again", "Two creations have left the window")
    assert (await client.post("/story/new", {"title": "Again", "body": "x"})).code == 302
    assert (await client.post("/story/new", {"title": "Too many", "body": "x"})).code == 429


@pytest.mark.gen_test
async def test_another_member_gets_403_and_nothing_changes(client, db_settings, member):
    await client.register("alice")
    story_id = await client.new_story("Alice's", "Mine")
    before = stored(db_settings, story_id)
    bob = await member("bob")

    assert_error_page(await bob.get("/story/%d/edit" % story_id), 403, NOT_YOURS)
    assert_error_page(
        await bob.post("/story/%d/edit" % story_id, {"title": "Bob's", "body": "Stolen"}), 403, NOT_YOURS
    )
    # Invalid input from a stranger is still a 403, not a form.
    assert_error_page(await bob.post("/story/%d/edit" % story_id, {"title": "", "body": ""}), 403, NOT_YOURS)
    assert_error_page(await bob.post("/story/%d/delete" % story_id), 403, NOT_YOURS)
    assert stored(db_settings, story_id) == before


@pytest.mark.gen_test
async def test_anonymous_cannot_edit_or_delete(client, db_settings, make_client):
    await client.register("alice")
    story_id = await client.new_story("Alice's", "Mine")
    before = stored(db_settings, story_id)
    anon = make_client()
    r = await anon.get("/story/%d/edit" % story_id)
    assert r.code == 302 and r.headers["Location"] == "/login?next=%%2Fstory%%2F%d%%2Fedit" % story_id
    # With a valid XSRF token: refused because nobody is logged in.
    assert_error_page(await anon.post("/story/%d/delete" % story_id), 403, NOT_ALLOWED)
    assert_error_page(
        await anon.post("/story/%d/edit" % story_id, {"title": "x", "body": "y"}), 403, NOT_ALLOWED
    )
    # Without one: refused by the XSRF check.
    r = await anon.post("/story/%d/delete" % story_id, xsrf=False)
    assert_error_page(r, 403, XSRF_MESSAGE)
    assert stored(db_settings, story_id) == before


@pytest.mark.gen_test
async def test_delete_is_post_only(client, db_settings):
    await client.register("alice")
    story_id = await client.new_story()
    assert_error_page(
        await client.get("/story/%d/delete" % story_id), 405, "That method is not allowed here."
    )
    assert stored(db_settings, story_id) is not None


@pytest.mark.gen_test
async def test_edit_and_delete_of_unknown_story_are_404(client):
    await client.register("alice")
    # An id the route takes is looked up (no such story); a longer one matches no route.
    for path, message in (("/story/424242/edit", NO_STORY), ("/story/99999999999999999999/edit", NOT_FOUND)):
        assert_error_page(await client.get(path), 404, message)
        assert_error_page(await client.post(path, {"title": "t", "body": "b"}), 404, message)
    for path, message in (
        ("/story/424242/delete", NO_STORY),
        ("/story/99999999999999999999/delete", NOT_FOUND),
    ):
        assert_error_page(await client.post(path), 404, message)


# --- routes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/story/424242",
        "/story/0",
        "/story/4294967295",
        "/story/4294967296",
        "/story/99999999999999999999",
        "/story/abc",
        "/story/-1",
        "/story/1.5",
        "/story/",
        "/story/1/nope",
    ],
)
@pytest.mark.gen_test
async def test_unknown_story_is_a_404_page(client, path):
    r = await client.get(path)
    assert_error_page(r, 404, NO_STORY if re.fullmatch(r"/story/[0-9]{1,10}", path) else NOT_FOUND)
    assert "<h1>404 · Not Found</h1>" in text(r)
    assert r.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.gen_test
async def test_trailing_slash_redirects_permanently(client):
    await client.register("alice")
    story_id = await client.new_story("Slash", "s")
    r = await client.get("/story/%d/" % story_id)
    assert r.code == 301
    assert r.headers["Location"] == "/story/%d" % story_id
    r = await client.get(r.headers["Location"])
    assert r.code == 200 and "<h1>Slash</h1>" in text(r)


def test_routes_match_reverse_url(app):
    assert app.reverse_url("story", 7) == "/story/7"
    assert app.reverse_url("story_edit", 7) == "/story/7/edit"
    assert app.reverse_url("story_delete", 7) == "/story/7/delete"
    assert app.reverse_url("story_new") == "/story/new"


@pytest.mark.parametrize(
    "path", ["/story/" + "1" * 5000, "/story/" + "1" * 5000 + "/", "/story/" + "1" * 11 + "/edit"]
)
@pytest.mark.gen_test
async def test_ids_of_any_length_are_a_404_not_a_500(client, path):
    r = await client.get(path)
    assert r.code == 404
    assert NOT_FOUND in text(r)


@pytest.mark.gen_test
async def test_a_body_that_expands_past_1_mb_is_refused_with_its_message(client, db_settings):
    """4 KB of reference links would render to 1.2 MB of HTML: more than a story may weigh."""
    await client.register("alice")
    body = "[x]: http://e.com/" + "a" * 2000 + "\n\n" + "[a][x]" * 600  # under 5,000 brackets
    assert len(body.encode()) < 100 * 1024
    r = await client.post("/story/new", {"title": "Links", "body": body})
    assert r.code == 400
    assert field_error(text(r), "body") == MESSAGES["body_expands"]
    assert count(db_settings, "stories") == 0


@pytest.mark.gen_test
async def test_table_alignment_uses_classes_not_inline_style(client):
    """The CSP forbids inline style attributes; mistune's own table cells carry them."""
    await client.register("alice")
    story_id = await client.new_story("Table", "| a | b | c |\n|:--|:-:|--:|\n| 1 | 2 | 3 |")
    page = text(await client.get("/story/%d" % story_id))
    assert '<th class="align-left">a</th>' in page and '<td class="align-right">3</td>' in page
    assert "style=" not in page


@pytest.mark.gen_test
async def test_the_model_checks_the_owner_too(app, client, make_client, db_settings):
    """Even a handler that forgot its check could not change someone else's story."""
    await client.register("alice")
    story_id = await client.new_story("Mine", "body")
    bob = make_client()
    await bob.register("bob")
    bob_id = query(db_settings, "SELECT id FROM users WHERE username = 'bob'")[0]["id"]
    assert not await app.models.stories.update(story_id, bob_id, "Taken", "over")
    assert not await app.models.stories.delete(story_id, bob_id)
    assert stored(db_settings, story_id)["title"] == "Mine"


# --- the story page as a publication: byline, the author's tools, metadata ----------------------


def meta(page, key):
    """The content of <meta name=key> or <meta property=key>, unescaped, or None."""
    m = re.search(r'<meta (?:name|property)="%s" content="([^"]*)">' % re.escape(key), page)
    return m and html.unescape(m.group(1))


@pytest.mark.gen_test
async def test_the_byline_and_the_authors_toolbar(client, make_client):
    await client.register("alice", "correct horse")
    story_id = await client.new_story("Tools", "Some words.")
    page = text(await client.get("/story/%d" % story_id))
    byline = re.search(r'<p class="meta byline">(.*?)</p>', page, re.S).group(1)
    assert byline.startswith("by <strong>alice</strong> · <time datetime=") and "· 1 min read" in byline
    tools = re.search(
        r'<div class="author-tools" role="group" aria-label="Your story">(.*?)</div>', page, re.S
    )
    assert tools, "no toolbar under the byline"
    assert (
        page.index('class="meta byline"')
        < page.index('class="author-tools"')
        < page.index('class="story-body"')
    )
    assert '<a href="/story/%d/edit" class="button secondary">Edit</a>' % story_id in tools.group(1)
    assert '<a href="#upload-form" class="button secondary">Add files</a>' in tools.group(1)
    delete = r'<form method="post" action="/story/%d/delete" class="inline-form">.*?' % story_id
    assert re.search(delete + '<button type="submit" class="danger">Delete</button>', tools.group(1), re.S)
    reader = make_client()
    page = text(await reader.get("/story/%d" % story_id))
    assert "author-tools" not in page and 'id="upload-form"' not in page
    assert 'id="attachments"' not in page  # a reader sees no empty "Attachments" section


@pytest.mark.gen_test
async def test_a_story_has_its_own_description_and_card(client, make_client):
    await client.register("alice", "correct horse")
    story_id = await client.new_story(
        'The <b>keeper</b> & "the sea"', "## Log\n\nThe lamp turned all night.\n\n- one"
    )
    page = text(await make_client().get("/story/%d" % story_id))
    assert meta(page, "description") == "The lamp turned all night."
    assert meta(page, "og:title") == meta(page, "twitter:title") == 'The <b>keeper</b> & "the sea"'
    assert meta(page, "og:description") == meta(page, "twitter:description") == "The lamp turned all night."
    assert meta(page, "og:type") == "article" and meta(page, "author") == "alice"
    assert meta(page, "article:author") == "alice" and meta(page, "twitter:card") == "summary"
    assert re.fullmatch(r"http://[\w.]+:\d+/story/%d" % story_id, meta(page, "og:url"))
    assert '<link rel="canonical" href="%s">' % meta(page, "og:url") in page
    assert "<b>keeper" not in page  # escaped everywhere


@pytest.mark.gen_test
async def test_every_page_has_a_description(client):
    for path in ("/", "/login", "/register", "/?q=x", "/no/such/page"):
        page = text(await client.get(path))
        assert meta(page, "description").startswith("Storyhouse is a quiet place to write stories"), path
        assert meta(page, "og:type") == "website" and meta(page, "og:site_name") == "Storyhouse", path
    client.cookies["lang"] = "zh_CN"
    assert meta(text(await client.get("/")), "description").startswith("Storyhouse 是一个安静写故事")
