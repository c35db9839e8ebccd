"""The page cache (models/cache.py): writes empty it at once, in every forked process too; data
changed behind the application's back shows after page_cache_seconds; the list query reads only
the page it shows."""

import asyncio
import uuid

import pytest
from tornado.testing import bind_unused_port

from models import stories as stories_model
from tests import serverproc as sp
from tests.helpers import eventually, query, text, wait_until

DB = sp.database_name("cache")


@pytest.fixture(scope="module", autouse=True)
def _drop_process_database():
    yield
    sp.drop_databases(DB)


@pytest.fixture
def app_settings():
    return {"page_cache_seconds": 0.5}


@pytest.mark.gen_test
async def test_every_write_shows_on_the_next_page(client):
    await client.register("alice")
    assert b"First title" not in (await client.get("/")).body
    story_id = await client.new_story("First title", "Body")
    assert b"First title" in (await client.get("/")).body
    await client.post("/story/%d/edit" % story_id, {"title": "Second title", "body": "Body"})
    page = (await client.get("/")).body
    assert b"Second title" in page and b"First title" not in page
    assert b"Second title" in (await client.get("/story/%d" % story_id)).body
    await client.post("/story/%d/delete" % story_id)
    assert b"Second title" not in (await client.get("/")).body
    assert (await client.get("/story/%d" % story_id)).code == 404


@pytest.mark.gen_test
async def test_changes_behind_the_apps_back_show_after_the_ttl(client, db_settings):
    await client.register("alice")
    story_id = await client.new_story("Before", "Body")
    client.cookies.pop("fresh")  # the author's own moment of reading around the cache is over
    assert b"Before" in (await client.get("/")).body
    query(db_settings, "UPDATE stories SET title = 'After' WHERE id = %s", (story_id,))
    assert b"Before" in (await client.get("/")).body  # cached

    async def fresh():
        return b"After" in (await client.get("/")).body

    assert await eventually(fresh, 0.5 + 1.0)  # page_cache_seconds, then a margin for a busy machine


def test_a_write_in_one_process_empties_the_cache_of_the_other():
    with sp.running_server(DB, extra=["--processes=2"]) as (server, port):
        browser = sp.Browser(port)
        browser.get("/register")
        browser.post(
            "/register", {"username": "forker", "password": "correct horse", "confirm": "correct horse"}
        )
        for _ in range(40):  # new connections land on both processes and fill both caches
            r = sp.get(port, "/")
            assert r.status == 200
        for i in range(5):
            title = "Fresh story %d" % i
            r = browser.post("/story/new", {"title": title, "body": "Body %d" % i})
            assert r.status == 302
            for _ in range(10):
                assert title in sp.get(port, "/").body.decode(), "a process served a stale index"
        pids = {p for p in server.children()}
        assert len(pids) == 2


def test_the_list_query_reads_the_page_not_the_table(db_settings):
    # EXPLAIN: stories first by primary key (LIMIT stops after the page), users by primary key;
    # no temporary table, no sort of every story.
    plan = query(
        db_settings,
        "EXPLAIN " + stories_model._LIST_COLUMNS + " ORDER BY s.id DESC LIMIT %s OFFSET %s",
        (21, 980),
    )
    assert [(row["table"], row["key"]) for row in plan] == [("s", "PRIMARY"), ("u", "PRIMARY")]
    assert not any("filesort" in (row["Extra"] or "") or "temporary" in (row["Extra"] or "") for row in plan)


@pytest.mark.gen_test
async def test_requests_that_miss_together_share_one_read():
    from models.cache import PageCache

    cache, reads = PageCache(ttl=5), []

    async def load():
        reads.append(1)
        await asyncio.sleep(0.05)  # the behaviour under test: a slow read the others must share
        return "rows"

    results = await asyncio.gather(*[cache.get_or_load("k", load) for _ in range(20)])
    assert results == ["rows"] * 20 and len(reads) == 1
    cache.bump()  # a write: the next request reads again
    assert await cache.get_or_load("k", load) == "rows" and len(reads) == 2


def test_a_write_on_one_machine_empties_the_cache_of_another_through_redis():
    # Two separate servers (no shared memory between them, as on two machines) on one Redis; the
    # cache would otherwise keep the old index for a minute.
    extra = [
        "--redis_url=redis://127.0.0.1:6379/0",
        "--chat_redis_prefix=cachetest-%s" % uuid.uuid4().hex[:12],
        "--page_cache_seconds=60",
    ]
    with sp.running_server(DB, extra=extra) as (_, port_a), sp.running_server(DB, extra=extra) as (_, port_b):
        browser = sp.Browser(port_a)
        browser.get("/register")
        browser.post(
            "/register", {"username": "twomachines", "password": "correct horse", "confirm": "correct horse"}
        )
        assert "Across machines" not in sp.get(port_b, "/").body.decode()  # B has the index cached
        assert browser.post("/story/new", {"title": "Across machines", "body": "Body"}).status == 302
        assert wait_until(lambda: "Across machines" in sp.get(port_b, "/").body.decode(), 2)


# --- read-your-writes on another machine -----------------------------------------------------------


@pytest.fixture
def other_machine(db_settings, io_loop):
    """A second Application on the same database whose page cache no bus empties (a machine the
    Redis message has not reached yet), served on a port of its own: its base URL."""
    from application import Application
    from serving.connections import make_http_server
    from tests.conftest import CHEAP_ARGON2

    app = Application(
        db_settings=db_settings,
        pool_size=2,
        cookie_secret="test-cookie-secret",
        argon2=CHEAP_ARGON2,
        link_previews=False,
        page_cache_seconds=60,
    )
    server = make_http_server(app)
    sock, port = bind_unused_port()
    server.add_socket(sock)
    yield "http://127.0.0.1:%d" % port
    server.stop()
    io_loop.run_sync(server.close_all_connections, timeout=5)
    app.close()


@pytest.mark.gen_test(timeout=30)
async def test_an_author_reads_around_another_machines_cache_after_writing(
    client, other_machine, make_client
):
    await client.register("alice")
    story_id = await client.new_story("Before the edit", "First words.")
    path = "/story/%d" % story_id
    elsewhere = make_client()
    elsewhere.base_url = other_machine
    elsewhere.cookies = dict(client.cookies)  # the same browser, balanced to the other machine
    elsewhere.cookies.pop("fresh", None)  # its publishing moment has passed
    assert "Before the edit" in text(await elsewhere.get(path))  # now cached over there
    r = await client.post(path + "/edit", {"title": "After the edit", "body": "New words."})
    assert r.code == 302 and "fresh" in client.cookies
    visitor = make_client()
    visitor.base_url = other_machine
    assert "Before the edit" in text(await visitor.get(path))  # the cache over there is real
    elsewhere.cookies = dict(client.cookies)
    assert "After the edit" in text(await elsewhere.get(path))  # yet the author sees the edit at once
    assert "After the edit" in text(await elsewhere.get("/"))
    assert "After the edit" in text(await visitor.get(path))  # and the fresh read was kept
