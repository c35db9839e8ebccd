"""The database layer (models/db.py) against the real MariaDB: return types, transactions,
placeholders; the IOLoop stays free while the pool is saturated (SPEC §5); a slow query is stopped
without an outage; the site survives the database going away and recovers by itself (SPEC §4, §8);
migrations are idempotent."""

import asyncio
import concurrent.futures
import itertools
import json
import time

import pymysql
import pytest
from tornado.testing import bind_unused_port

from application import Application
from models import migrate
from models.db import BlockingOnTheLoop, Database, DuplicateKey, QueryTimeout, Result, open_connection
from serving.connections import make_http_server
from serving.housekeeping import housekeeping
from tests.conftest import CHEAP_ARGON2, TEST_DATABASE, Client
from tests.helpers import assert_error_page, assert_security_headers, eventually, raw_connection
from tests.tcp_proxy import TcpProxy

INJECTION = "'; DROP TABLE users; --"


_searches = itertools.count()


def uncached():
    """A page that needs the database every time: a search never made before (the index and
    story pages may come from the page cache for a few seconds)."""
    return "/?q=probe%d" % next(_searches)


def sql_scalar(settings, sql, params=(), database=TEST_DATABASE):
    """One value through a plain connection of its own (not the app's pool)."""
    con = raw_connection(settings, database)
    try:
        with con.cursor() as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
            return None if row is None else next(iter(row.values()))
    finally:
        con.close()


async def add_user(db, name="alice"):
    result = await db.execute("INSERT INTO users (username, password_hash) VALUES (%s, %s)", (name, "x"))
    return result.lastrowid


# --- fetch_one, fetch_all, execute --------------------------------------------------------------


@pytest.mark.gen_test
async def test_fetch_one_returns_a_dict_or_none(app):
    user_id = await add_user(app.models.db)
    row = await app.models.db.fetch_one("SELECT id, username FROM users WHERE id = %s", (user_id,))
    assert row == {"id": user_id, "username": "alice"}
    assert await app.models.db.fetch_one("SELECT id FROM users WHERE id = %s", (user_id + 1,)) is None


@pytest.mark.gen_test
async def test_fetch_all_returns_a_list_of_dicts(app):
    ids = [await add_user(app.models.db, name) for name in ("alice", "bob", "carol")]
    rows = await app.models.db.fetch_all("SELECT id, username FROM users ORDER BY id")
    assert [r["id"] for r in rows] == ids
    assert [r["username"] for r in rows] == ["alice", "bob", "carol"]
    assert isinstance(rows, list) and all(isinstance(r, dict) for r in rows)


@pytest.mark.gen_test
async def test_fetch_all_with_no_rows_is_an_empty_list(app):
    rows = await app.models.db.fetch_all("SELECT id FROM users")
    assert rows == [] and isinstance(rows, list)


@pytest.mark.gen_test
async def test_execute_returns_lastrowid_and_rowcount(app):
    first = await app.models.db.execute(
        "INSERT INTO users (username, password_hash) VALUES (%s, %s)", ("a1", "x")
    )
    second = await app.models.db.execute(
        "INSERT INTO users (username, password_hash) VALUES (%s, %s)", ("a2", "x")
    )
    assert isinstance(first, Result) and first.rowcount == 1
    assert second.lastrowid == first.lastrowid + 1
    assert await app.models.db.fetch_one("SELECT username FROM users WHERE id = %s", (second.lastrowid,)) == {
        "username": "a2"
    }
    updated = await app.models.db.execute("UPDATE users SET password_hash = %s", ("y",))
    assert updated.rowcount == 2
    deleted = await app.models.db.execute("DELETE FROM users WHERE username = %s", ("nobody",))
    assert deleted.rowcount == 0


@pytest.mark.gen_test
async def test_sessions_are_utf8mb4_and_utc(app):
    name = "ñ_📚_日本"
    user_id = await add_user(app.models.db, name)
    row = await app.models.db.fetch_one("SELECT username FROM users WHERE id = %s", (user_id,))
    assert row == {"username": name}
    row = await app.models.db.fetch_one("SELECT @@session.time_zone AS tz, @@character_set_connection AS cs")
    assert row == {"tz": "+00:00", "cs": "utf8mb4"}


