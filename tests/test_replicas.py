"""Read replicas on real MariaDB replication (GTID): a private primary and a replica of it
(tests/replication.py), server.py against both. Reads that may be stale land on the replica, the
author reads their own write at once (from the primary), a replica that stops applying or falls
behind is avoided with no error to anyone, and it is used again once healthy."""

import contextlib
import os
import time

import pytest

from tests import replication
from tests import serverproc as sp
from tests.helpers import wait_until

if not replication.available():
    if os.environ.get("STORYHOUSE_REQUIRE_REPLICA"):
        raise RuntimeError("mariadbd and mariadb-install-db are needed for tests/test_replicas.py")
    pytest.skip("mariadbd / mariadb-install-db are not installed", allow_module_level=True)

DATABASE = "storyhouse_replicated"


@pytest.fixture(scope="module")
def pair():
    with replication.replicated_pair() as pair:
        yield pair


@contextlib.contextmanager
def site(pair, max_lag=30):
    """server.py on the pair: writes to the primary, reads (when they may be stale) to the replica.
    No page cache, so every read is a query we can count."""
    extra = [
        "--mysql_host=127.0.0.1",
        "--mysql_port=%d" % pair.primary_port,
        "--mysql_user=root",
        "--mysql_password=",
        "--mysql_replicas=127.0.0.1:%d" % pair.replica_port,
        "--mysql_replica_max_lag=%g" % max_lag,
        "--page_cache_seconds=0",
    ]
    with sp.running_server(DATABASE, extra=extra) as (server, port):
        pair.wait_caught_up()  # the migrations (run on the primary) have reached the replica
        assert wait_until(lambda: healthy_said(server) >= 1, 10), server.stderr
        yield server, port


def healthy_said(server):
    return server.stderr.count("is healthy: reads go to it")


def selects(port):
    rows = replication.run_sql(port, "SHOW GLOBAL STATUS LIKE 'Com_select'")
    return int(rows[0]["Value"])


def set_delay(pair, seconds):
    replication.run_sql(pair.replica_port, "STOP SLAVE")
    replication.run_sql(pair.replica_port, "CHANGE MASTER TO MASTER_DELAY=%s", (seconds,))
    replication.run_sql(pair.replica_port, "START SLAVE")


def author(port, name):
    browser = sp.Browser(port)
    assert browser.register(name).status == 302
    return browser


def new_story(browser, title):
    r = browser.post("/story/new", {"title": title, "body": "Written on the primary."})
    assert r.status == 302, r.text
    return int(r.headers["Location"].rsplit("/", 1)[1])


def status(port, path):
    return sp.get(port, path).status


def test_stale_tolerant_reads_land_on_the_replica_and_writes_on_the_primary(pair):
    with site(pair) as (_, port):
        story = new_story(author(port, "repl_ann"), "Read from the replica")
        pair.wait_caught_up()
        before = selects(pair.replica_port), selects(pair.primary_port)
        for _ in range(10):
            assert status(port, "/") == 200
            assert status(port, "/story/%d" % story) == 200
            assert status(port, "/api/stories") == 200
        on_replica = selects(pair.replica_port) - before[0]
        on_primary = selects(pair.primary_port) - before[1]
        assert on_replica >= 30, (on_replica, on_primary)
        assert on_primary <= 3, (on_replica, on_primary)
        (row,) = replication.run_sql(
            pair.replica_port, "SELECT title FROM stories WHERE id = %s", (story,), database=DATABASE
        )
        assert row["title"] == "Read from the replica"  # it came by replication


def test_the_author_reads_their_write_at_once_while_the_replica_is_behind(pair):
    with site(pair) as (_, port):
        writer = author(port, "repl_bob")
        pair.wait_caught_up()
        set_delay(pair, 4)  # a replica 4 s behind, within the bound (30 s): still used
        try:
            story = new_story(writer, "Seen at once by its author")
            page = writer.get("/story/%d" % story)
            assert page.status == 200 and "Seen at once by its author" in page.text
            assert writer.get("/").text.count("Seen at once by its author") >= 1
            assert status(port, "/story/%d" % story) == 404  # a visitor reads the replica: not there yet
            assert wait_until(lambda: status(port, "/story/%d" % story) == 200, 15)

            # Sessions are never read from a replica: one that ended is refused at once everywhere.
            other = sp.Browser(port)
            assert other.post("/login", {"username": "repl_bob", "password": "correct horse"}).status == 302
            time.sleep(0.2)
            other.cookies.pop("fresh", None)  # this browser has not written: its reads may be stale
            assert other.get("/account").status == 200
            assert writer.post("/account/sessions/revoke", {"all": "1"}).status == 302
            assert other.get("/account").status == 302, "an ended session was read from the replica"
        finally:
            set_delay(pair, 0)
            pair.wait_caught_up()


def test_a_replica_that_stops_applying_is_avoided_and_comes_back(pair):
    with site(pair) as (server, port):
        writer = author(port, "repl_cat")
        pair.wait_caught_up()
        replication.run_sql(pair.replica_port, "STOP SLAVE SQL_THREAD")
        try:
            assert wait_until(lambda: "is not replicating" in server.stderr, 10), server.stderr
            story = new_story(writer, "Written while the replica stood still")
            before = selects(pair.replica_port)
            for _ in range(5):
                assert status(port, "/story/%d" % story) == 200  # from the primary, no error
                assert status(port, "/") == 200
            assert selects(pair.replica_port) == before, "reads still went to the stopped replica"
        finally:
            replication.run_sql(pair.replica_port, "START SLAVE SQL_THREAD")
        assert wait_until(lambda: healthy_said(server) >= 2, 15), server.stderr
        before = selects(pair.replica_port)
        assert status(port, "/story/%d" % story) == 200
        assert selects(pair.replica_port) > before, "the healthy replica was not used again"


def test_a_lagging_replica_is_avoided(pair):
    with site(pair, max_lag=1) as (server, port):
        writer = author(port, "repl_dan")
        pair.wait_caught_up()
        set_delay(pair, 6)
        try:
            story = new_story(writer, "Written while the replica lagged")
            assert wait_until(lambda: "s behind" in server.stderr, 10), server.stderr
            assert status(port, "/story/%d" % story) == 200  # the primary answers a visitor too
        finally:
            set_delay(pair, 0)
            pair.wait_caught_up()
        assert wait_until(lambda: healthy_said(server) >= 2, 15), server.stderr


def test_a_replica_that_is_gone_costs_no_request_an_error(pair):
    """Killed between two checks: the query that finds it gone is answered by the primary."""
    with site(pair) as (server, port):
        story = new_story(author(port, "repl_eve"), "Survives a lost replica")
        pair.wait_caught_up()
        pair.replica.stop()
        try:
            for _ in range(5):
                assert status(port, "/story/%d" % story) == 200
                assert status(port, "/") == 200
            assert "reads go elsewhere" in server.stderr
        finally:
            pair.restart_replica()
        assert wait_until(lambda: healthy_said(server) >= 2, 20), server.stderr
        assert status(port, "/story/%d" % story) == 200


def test_a_malformed_replica_list_stops_the_server_with_a_clear_message():
    rc, _out, err = sp.run_server(["--port=%d" % sp.free_port(), "--mysql_replicas=127.0.0.1:notaport"])
    assert rc != 0 and "is not host:port" in err, err
    assert "Traceback" not in err
