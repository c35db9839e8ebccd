"""Cache-Control by who is reading: every page a member gets (their name in the header, their XSRF
token in its forms) is no-store, error pages included; a visitor's pages stay cacheable by
their own browser."""

import pytest


@pytest.mark.gen_test
async def test_every_page_a_member_sees_is_no_store(client):
    await client.register("alice")
    story_id = await client.new_story("Mine", "Text.")
    for path in ("/", "/story/new", "/story/%d" % story_id, "/story/%d/edit" % story_id, "/chat", "/account"):
        r = await client.get(path)
        assert r.code == 200, path
        assert r.headers.get("Cache-Control") == "no-store", path
    r = await client.get("/story/424242")
    assert r.code == 404 and r.headers.get("Cache-Control") == "no-store"


@pytest.mark.gen_test
async def test_a_visitors_pages_are_not_marked_no_store(client, make_client):
    await client.register("alice")
    story_id = await client.new_story("Public", "Text.")
    visitor = make_client()
    for path in ("/", "/story/%d" % story_id, "/login"):
        r = await visitor.get(path)
        assert r.code == 200 and r.headers.get("Cache-Control") != "no-store", path