@pytest.mark.gen_test
async def test_sql_errors_propagate_and_the_pool_keeps_working(app):
    with pytest.raises(pymysql.err.ProgrammingError):
        await app.models.db.fetch_one("SELECT * FROM no_such_table")
    await add_user(app.models.db)
    with pytest.raises(DuplicateKey):
        await add_user(app.models.db)  # same name: unique key (1062 becomes the layer's own error)
    for _ in range(app.models.db.pool_size * 2):  # no connection was lost to the errors
        assert await app.models.db.fetch_one("SELECT 1 AS one") == {"one": 1}


# --- transactions -----------------------------------------------------------------------------


def _insert(cur, name):
    cur.execute("INSERT INTO users (username, password_hash) VALUES (%s, %s)", (name, "x"))
    return cur.lastrowid


@pytest.mark.gen_test
async def test_transaction_commits(app, db_settings):
    def work(cur):
        return [_insert(cur, "t1"), _insert(cur, "t2")]

    ids = await app.models.db.transaction(work)
    assert len(ids) == 2
    # Seen from another connection: really committed.
    assert sql_scalar(db_settings, "SELECT COUNT(*) FROM users WHERE id IN (%s, %s)", tuple(ids)) == 2


@pytest.mark.gen_test
async def test_transaction_rolls_back_on_a_python_exception(app, db_settings):
    def work(cur):
        _insert(cur, "ghost")
        raise ValueError("changed my mind")

    with pytest.raises(ValueError, match="changed my mind"):
        await app.models.db.transaction(work)
    assert sql_scalar(db_settings, "SELECT COUNT(*) FROM users") == 0
    for _ in range(app.models.db.pool_size):  # no connection is left inside an open transaction
        assert await app.models.db.fetch_one("SELECT @@in_transaction AS t") == {"t": 0}


@pytest.mark.gen_test
async def test_transaction_rolls_back_on_a_database_error(app, db_settings):
    await add_user(app.models.db, "taken")

    def work(cur):
        _insert(cur, "first")
        _insert(cur, "taken")  # duplicate key: the whole transaction goes

    with pytest.raises(DuplicateKey):
        await app.models.db.transaction(work)
    assert sql_scalar(db_settings, "SELECT COUNT(*) FROM users WHERE username = 'first'") == 0
    assert sql_scalar(db_settings, "SELECT COUNT(*) FROM users") == 1


# --- placeholders -----------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_placeholders_make_injection_harmless(app, db_settings):
    user_id = await add_user(app.models.db, INJECTION)
    row = await app.models.db.fetch_one("SELECT id FROM users WHERE username = %s", (INJECTION,))
    assert row == {"id": user_id}
    assert not await app.models.db.fetch_all("SELECT id FROM users WHERE username = %s", ("' OR '1'='1",))
    assert (
        sql_scalar(
            db_settings,
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s AND table_name = 'users'",
            (TEST_DATABASE,),
        )
        == 1
    )


@pytest.mark.gen_test
async def test_injection_through_the_site_is_harmless(app, client):
    await client.register("alice", "correct horse")
    await client.new_story(INJECTION, "body with ' quotes \" and \\ backslash")
    for query in (INJECTION, "' OR '1'='1", "%", "_"):
        response = await client.get(
            "/?q=" + query.replace("%", "%25").replace("'", "%27").replace(" ", "+").replace(";", "%3B")
        )
        assert response.code == 200
    listing = (await client.get("/?q=%27%3B+DROP")).body.decode()
    assert "&#x27;; DROP TABLE users; --" in listing  # found, literally, and escaped
    assert "No story matches" in (await client.get("/?q=%27+OR+%271%27%3D%271")).body.decode()
    assert (await app.models.db.fetch_one("SELECT COUNT(*) AS n FROM users"))["n"] == 1


# --- the IOLoop is never blocked (SPEC §5) ----------------------------------------------------


