"""The index over real HTTP and a real MariaDB: empty states, 20 stories a page newest first,
the page argument, literal search (words, never operators; quick even when pathological), the
theme preference cookie, and links built from the routes."""

import email.utils
import re
import time
import urllib.parse

import pytest

from models import markdown
from models import search as search_terms
from tests.helpers import assert_error_page, raw_connection, set_cookie, text

INVALID_PAGE = "Invalid page."


# --- helpers ---------------------------------------------------------------------------------


def add_stories(db_settings, stories, username="writer"):
    """A member, then (title, body) pairs inserted in order straight into the tables; returns the ids."""
    con = raw_connection(db_settings, db_settings["database"])
    try:
        with con.cursor() as cur:
            cur.execute("INSERT INTO users (username, password_hash) VALUES (%s, 'not-a-hash')", (username,))
            user_id = cur.lastrowid
            ids = []
            for title, body in stories:
                body_html = markdown.render(body)
                cur.execute(
                    "INSERT INTO stories (user_id, title, body, body_html, excerpt, search_text)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    (
                        user_id,
                        title,
                        body,
                        body_html,
                        markdown.excerpt(body_html),
                        search_terms.document(title, body),
                    ),
                )
                ids.append(cur.lastrowid)
            return ids
    finally:
        con.close()


def add_numbered(db_settings, n, title="Story %d"):
    return add_stories(db_settings, [(title % i, "Body of story %d." % i) for i in range(1, n + 1)])


def card_ids(page):
    """The story ids of the cards on a page, in order."""
    return [int(i) for i in re.findall(r'<article class="story-card">\s*<h2><a href="/story/(\d+)">', page)]


def card_titles(page):
    return re.findall(r'<article class="story-card">\s*<h2><a href="/story/\d+">(.*?)</a>', page)


def pager_link(page, rel):
    """The href of the pager's rel=prev/next link, unescaped, or None."""
    m = re.search(r'<a href="([^"]*)" rel="%s">' % rel, page)
    return m and m.group(1).replace("&amp;", "&")


def empty_state(page):
    m = re.search(r'<p class="empty">\s*(.*?)\s*</p>', page, re.S)
    return m and m.group(1)


def search(q, page=None):
    params = [("q", q)] + ([("page", page)] if page else [])
    return "/?" + urllib.parse.urlencode(params)


# --- empty states and paging -------------------------------------------------------------------


@pytest.mark.gen_test
async def test_empty_index_invites_to_join(client):
    r = await client.get("/")
    assert r.code == 200
    page = text(r)
    assert card_ids(page) == []
    assert empty_state(page) == 'No stories yet. <a href="/register">Join</a> and write the first one.'
    assert pager_link(page, "next") is None and pager_link(page, "prev") is None


@pytest.mark.gen_test
async def test_empty_index_invites_a_member_to_write(client):
    await client.register("alice")
    page = text(await client.get("/"))
    assert empty_state(page) == 'No stories yet. <a href="/story/new">Write the first one</a>.'


@pytest.mark.gen_test
async def test_twenty_a_page_newest_first(client, db_settings):
    ids = add_numbered(db_settings, 25)
    page = text(await client.get("/"))
    assert card_ids(page) == ids[::-1][:20]
    assert card_titles(page)[0] == "Story 25" and card_titles(page)[-1] == "Story 6"
    assert empty_state(page) is None
    assert pager_link(page, "next") == "/?page=2"
    assert pager_link(page, "prev") is None

    page = text(await client.get("/?page=2"))
    assert card_ids(page) == ids[::-1][20:]
    assert pager_link(page, "next") is None
    assert pager_link(page, "prev") == "/"


@pytest.mark.parametrize("count,has_next", [(20, False), (21, True)])
@pytest.mark.gen_test
async def test_older_link_only_when_there_is_a_next_page(client, db_settings, count, has_next):
    add_numbered(db_settings, count)
    page = text(await client.get("/"))
    assert len(card_ids(page)) == 20
    assert (pager_link(page, "next") == "/?page=2") is has_next
    assert ("Older →" in page) is has_next


