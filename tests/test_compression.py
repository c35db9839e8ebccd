"""views/compression.py: text answers (pages, CSS, JS, JSON, the feed) are gzipped for a client that
asks, identical once unpacked; the page cache, ETag / 304 and HEAD behave as before; a 206 and
small answers are left alone. (Attachments: tests/test_uploads.py; nginx: tests/test_deploy.py.)"""

import gzip
import json
import re

import pytest

GZIP = {"Accept-Encoding": "gzip"}


async def raw(client, path, method="GET", headers=None):
    """The answer as sent, not unpacked (AsyncHTTPClient would unpack gzip by itself)."""
    return await client.fetch(path, method, headers=headers, decompress_response=False)


def unpacked(response):
    assert response.headers.get("Content-Encoding") == "gzip", (response.code, dict(response.headers))
    assert "Accept-Encoding" in response.headers.get("Vary", "")
    if "Content-Length" in response.headers:  # else chunked: a static file is sent as it is read
        assert int(response.headers["Content-Length"]) == len(response.body)
    return gzip.decompress(response.body)


def without_tokens(page):
    # Every answer masks the XSRF token afresh: compare pages without it.
    return re.sub(rb'name="_xsrf" value="[^"]+"|_xsrf=2%7C[^"]+', b"", page)


@pytest.mark.gen_test
async def test_pages_json_and_the_feed_are_gzipped_for_a_client_that_asks(client):
    await client.register("alice")
    for n in range(3):  # enough for a feed over a kilobyte
        story_id = await client.new_story("Compressed %d" % n, "A body long enough. " * 200)
    await client.get("/")  # the flash message is shown once
    for path, kind in (
        ("/", b"<!doctype html>"),
        ("/story/%d" % story_id, b"<!doctype html>"),
        ("/story/%d" % story_id, b"<!doctype html>"),  # again: from the page cache
        ("/?q=body", b"<!doctype html>"),
        ("/api/stories/%d" % story_id, b'{"id": %d' % story_id),
        ("/feed.atom", b"<?xml"),
    ):
        packed = await raw(client, path, headers=GZIP)
        plain = await raw(client, path)
        assert packed.code == plain.code == 200
        assert "Content-Encoding" not in plain.headers  # only for a client that asks
        body = unpacked(packed)
        assert body.lower().startswith(kind.lower()), path
        assert without_tokens(body) == without_tokens(plain.body), path
        assert len(packed.body) < len(plain.body) / 2, (path, len(packed.body), len(plain.body))
    assert json.loads(unpacked(await raw(client, "/api/stories", headers=GZIP)))["items"]


@pytest.mark.gen_test
async def test_css_and_js_are_gzipped_a_range_is_not(client):
    for path in ("/static/css/site.css", "/static/js/chat.js"):
        plain = await raw(client, path)
        assert unpacked(await raw(client, path, headers=GZIP)) == plain.body
        part = await raw(client, path, headers=dict(GZIP, Range="bytes=10-59"))
        assert part.code == 206 and "Content-Encoding" not in part.headers
        assert part.body == plain.body[10:60]
        assert part.headers["Content-Range"] == "bytes 10-59/%d" % len(plain.body)


@pytest.mark.gen_test
async def test_etag_304_and_head_behave_as_without_compression(client):
    await client.register("alice")
    for n in range(3):
        await client.new_story("In the feed %d" % n, "Text " * 100)
    packed = await raw(client, "/feed.atom", headers=GZIP)
    plain = await raw(client, "/feed.atom")
    assert unpacked(packed) == plain.body
    # The same document in other bytes: the ETag is the identity answer's, made weak.
    assert plain.headers["ETag"].startswith('"') and packed.headers["ETag"] == "W/" + plain.headers["ETag"]
    for etag in (packed.headers["ETag"], plain.headers["ETag"]):
        for headers in (GZIP, {}):
            again = await raw(client, "/feed.atom", headers=dict(headers, **{"If-None-Match": etag}))
            assert again.code == 304 and again.body == b""
    css = await raw(client, "/static/css/site.css", headers=GZIP)
    assert css.headers["Etag"].startswith('W/"')
    again = await raw(client, "/static/css/site.css", headers={"If-None-Match": css.headers["Etag"]})
    assert again.code == 304
    for path in ("/", "/feed.atom", "/static/css/site.css", "/api/stories"):
        head = await raw(client, path, "HEAD", headers=GZIP)
        assert head.code == 200 and head.body == b"", path


@pytest.mark.gen_test
async def test_small_answers_and_errors_stay_plain(client):
    r = await raw(client, "/healthz", headers=GZIP)
    assert r.code == 200 and "Content-Encoding" not in r.headers  # under a kilobyte
    r = await raw(client, "/api/stories/424242", headers=GZIP)
    assert r.code == 404 and json.loads(r.body)["error"]["status"] == 404