async def sleeping_queries(db_settings):
    """How many `SELECT SLEEP` run right now on the test database (asked off the IOLoop)."""
    sql = "SELECT COUNT(*) FROM information_schema.processlist WHERE db = %s AND info LIKE 'SELECT SLEEP(%%'"
    return await asyncio.get_running_loop().run_in_executor(
        None, lambda: sql_scalar(db_settings, sql, (TEST_DATABASE,), database=None)
    )


@pytest.mark.gen_test(timeout=30)
async def test_saturated_pool_does_not_slow_pages_that_need_no_query(
    app, http_server, base_url, own_http_client, db_settings
):
    http = own_http_client(max_clients=100)

    async def timed(path):
        start = time.monotonic()
        response = await http.fetch(base_url + path, raise_error=False)
        return response, time.monotonic() - start

    for path in ("/login", "/healthz", "/"):  # warm up: templates compiled, executors started
        assert (await timed(path))[0].code == 200

    # Open every pooled connection first, so the sleeps start at once.
    await asyncio.gather(
        *(app.models.db.fetch_one("SELECT SLEEP(0.05)") for _ in range(app.models.db.pool_size))
    )

    n = app.models.db.pool_size * 3
    sleeps = [asyncio.ensure_future(app.models.db.fetch_one("SELECT SLEEP(1) AS s")) for _ in range(n)]

    async def every_connection_busy():
        return await sleeping_queries(db_settings) == app.models.db.pool_size == 4

    assert await eventually(every_connection_busy, 0.5)

    for _ in range(3):
        for path in ("/login", "/healthz"):
            response, took = await timed(path)
            assert response.code == 200, path
            assert took < 0.1, "%s took %.3f s while the pool was saturated" % (path, took)
    assert sum(task.done() for task in sleeps) == 0  # still saturated all along

    # The control: a page that needs the pool waits behind the sleeps, so they were real (a search
    # never made before, so the page cache cannot answer it).
    response, took = await timed("/?q=control")
    assert response.code == 200
    assert took > 1.0, "a search took only %.3f s: the pool was not saturated" % took
    assert await asyncio.gather(*sleeps) == [{"s": 0}] * n


@pytest.mark.gen_test(timeout=30)
async def test_many_concurrent_queries_all_complete(app):
    start = time.monotonic()
    results = await asyncio.gather(
        *(app.models.db.fetch_one("SELECT SLEEP(0.2) AS s, %s AS i", (i,)) for i in range(12))
    )
    took = time.monotonic() - start
    assert [r["i"] for r in results] == list(range(12))
    # 12 queries on 4 connections: 3 rounds of 0.2 s, not 12 in a row, not 12 at once.
    assert 0.55 < took < 2.0, took


@pytest.mark.gen_test
async def test_the_blocking_layer_refuses_to_run_on_the_loop_thread(app, db_settings):
    """A model that calls pymysql without the executor would block every request: each blocking
    entry point of models/db.py raises on the loop's thread instead, so that model's tests fail."""
    s = db_settings
    on_the_loop = [
        lambda: app.models.db._query("SELECT 1 AS one", (), "one"),
        lambda: app.models.db._transaction(lambda cur: cur.execute("SELECT 1")),
        app.models.health._ping,
        lambda: open_connection(s["host"], s["port"], s["user"], s["password"]),  # and the pool's connect
    ]
    for call in on_the_loop:
        with pytest.raises(BlockingOnTheLoop, match="event loop's thread"):
            call()
    # The same functions on a worker thread (where the async helpers run them) are fine.
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, app.models.db._query, "SELECT 1 AS one", (), "one") == {"one": 1}
    assert (
        await loop.run_in_executor(None, app.models.db._transaction, lambda cur: cur.execute("SELECT 1")) == 1
    )
    assert await loop.run_in_executor(None, app.models.health._ping) is True