@pytest.mark.gen_test
async def test_page_past_the_end_is_an_empty_200(client, db_settings):
    add_numbered(db_settings, 3)
    r = await client.get("/?page=2")
    assert r.code == 200
    page = text(r)
    assert card_ids(page) == []
    assert empty_state(page) == 'There are no more stories. <a href="/">Back to the newest</a>.'
    assert pager_link(page, "next") is None
    r = await client.get("/?page=100000")
    assert r.code == 200 and "There are no more stories." in text(r)


@pytest.mark.parametrize(
    "value", ["0", "-1", "abc", "1e3", "٣", "１", "+2", "1.0", " 2x", "00", "100001", "99999999999999999999"]
)
@pytest.mark.gen_test
async def test_bad_page_argument_is_a_400_page(client, db_settings, value):
    add_numbered(db_settings, 1)
    r = await client.get("/?" + urllib.parse.urlencode({"page": value}))
    assert_error_page(r, 400, INVALID_PAGE)


@pytest.mark.gen_test
async def test_story_cards(client, db_settings):
    long_body = "x" * 300
    [short_id, long_id] = add_stories(
        db_settings, [("<Short> & sweet", "Just *this*."), ("Long", long_body)], username="carol"
    )
    page = text(await client.get("/"))
    assert '<h2><a href="/story/%d">&lt;Short&gt; &amp; sweet</a></h2>' % short_id in page
    assert '<h2><a href="/story/%d">Long</a></h2>' % long_id in page
    assert page.count("by <strong>carol</strong>") == 2
    assert "<p>Just this.</p>" in page  # the excerpt is the rendered text, without tags
    assert "<p>%s…</p>" % ("x" * 280) in page


# --- search ------------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_search_matches_title_or_body(client, db_settings):
    [in_title, in_body, _] = add_stories(
        db_settings,
        [
            ("The lighthouse keeper", "A story about the sea."),
            ("Night shift", "She climbed the lighthouse stairs."),
            ("Unrelated", "Nothing to see."),
        ],
    )
    r = await client.get(search("lighthouse"))
    assert r.code == 200
    page = text(r)
    assert sorted(card_ids(page)) == sorted([in_title, in_body])
    assert "Stories matching “lighthouse”" in page
    assert 'value="lighthouse"' in page
    assert "<title>Search: lighthouse · Storyhouse</title>" in page


@pytest.mark.parametrize(
    "q,matching,not_matching",
    [
        # Punctuation separates words and is never a wildcard or a FULLTEXT operator.
        ("50%", "Only 50% done", "Only 40% done"),
        ("a_c", "the a_c file", "the abc file"),
        ("it's", "it's here", "its here"),
        ('say "hi"', 'say "hi" twice', "say hello"),
        ("+cat -dog", "cat and dog", "just a cat"),
        ("back\\slash", "back\\slash", "backslash"),
        ("(x) <y> ~z @w", "x y z w", "x y z"),
        # The last word is a prefix (searching while typing); earlier words are whole words.
        ("light", "lighthouse", "slight"),
        ("night light", "night lighthouse", "nightly lighthouse"),
    ],
)
@pytest.mark.gen_test
async def test_search_words_not_patterns(client, db_settings, q, matching, not_matching):
    # One story carries the text in its title, one in its body; the decoy must match neither way.
    [t_id, b_id, _, _] = add_stories(
        db_settings,
        [
            (matching, "body"),
            ("title", "In the body: " + matching),
            (not_matching, "body"),
            ("title", "In the body: " + not_matching),
        ],
    )
    r = await client.get(search(q))
    assert r.code == 200
    assert sorted(card_ids(text(r))) == sorted([t_id, b_id])


