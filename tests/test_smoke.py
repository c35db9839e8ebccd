"""The shortest path a newcomer takes: register, write, see it on the index, log out."""

import pytest


@pytest.mark.gen_test
async def test_register_write_read_logout(client):
    r = await client.register("alice", "correct horse")
    assert r.code == 302 and r.headers["Location"] == "/"
    story_id = await client.new_story("Hello <world>", "Some *markdown*")
    r = await client.get("/")
    assert r.code == 200
    page = r.body.decode()
    assert "Hello &lt;world&gt;" in page and "/story/%d" % story_id in page
    r = await client.get("/story/%d" % story_id)
    assert "<em>markdown</em>" in r.body.decode() and "alice" in r.body.decode()
    r = await client.logout()
    assert r.code == 302
    r = await client.get("/story/new")
    assert r.code == 302 and r.headers["Location"].startswith("/login?next=")