# --- query timeouts: a slow query is stopped, not an outage ---------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_slow_query_is_stopped_by_the_server_and_is_not_an_outage(clean_db):
    db = Database(**clean_db, pool_size=2, query_timeout=1.5)  # MariaDB stops statements at 1.0 s
    try:
        started = time.monotonic()
        with pytest.raises(QueryTimeout):
            await db.fetch_one("SELECT SLEEP(4) AS slept")
        assert time.monotonic() - started < 1.45  # the server's bound, before the client's
        # The next query runs at once: one slow query does not make the database "down".
        assert await db.fetch_one("SELECT 1 AS one") == {"one": 1}
        running = sql_scalar(
            clean_db,
            "SELECT COUNT(*) FROM information_schema.processlist WHERE info = %s",
            ("SELECT SLEEP(4) AS slept",),
        )
        assert running == 0  # nothing left running in MariaDB, holding a connection
    finally:
        db.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_query_timeout_fails_only_its_own_request(app, client, db_settings):
    # The client-side bound (asyncio.wait_for) fires first here: still not an outage.
    app.models.db.query_timeout = 0.3
    with pytest.raises(QueryTimeout):
        await app.models.db.fetch_one("SELECT SLEEP(0.6) AS s")
    app.models.db.query_timeout = 5
    assert (await client.get("/")).code == 200


# --- the database goes away and comes back (SPEC §4 Errors, §8 Database timeouts) -------------


@pytest.fixture
def proxy(db_settings):
    p = TcpProxy(db_settings["host"], db_settings["port"]).start()
    yield p
    p.stop()


@pytest.fixture
def proxied_site(clean_db, proxy, io_loop):
    """An Application whose MySQL is reached through the proxy, on an HTTP server of its own."""
    app = Application(
        db_settings=dict(clean_db, port=proxy.port), pool_size=2, cookie_secret="x", argon2=CHEAP_ARGON2
    )
    sock, port = bind_unused_port()
    srv = make_http_server(app)
    srv.add_socket(sock)
    yield app, "http://127.0.0.1:%d" % port
    srv.stop()
    io_loop.run_sync(srv.close_all_connections, timeout=5)
    app.close()


@pytest.mark.gen_test(timeout=60)
async def test_database_lost_then_back(proxied_site, proxy, own_http_client, db_settings):
    app, url = proxied_site
    browser = Client(own_http_client(), url)

    async def timed(path, **kwargs):
        start = time.monotonic()
        response = await browser.fetch(path, request_timeout=20, **kwargs)
        return response, time.monotonic() - start

    # Up: both pool connections opened through the proxy.
    await asyncio.gather(timed(uncached()), timed(uncached()))
    assert (await timed(uncached()))[0].code == 200
    assert (await timed("/healthz"))[0].code == 200

    proxy.stop()  # the database goes away, open connections included
    response, took = await timed(uncached())
    assert_error_page(response, 503, "The site is briefly unavailable. Please try again in a moment.")
    assert_security_headers(response)
    assert took < 3, "the first 503 took %.2f s" % took
    response, took = await timed("/healthz")
    assert response.code == 503 and took < 3
    assert response.headers["Content-Type"].startswith("application/json")
    assert json.loads(response.body) == {"status": "unavailable"}
    assert (await timed("/login"))[0].code == 200  # a page without a query still works

    for _ in range(5):  # after the first failure, fail fast
        response, took = await timed(uncached())
        assert response.code == 503
        assert took < 0.5, "a 503 took %.2f s" % took
    # The fail-fast window must pass (a timer, nothing to wait for): trying again is still quick.
    await asyncio.sleep(app.models.db.fail_fast_seconds + 0.1)
    response, took = await timed("/story/1")
    assert response.code == 503 and took < 1.0, took

    register = await browser.post(
        "/register", {"username": "lost", "password": "correct horse", "confirm": "correct horse"}
    )
    assert_error_page(register, 503)  # a write reports failure

    proxy.start()  # back, same port, same app and process

    async def answers():
        return (await timed(uncached()))[0].code == 200

    assert await eventually(answers, 5, interval=0.2), "no recovery within 5 s"
    assert (await timed("/healthz"))[0].code == 200
    for _ in range(app.models.db.pool_size * 2):  # every pooled connection works again
        assert (await timed(uncached()))[0].code == 200
    register = await browser.post(
        "/register", {"username": "back", "password": "correct horse", "confirm": "correct horse"}
    )
    assert register.code == 302
    assert sql_scalar(db_settings, "SELECT GROUP_CONCAT(username) FROM users") == "back"