@pytest.mark.parametrize("q", ["%", "_", "'", '"', "\\", "+-*~<>()@", "--", ";"])
@pytest.mark.gen_test
async def test_search_for_punctuation_alone_finds_nothing(client, db_settings, q):
    add_stories(db_settings, [("100% sure", "snake_case it's \\ -- ;")])
    r = await client.get(search(q))
    assert r.code == 200
    assert card_ids(text(r)) == []


@pytest.mark.gen_test
async def test_search_with_no_match(client, db_settings):
    add_numbered(db_settings, 3)
    r = await client.get(search("zebra"))
    assert r.code == 200
    page = text(r)
    assert card_ids(page) == []
    assert empty_state(page) == 'No story matches “zebra”. <a href="/">See all stories</a>.'


@pytest.mark.gen_test
async def test_search_is_case_insensitive_and_finds_unicode(client, db_settings):
    [first, second] = add_stories(db_settings, [("Dragon tales", "x"), ("龍の話", "中文 😀 内容")])
    assert card_ids(text(await client.get(search("DRAGON")))) == [first]
    assert card_ids(text(await client.get(search("😀")))) == [second]
    assert card_ids(text(await client.get(search("龍")))) == [second]
    assert card_ids(text(await client.get(search("ＤＲＡＧＯＮ")))) == [first]  # full-width letters


@pytest.mark.gen_test
async def test_search_finds_chinese_words_inside_sentences(client, db_settings):
    [zh, mixed, _] = add_stories(
        db_settings,
        [
            ("学习笔记", "我每天学中文和写故事。"),
            ("Notes", "Tornado 是一个异步网络框架"),
            ("其他", "中国的文字很美"),
        ],
    )
    assert card_ids(text(await client.get(search("中文")))) == [zh]  # not 中国…文字
    assert card_ids(text(await client.get(search("写故事")))) == [zh]
    assert card_ids(text(await client.get(search("网络框架")))) == [mixed]
    assert card_ids(text(await client.get(search("tornado 异步")))) == [mixed]
    assert sorted(card_ids(text(await client.get(search("文"))))) == sorted([zh, _])


@pytest.mark.gen_test
async def test_search_text_is_escaped(client, db_settings):
    add_numbered(db_settings, 1)
    page = text(await client.get(search('<script>alert("q")</script>')))
    # no script but the site's own files from static/ (every page loads static/js/site.js)
    for tag in re.findall(r"<script[^>]*>", page.lower()):
        assert re.fullmatch(r'<script src="/static/js/[\w.]+\?v=\w+" defer>', tag), tag
    assert "No story matches “&lt;script&gt;alert(&quot;q&quot;)&lt;/script&gt;”" in page


@pytest.mark.gen_test
async def test_search_length_limit(client, db_settings):
    add_stories(db_settings, [("q" * 200, "body")])
    r = await client.get(search("q" * 200))
    assert r.code == 200 and len(card_ids(text(r))) == 1
    for too_long in ("q" * 201, "中" * 201):
        r = await client.get(search(too_long))
        assert r.code == 400
        page = text(r)
        # The index again, with the search field marked and its message, not an error page.
        assert (
            '<p id="search-error" class="form-error" role="alert">Search for at most 200 characters.</p>'
            in page
        )
        assert 'aria-invalid="true"' in page and card_ids(page) == []
        assert 'value="%s"' % too_long[:200] in page


@pytest.mark.gen_test
async def test_search_pages_keep_the_query(client, db_settings):
    matching = add_stories(db_settings, [("Fox & 50%% story %d" % i, "b") for i in range(1, 23)])
    add_stories(db_settings, [("Other %d" % i, "b") for i in range(5)], username="other")
    q = "fox & 50%"
    page = text(await client.get(search(q)))
    assert card_ids(page) == matching[::-1][:20]
    older = pager_link(page, "next")
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(older).query) == {"q": [q], "page": ["2"]}

    page = text(await client.get(older))
    assert card_ids(page) == matching[::-1][20:]
    assert pager_link(page, "next") is None
    newer = pager_link(page, "prev")
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(newer).query) == {"q": [q]}


