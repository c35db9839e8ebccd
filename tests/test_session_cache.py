"""Sessions without a query per request (models/sessions.py SessionCache), still refused at once
when they end: in this process, in another process through Redis, in a forked sibling through
shared memory, and never trusted while Redis is away."""

import asyncio
import shutil
import time

import pytest
import tornado.web

from tests import serverproc as sp
from tests.helpers import eventually, is_logged_in, query
from tests.test_chat import REDIS_URL, start_redis, stop_redis, unique_prefix

LONG = {"session_cache_seconds": 60}  # long enough that only an announcement can empty it


def delete_sessions_behind_the_apps_back(db_settings):
    """The rows go, and nobody announces it: only a cached lookup still sees the session."""
    query(db_settings, "DELETE FROM sessions")


@pytest.mark.parametrize("app_settings", [LONG], indirect=True)
@pytest.mark.gen_test
async def test_a_members_requests_reuse_the_lookup_until_an_end_is_announced(app, member, db_settings):
    alice = await member()
    assert await is_logged_in(alice)  # read once, remembered
    (row,) = query(db_settings, "SELECT user_id FROM sessions")
    delete_sessions_behind_the_apps_back(db_settings)
    assert await is_logged_in(alice), "every request still queried the session"
    app.models.sessions.ended(row["user_id"])  # what every model that ends a session does
    assert not await is_logged_in(alice)


@pytest.mark.parametrize("app_settings", [LONG], indirect=True)
@pytest.mark.gen_test
async def test_a_change_to_the_member_is_seen_at_once(app, member, db_settings):
    alice = await member()
    assert await is_logged_in(alice)
    (row,) = query(db_settings, "SELECT id FROM users")
    await app.models.users.set_locale(row["id"], "zh_CN")
    page = (await alice.get("/account")).body.decode()
    assert '<html lang="zh' in page, "the cached lookup kept the old language"


@pytest.mark.parametrize("app_settings", [{"session_cache_seconds": 0}], indirect=True)
@pytest.mark.gen_test
async def test_zero_seconds_turns_the_cache_off(member, db_settings):
    alice = await member()
    assert await is_logged_in(alice)
    delete_sessions_behind_the_apps_back(db_settings)
    assert not await is_logged_in(alice)


@pytest.mark.gen_test
async def test_an_end_announced_during_a_lookup_is_not_cached(app, member, db_settings):
    """The version is taken before the query: a lookup that raced an end is never kept."""
    alice = await member()
    sessions = app.models.sessions
    token = tornado.web.decode_signed_value(
        app.settings["cookie_secret"], "session", alice.cookies["session"]
    )
    token = token.decode()
    version = sessions.cache.version()
    sessions.ended(0)  # lands while a lookup (below, by hand) would be in flight
    sessions.cache.put("k", {"id": 1, "idle": 0}, version, 60)
    assert sessions.cache.get("k") is None
    assert await sessions.lookup(token) is not None  # a fresh lookup is kept again
    assert sessions.cache.get(sessions_key(token)) is not None


def sessions_key(token):
    from models.sessions import token_hash

    return token_hash(token)


# --- across processes ----------------------------------------------------------------------------

DB = sp.database_name("session_cache")


@pytest.fixture
def cache_db():
    sp.drop_databases(DB)
    yield DB
    sp.drop_databases(DB)


def logged_in(port, cookies):
    browser = sp.Browser(port)
    browser.cookies = dict(cookies)
    status = browser.get("/account").status
    assert status in (200, 302), status
    return status == 200


def log_out(port, cookies):
    browser = sp.Browser(port)
    browser.cookies = dict(cookies)
    assert browser.post("/logout", {}).status == 302


def registered(port, name):
    browser = sp.Browser(port)
    assert browser.register(name).status == 302
    return browser.cookies


def refused_within(port, cookies, seconds):
    """How long until `port` refuses the cookie (None: not within `seconds`)."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if not logged_in(port, cookies):
            return time.monotonic() - start
        time.sleep(0.02)
    return None


def test_log_out_on_one_process_is_refused_at_once_on_another(cache_db):
    extra = [
        "--session_cache_seconds=60",
        "--redis_url=" + REDIS_URL,
        "--chat_redis_prefix=" + unique_prefix(),
    ]
    with (
        sp.running_server(cache_db, extra=extra) as (_, port_a),
        sp.running_server(cache_db, extra=extra) as (_, port_b),
    ):
        cookies = registered(port_a, "cache_alice")
        assert logged_in(port_b, cookies) and logged_in(port_b, cookies)  # B has it cached
        log_out(port_a, cookies)
        took = refused_within(port_b, cookies, 2.0)
        assert took is not None, "process B kept a session that ended on A"
        assert took < 1.0, took


def test_forked_children_without_redis_share_the_end(cache_db):
    with sp.running_server(cache_db, extra=["--processes=2", "--session_cache_seconds=60"]) as (_, port):
        cookies = registered(port, "cache_bob")
        for _ in range(20):  # connections spread over both children: each caches the lookup
            assert logged_in(port, cookies)
        log_out(port, cookies)
        assert not any(logged_in(port, cookies) for _ in range(20)), "a sibling kept the ended session"


@pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed")
@pytest.mark.gen_test(timeout=60)
async def test_while_redis_is_away_every_request_queries(cache_db):
    redis_port = sp.free_port()
    extra = [
        "--session_cache_seconds=60",
        "--redis_url=redis://127.0.0.1:%d/0" % redis_port,
        "--chat_redis_prefix=" + unique_prefix(),
    ]
    redis = await start_redis(redis_port)
    try:
        with (
            sp.running_server(cache_db, extra=extra) as (server_a, port_a),
            sp.running_server(cache_db, extra=extra) as (server_b, port_b),
        ):
            cookies = registered(port_a, "cache_cat")
            assert logged_in(port_b, cookies)  # cached on B
            await stop_redis(redis)
            assert await eventually(lambda: "lost Redis" in server_b.stderr, 10)
            log_out(port_a, cookies)  # A cannot tell B: Redis is away
            assert not logged_in(port_b, cookies), "B trusted its cache while Redis was away"

            # Back: B caches again, and hears ends again.
            redis = await start_redis(redis_port)
            assert await eventually(lambda: all("is back" in s.stderr for s in (server_a, server_b)), 15)
            await asyncio.sleep(0.2)
            cookies = registered(port_a, "cache_dan")
            assert logged_in(port_b, cookies)
            log_out(port_a, cookies)
            assert refused_within(port_b, cookies, 2.0) is not None
    finally:
        await stop_redis(redis)


@pytest.mark.parametrize("app_settings", [LONG], indirect=True)
@pytest.mark.gen_test
async def test_a_cached_session_still_slides_its_expiry_once_a_minute(app, member, db_settings):
    alice = await member()
    assert await is_logged_in(alice)
    query(db_settings, "UPDATE sessions SET last_seen = NOW() - INTERVAL 2 MINUTE")
    cache = app.models.sessions.cache
    (key,) = cache._entries
    version, expires, row, read_at = cache._entries[key]
    cache._entries[key] = (version, expires, row, read_at - 61)  # as if read a minute ago
    r = await alice.get("/account")
    assert r.code == 200 and any(h.startswith("session=") for h in r.headers.get_list("Set-Cookie"))
    (seen,) = query(db_settings, "SELECT TIMESTAMPDIFF(SECOND, last_seen, NOW()) AS idle FROM sessions")
    assert seen["idle"] < 10
    r = await alice.get("/account")
    assert not any(h.startswith("session=") for h in r.headers.get_list("Set-Cookie")), "touched again"