def timed_client(url, own_http_client):
    browser = Client(own_http_client(), url)

    async def timed(path, **kwargs):
        kwargs.setdefault("request_timeout", 20)
        start = time.monotonic()
        response = await browser.fetch(path, **kwargs)
        return response, time.monotonic() - start

    return timed


@pytest.mark.gen_test(timeout=60)
async def test_unreachable_database_fails_fast_after_the_first_error(proxied_site, proxy, own_http_client):
    """A host that does not answer: the first request pays the connect timeouts, the next
    ones fail at once instead of queueing behind threads stuck in connect()."""
    app, url = proxied_site
    timed = timed_client(url, own_http_client)
    await asyncio.gather(timed(uncached()), timed(uncached()))  # both pool connections open

    proxy.blackhole()
    response, took = await timed(uncached())
    assert_error_page(response, 503)
    # Measured: 2 connect timeouts (DBUtils reconnects once for the query and once for the
    # rollback when the connection goes back to the pool): about 4 s.
    assert took < 6, "the first 503 took %.2f s" % took
    for _ in range(5):
        response, took = await timed(uncached())
        assert response.code == 503
        assert took < 0.3, "after a connection error a 503 took %.2f s: no fail-fast" % took
    response, took = await timed("/healthz")
    assert response.code == 503 and took < 5, took
    assert (await timed("/login"))[0].code == 200

    proxy.start()

    async def answers():
        return (await timed(uncached()))[0].code == 200

    # the fail-fast window, then 5 s
    assert await eventually(answers, app.models.db.fail_fast_seconds + 5, interval=0.2), "no recovery"
    assert (await timed("/healthz"))[0].code == 200


@pytest.mark.gen_test(timeout=60)
async def test_hung_database_healthz_answers_503_within_seconds(proxied_site, proxy, own_http_client):
    _, url = proxied_site
    timed = timed_client(url, own_http_client)
    assert (await timed("/healthz"))[0].code == 200
    proxy.freeze()  # accepts connections, never answers
    try:
        response, took = await timed("/healthz")
        assert response.code == 503 and took < 5, (response.code, took)
    finally:
        proxy.stop()


@pytest.mark.gen_test(timeout=60)
async def test_hung_database_pages_answer_503_within_seconds(proxied_site, proxy, own_http_client):
    _, url = proxied_site
    timed = timed_client(url, own_http_client)
    assert (await timed(uncached()))[0].code == 200
    proxy.freeze()  # the pool's connections are closed; reconnecting meets a silent server
    try:
        response, took = await timed("/", request_timeout=6)
        assert response.code == 503 and took < 5, (response.code, took)
    finally:
        proxy.stop()  # lets the stuck threads go


@pytest.mark.gen_test(timeout=30)
async def test_database_down_at_start_then_up(clean_db, own_http_client):
    """An app built while MySQL is unreachable starts, answers 503, and recovers by itself."""
    proxy = TcpProxy(clean_db["host"], clean_db["port"]).start()
    proxy.stop()  # the port is known and refuses connections
    app = Application(
        db_settings=dict(clean_db, port=proxy.port), pool_size=2, cookie_secret="x", argon2=CHEAP_ARGON2
    )
    sock, port = bind_unused_port()
    srv = make_http_server(app)
    srv.add_socket(sock)
    http = own_http_client()
    url = "http://127.0.0.1:%d" % port
    try:
        response = await http.fetch(url + "/", raise_error=False)
        assert_error_page(response, 503)
        assert (await http.fetch(url + "/healthz", raise_error=False)).code == 503
        proxy.start()

        async def answers():
            return (await http.fetch(url + "/", raise_error=False)).code == 200

        assert await eventually(answers, app.models.db.fail_fast_seconds + 5, interval=0.1)
        assert (await http.fetch(url + "/healthz", raise_error=False)).code == 200
    finally:
        proxy.stop()
        srv.stop()
        await srv.close_all_connections()
        app.close()