@pytest.mark.gen_test
async def test_search_validates_the_page_too(client):
    assert_error_page(await client.get(search("x", page="0")), 400, INVALID_PAGE)


@pytest.mark.parametrize("query_string", ["q=%FF", "page=%FF", "q=%C3%28"])
@pytest.mark.gen_test
async def test_invalid_utf8_in_the_query_is_a_400(client, query_string):
    assert_error_page(await client.get("/?" + query_string), 400)


@pytest.mark.gen_test
async def test_search_page_past_the_end_does_not_deny_the_matches(client, db_settings):
    add_stories(db_settings, [("Fox %d" % i, "b") for i in range(3)])
    r = await client.get(search("fox", page="2"))
    assert r.code == 200
    state = empty_state(text(r))
    assert state is not None
    assert "No story matches" not in state
    assert "no more stories" in state


@pytest.mark.gen_test
async def test_search_query_is_sent_as_words_not_operators(client, db_settings):
    add_stories(db_settings, [("cats", "x"), ("dogs", "y")])
    for q in ["cats -dogs", '"cats"', "cats*", "(cats)", "@cats", "~cats", ">cats <dogs"]:
        r = await client.get("/?" + urllib.parse.urlencode({"q": q}))
        assert r.code == 200, q


@pytest.mark.gen_test(timeout=60)
async def test_a_pathological_search_answers_at_once(client, db_settings):
    # Before: LIKE '%aaa…b%' over 2 MB of bodies ran past the 5 s page bound (503 for everyone).
    add_stories(db_settings, [("Story %d" % i, "a" * 100 * 1024) for i in range(20)])
    started = time.monotonic()
    r = await client.get("/?q=" + "a" * 199 + "b")
    assert r.code == 200
    assert time.monotonic() - started < 1.0
    started = time.monotonic()
    r = await client.get("/?q=a")  # every story holds the word: still quick, 20 cards
    assert r.code == 200 and text(r).count('class="story-card"') == 20
    assert time.monotonic() - started < 1.0


# --- the theme preference cookie ---------------------------------------------------------------


def html_tag(page):
    return re.search(r"<html[^>]*>", page).group(0)


@pytest.mark.gen_test
async def test_theme_cookie_sets_data_theme(client):
    assert "data-theme" not in html_tag(text(await client.get("/")))
    r = await client.post("/theme", {"theme": "dark", "next": "/"})
    assert r.code == 302 and r.headers["Location"] == "/"
    morsel = set_cookie(r, "theme")
    assert morsel.value == "dark"  # plain, not signed
    assert morsel["httponly"] == "" and morsel["samesite"] == "Lax"
    assert html_tag(text(await client.get("/"))) == '<html lang="en" data-theme="dark">'

    await client.post("/theme", {"theme": "light"})
    assert html_tag(text(await client.get("/"))) == '<html lang="en" data-theme="light">'


@pytest.mark.gen_test
async def test_theme_is_on_every_page_including_errors(client):
    await client.post("/theme", {"theme": "dark"})
    for path in ("/login", "/story/424242", "/?page=0"):
        assert 'data-theme="dark"' in html_tag(text(await client.get(path))), path


@pytest.mark.parametrize("theme", ["", "purple", 'dark" onload="x', "DARK"])
@pytest.mark.gen_test
async def test_invalid_theme_clears_the_cookie(client, theme):
    await client.post("/theme", {"theme": "dark"})
    r = await client.post("/theme", {"theme": theme})
    assert r.code == 302
    morsel = set_cookie(r, "theme")
    assert morsel is not None and morsel.value == ""
    expires = email.utils.parsedate_to_datetime(morsel["expires"])
    assert expires.timestamp() < email.utils.parsedate_to_datetime(r.headers["Date"]).timestamp()
    # The browser drops it; the page goes back to the automatic theme.
    client.cookies.pop("theme", None)
    assert "data-theme" not in html_tag(text(await client.get("/")))


