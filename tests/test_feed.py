"""GET /feed.atom: the newest 20 stories as valid Atom (parsed with feedparser), escaping, the
ETag / If-None-Match round trip, and the <link rel="alternate"> in every page's head."""

import datetime
import re

import feedparser
import pytest


async def publish(client, count, title="Story %d"):
    return [await client.new_story(title % n, "Body of story %d." % n) for n in range(count)]


def parse(response):
    assert response.code == 200
    assert response.headers["Content-Type"] == "application/atom+xml; charset=UTF-8"
    feed = feedparser.parse(response.body)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    return feed


@pytest.mark.gen_test
async def test_empty_feed_is_valid_atom(http_server, client, base_url):
    feed = parse(await client.get("/feed.atom"))
    assert feed.entries == []
    assert feed.feed.title == "Storyhouse"
    assert feed.feed.link == base_url + "/"


@pytest.mark.gen_test
async def test_newest_20_with_title_author_link_updated_summary(http_server, client, base_url):
    await client.register("alice")
    ids = await publish(client, 21)
    feed = parse(await client.get("/feed.atom"))
    assert len(feed.entries) == 20
    assert [e.title for e in feed.entries] == ["Story %d" % n for n in range(20, 0, -1)]
    entry = feed.entries[0]
    assert entry.author == "alice"
    assert entry.link == base_url + "/story/%d" % ids[20]
    assert entry.id == entry.link
    assert entry.summary == "Body of story 20."
    updated = datetime.datetime(*entry.updated_parsed[:6], tzinfo=datetime.UTC)
    assert abs(updated - datetime.datetime.now(datetime.UTC)) < datetime.timedelta(minutes=2)
    assert feed.feed.updated_parsed == entry.updated_parsed
    assert any(link.rel == "self" and link.href == base_url + "/feed.atom" for link in feed.feed.links)


@pytest.mark.gen_test
async def test_markup_and_control_characters_are_escaped(http_server, client):
    await client.register("alice")
    await client.new_story(
        "<script>alert('x')</script> & ]]>", "Body with \x0c a form feed and \ufffe <b>tags</b>"
    )
    response = await client.get("/feed.atom")
    assert b"<script>" not in response.body
    feed = parse(response)
    assert feed.entries[0].title == "<script>alert('x')</script> & ]]>"
    assert feed.entries[0].title_detail.type == "text/plain"


@pytest.mark.gen_test
async def test_etag_and_if_none_match(http_server, client):
    await client.register("alice")
    await publish(client, 2)
    first = await client.get("/feed.atom")
    etag = first.headers["ETag"]
    again = await client.get("/feed.atom", headers={"If-None-Match": etag})
    assert again.code == 304 and again.body == b""
    await client.new_story("Newer", "Changes the feed")
    changed = await client.get("/feed.atom", headers={"If-None-Match": etag})
    assert changed.code == 200 and changed.headers["ETag"] != etag
    assert parse(changed).entries[0].title == "Newer"


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/", "/login", "/register", "/story/999", "/no-such-page"])
async def test_every_page_links_the_feed(http_server, client, path):
    page = (await client.get(path)).body.decode()
    head = page.split("</head>")[0]
    assert re.search(r'<link rel="alternate" type="application/atom\+xml" [^>]*href="/feed\.atom">', head), (
        head
    )