# --- migrations -------------------------------------------------------------------------------


def test_migrate_on_a_migrated_database_applies_nothing(clean_db):
    con = raw_connection(clean_db, TEST_DATABASE)
    with con.cursor() as cur:
        cur.execute("INSERT INTO users (username, password_hash) VALUES ('keep', 'x')")
    con.close()
    assert migrate.migrate(**clean_db) == []
    assert migrate.migrate(**clean_db) == []
    assert sql_scalar(clean_db, "SELECT username FROM users") == "keep"  # data untouched
    versions = sql_scalar(
        clean_db, "SELECT GROUP_CONCAT(version, ':', name ORDER BY version) FROM schema_migrations"
    )
    assert versions == ",".join("%d:%s" % (v, name) for v, name, _ in migrate.migration_files())
    assert versions.startswith("1:001_init.sql,2:002_story_excerpt.sql")


def test_every_migration_statement_is_safe_to_run_twice(clean_db):
    con = raw_connection(clean_db, TEST_DATABASE)
    try:
        with con.cursor() as cur:
            for _version, _name, path in migrate.migration_files():
                with open(path, encoding="utf-8") as f:
                    for statement in migrate.statements(f.read()):
                        cur.execute(statement)
    finally:
        con.close()


def test_database_and_tables_are_utf8mb4(db_settings):
    assert (
        sql_scalar(
            db_settings,
            "SELECT default_character_set_name FROM information_schema.schemata WHERE schema_name = %s",
            (TEST_DATABASE,),
        )
        == "utf8mb4"
    )
    collations = sql_scalar(
        db_settings,
        "SELECT GROUP_CONCAT(DISTINCT table_collation)"
        " FROM information_schema.tables WHERE table_schema = %s",
        (TEST_DATABASE,),
    )
    assert collations.split(",") and all(c.startswith("utf8mb4_") for c in collations.split(","))


def test_two_starters_on_a_fresh_database_migrate_once(db_settings):
    """create + migrate from nothing; GET_LOCK makes two concurrent starters agree."""
    fresh = dict(db_settings, database=TEST_DATABASE + "_fresh")
    drop = "DROP DATABASE IF EXISTS `%s`" % fresh["database"]
    sql_scalar(db_settings, drop, database=None)
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda _: migrate.migrate(**fresh), range(2)))
        assert sorted(results) == [[], [v for v, _, _ in migrate.migration_files()]]
        assert (
            sql_scalar(
                fresh,
                "SELECT default_character_set_name FROM information_schema.schemata WHERE schema_name = %s",
                (fresh["database"],),
                database=None,
            )
            == "utf8mb4"
        )
        assert sql_scalar(fresh, "SELECT COUNT(*) FROM schema_migrations", database=fresh["database"]) == len(
            migrate.migration_files()
        )
    finally:
        sql_scalar(db_settings, drop, database=None)


def test_database_name_is_checked(db_settings):
    with pytest.raises(ValueError):
        migrate.migrate(**dict(db_settings, database="x`; DROP DATABASE mysql; --"))


@pytest.mark.gen_test
async def test_housekeeping_drops_expired_sessions_and_old_failures(app, db_settings):
    user_id = await add_user(app.models.db, "keeper")
    for token, days in (("live", 1), ("dead", -1)):
        await app.models.db.execute(
            "INSERT INTO sessions (token_hash, user_id, expires_at) VALUES (%s, %s, NOW() + INTERVAL %s DAY)",
            (token, user_id, days),
        )
    for minutes in (1, 60):
        await app.models.db.execute(
            "INSERT INTO login_failures (username, ip, failed_at)"
            " VALUES ('x', '127.0.0.1', NOW() - INTERVAL %s MINUTE)",
            (minutes,),
        )
    await housekeeping(app.models)
    assert sql_scalar(db_settings, "SELECT GROUP_CONCAT(token_hash) FROM sessions") == "live"
    assert sql_scalar(db_settings, "SELECT COUNT(*) FROM login_failures") == 1