@pytest.mark.gen_test
async def test_a_forged_theme_cookie_is_ignored(client):
    r = await client.get("/", headers={"Cookie": 'theme=evil"><x'})
    assert html_tag(text(r)) == '<html lang="en">'


@pytest.mark.parametrize(
    "next_url,location",
    [
        ("/story/7?x=1", "/story/7?x=1"),
        ("/login", "/login"),
        ("", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("evil.example", "/"),
        ("/\t/evil.example", "/"),
        ("/a\r\nSet-Cookie: x=1", "/"),
        ("http:/evil.example", "/"),
    ],
)
@pytest.mark.gen_test
async def test_theme_next_only_goes_to_local_paths(client, next_url, location):
    r = await client.post("/theme", {"theme": "dark", "next": next_url})
    assert r.code == 302
    assert r.headers["Location"] == location


@pytest.mark.gen_test
async def test_theme_needs_the_xsrf_token(client):
    r = await client.post("/theme", {"theme": "dark"}, xsrf=False)
    assert r.code == 403
    assert set_cookie(r, "theme") is None


@pytest.mark.gen_test
async def test_theme_form_returns_to_the_current_page(client, db_settings):
    [story_id] = add_numbered(db_settings, 1)
    page = text(await client.get("/story/%d" % story_id))
    form = re.search(r'<form method="post" action="([^"]*)" class="theme-form">(.*?)</form>', page, re.S)
    assert form.group(1) == "/theme"
    assert '<input type="hidden" name="next" value="/story/%d">' % story_id in form.group(2)
    assert 'name="_xsrf"' in form.group(2)


# --- links come from the route table -----------------------------------------------------------


@pytest.mark.gen_test
async def test_links_match_the_named_routes(app, client, db_settings):
    [story_id] = add_numbered(db_settings, 1)
    page = text(await client.get("/"))
    for href in (
        app.reverse_url("story", story_id),
        app.reverse_url("login"),
        app.reverse_url("register"),
        app.reverse_url("index"),
    ):
        assert 'href="%s"' % href in page, href
    assert 'action="%s"' % app.reverse_url("theme") in page
    assert '<form method="get" action="%s" role="search">' % app.reverse_url("index") in page

    await client.register("alice")
    page = text(await client.get("/"))
    for href in (app.reverse_url("story_new"), app.reverse_url("account")):
        assert 'href="%s"' % href in page, href
    assert 'action="%s"' % app.reverse_url("logout") in page


@pytest.mark.parametrize("target", ["/\x7f", "//evil.example", "https://evil.example/"])
@pytest.mark.gen_test
async def test_theme_next_is_local_and_printable_only(client, target):
    r = await client.post("/theme", {"theme": "dark", "next": target})
    assert r.code == 302 and r.headers["Location"] == "/"


@pytest.mark.parametrize("page", ["1" * 5000, "9" * 10])
@pytest.mark.gen_test
async def test_page_numbers_of_any_length_are_a_400_not_a_500(client, page):
    r = await client.get("/?page=" + page)
    assert_error_page(r, 400, INVALID_PAGE)


# --- the hero, the pager, the count ------------------------------------------------------------


def pager_summary(page):
    m = re.search(r'<p class="pager-summary">(.*?)</p>', page)
    return m and m.group(1)


def page_numbers(page):
    """The pager's numbered links: [(number, current?)], and "…" for a gap."""
    pager = page.split('<nav class="pager"', 1)[1].split("</nav>", 1)[0]
    found = []
    gap = '<li class="pager-gap" aria-hidden="true">…</li>'
    for m in re.finditer(re.escape(gap) + r'|<a href="[^"]*"( aria-current="page")?[^>]*>(\d+)</a>', pager):
        found.append("…" if m.group(0) == gap else (int(m.group(2)), bool(m.group(1))))
    return found


def title(page):
    return re.search(r"<title>(.*?)</title>", page).group(1)


@pytest.mark.gen_test
async def test_visitors_get_a_hero_on_the_first_page_only(client, db_settings):
    add_numbered(db_settings, 21)
    page = text(await client.get("/"))
    assert '<section class="hero"' in page
    assert '<a href="/register" class="button">Start writing</a>' in page
    assert '<a href="#stories" class="button secondary">Browse stories</a>' in page and 'id="stories"' in page
    # one h1 (the hero's), then the list's h2 and the stories' h2s: headings in order
    assert re.findall(r"<h(\d)", page.split("<main", 1)[1])[:3] == ["1", "2", "2"]
    for other in ("/?page=2", search("story")):
        assert '<section class="hero"' not in text(await client.get(other)), other
    await client.register("alice")
    page = text(await client.get("/"))
    assert '<section class="hero"' not in page
    assert re.findall(r"<h(\d)", page.split("<main", 1)[1])[:2] == ["1", "2"]


@pytest.mark.gen_test
async def test_the_pager_numbers_the_pages_and_counts_the_stories(client, db_settings):
    add_numbered(db_settings, 131)
    page = text(await client.get("/?page=2"))
    assert pager_summary(page) == "Page 2 of 7 · 131 stories"
    assert title(page) == "Newest stories · page 2 · Storyhouse"
    assert '<h1 id="stories-title">Newest stories</h1>' in page
    assert page_numbers(page) == [(1, False), (2, True), (3, False), (4, False), "…", (7, False)]
    assert pager_link(page, "prev") == "/" and pager_link(page, "next") == "/?page=3"
    page = text(await client.get("/?page=6"))
    assert page_numbers(page) == [(1, False), "…", (4, False), (5, False), (6, True), (7, False)]
    page = text(await client.get("/"))
    assert pager_summary(page) == "Page 1 of 7 · 131 stories" and title(page) == "Newest stories · Storyhouse"
    page = text(await client.get("/?page=7"))
    assert len(card_ids(page)) == 11 and pager_link(page, "next") is None


@pytest.mark.gen_test
async def test_the_pager_in_chinese_and_for_one_story(client, db_settings):
    add_numbered(db_settings, 1)
    page = text(await client.get("/"))
    assert pager_summary(page) == "Page 1 of 1 · 1 story" and "pager-links" not in page
    client.cookies["lang"] = "zh_CN"
    page = text(await client.get("/"))
    assert pager_summary(page) == "第 1 页，共 1 页 · 1 篇故事"


@pytest.mark.gen_test
async def test_search_results_are_counted_and_paged(client, db_settings):
    add_stories(db_settings, [("Fox %d" % i, "b") for i in range(23)] + [("Other", "b")])
    page = text(await client.get(search("fox", page=2)))
    assert pager_summary(page) == "Page 2 of 2 · 23 stories"
    assert title(page) == "Search: fox · page 2 · Storyhouse"
    client.cookies["lang"] = "zh_CN"
    page = text(await client.get(search("fox", page=2)))
    assert title(page) == "搜索：fox · 第 2 页 · Storyhouse"


@pytest.mark.gen_test
async def test_the_count_is_one_cached_query(app, client, db_settings):
    """The count comes from the page cache like the pages: a row added behind the app's back is
    not counted until a write of the app's own empties the cache."""
    add_numbered(db_settings, 3)
    assert pager_summary(text(await client.get("/"))) == "Page 1 of 1 · 3 stories"
    add_stories(db_settings, [("Behind its back", "b")], username="sneaky")
    assert pager_summary(text(await client.get("/"))) == "Page 1 of 1 · 3 stories"
    assert await app.models.stories.count() == 3 and await app.models.stories.count("story") == 3
    app.models.page_cache.bump()
    assert await app.models.stories.count() == 4
    assert await app.models.stories.count("%%") == 0  # nothing searchable: no query at all
