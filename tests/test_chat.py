"""The chat room over real WebSockets, a real MariaDB and a real Redis: the socket's checks, the
room (history, presence, join/leave), revoked sessions, slow readers, and server.py processes
(SIGTERM → 1001, two processes on one Redis, Redis stopped and started again)."""

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from models.room import SIGNED_OUT
from serving.tornado_internals import unsent_bytes
from tests import serverproc as sp
from tests.helpers import cookie_header, eventually, query
from views.sockets import MAX_UNSENT

REDIS_URL = "redis://127.0.0.1:6379/0"
WAIT = 5  # seconds a test waits for a frame that should come


def unique_prefix():
    """Redis channel and keys of their own, so parallel runs never meet."""
    return "shtest_%d_%s" % (os.getpid(), uuid.uuid4().hex[:8])


OPEN = []  # every client socket a test opened, closed after it (the server may have closed it)


@pytest.fixture(autouse=True)
def close_client_sockets(io_loop):
    yield
    while OPEN:
        OPEN.pop().close()


async def connect(base_url, cookies=None, origin=None, path="/chat/ws"):
    headers = {}
    if cookies:
        headers["Cookie"] = cookie_header(cookies)
    if origin:
        headers["Origin"] = origin
    url = base_url.replace("http://", "ws://") + path
    ws = await websocket_connect(HTTPRequest(url, headers=headers))
    OPEN.append(ws)
    return ws


async def frame(ws, timeout=WAIT):
    """The next frame as a dict; None once the socket is closed."""
    raw = await asyncio.wait_for(ws.read_message(), timeout)
    return None if raw is None else json.loads(raw)


async def until(ws, kind, timeout=WAIT, **match):
    """Read frames until one of type `kind` (and matching fields) arrives; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        f = await frame(ws, max(0.01, deadline - time.monotonic()))
        assert f is not None, "socket closed (%s) while waiting for %s" % (ws.close_code, kind)
        if f["type"] == kind and all(f.get(k) == v for k, v in match.items()):
            return f


async def joined(base_url, cookies, **kwargs):
    """A connected socket past its history and presence frames: (ws, history, presence)."""
    ws = await connect(base_url, cookies, **kwargs)
    history = await frame(ws)
    presence = await frame(ws)
    assert history["type"] == "history" and presence["type"] == "presence", (history, presence)
    return ws, history, presence


async def nothing_more(ws, wait=0.3):
    with contextlib.suppress(asyncio.TimeoutError):
        f = await frame(ws, wait)
        pytest.fail("expected no frame, got %r" % (f,))


ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# --- the page ----------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_chat_page_needs_login_and_links_the_socket(client):
    r = await client.get("/chat")
    assert r.code == 302 and r.headers["Location"].startswith("/login?next=%2Fchat")
    await client.register("alice")
    r = await client.get("/chat")
    assert r.code == 200
    page = r.body.decode()
    assert 'data-ws="/chat/ws"' in page
    assert re.search(r'<script src="/static/js/chat\.js\?v=\w+"></script>', page)
    assert '<a href="/chat">Chat</a>' in page  # the header link
    js = (await client.get("/static/js/chat.js")).body.decode()
    assert "innerHTML" not in js and "textContent" in js


# --- the room ----------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_two_members_exchange_messages(base_url, db_settings, member):
    alice, bob = await member("alice"), await member("bob")
    a, _, presence = await joined(base_url, alice.cookies)
    assert presence == {"type": "presence", "users": ["alice"]}
    b, _, presence = await joined(base_url, bob.cookies)
    assert presence == {"type": "presence", "users": ["alice", "bob"]}
    join = await frame(a)
    assert join["type"] == "join" and join["user"] == "bob" and ISO.match(join["at"])
    assert set(join) == {"type", "user", "at"}

    a.write_message(json.dumps({"body": "  hello bob  "}))
    for ws in (a, b):  # everyone, the sender included
        f = await frame(ws)
        assert set(f) == {"type", "user", "body", "at"}
        assert (f["type"], f["user"], f["body"]) == ("message", "alice", "hello bob")
        assert ISO.match(f["at"])
    b.write_message(json.dumps({"body": "<b>hi</b> ünïcödé 🎉"}))
    assert (await frame(a))["body"] == "<b>hi</b> ünïcödé 🎉"
    rows = query(db_settings, "SELECT body FROM chat_messages ORDER BY id")
    assert [r["body"] for r in rows] == ["hello bob", "<b>hi</b> ünïcödé 🎉"]

    b.close()
    leave = await until(a, "leave")
    assert leave["user"] == "bob" and ISO.match(leave["at"])
    a.close()


@pytest.mark.gen_test(timeout=30)
async def test_history_is_the_last_50_oldest_first(base_url, app, member):
    alice = await member("alice")
    user = await app.models.users.by_username("alice")
    for i in range(55):
        await app.models.room.messages.add(user["id"], "alice", "message %d" % i)
    ws, history, _ = await joined(base_url, alice.cookies)
    items = history["items"]
    assert [m["body"] for m in items] == ["message %d" % i for i in range(5, 55)]
    assert all(m["type"] == "message" and m["user"] == "alice" and ISO.match(m["at"]) for m in items)
    ws.close()


@pytest.mark.gen_test
async def test_join_and_leave_only_for_the_first_and_last_tab(base_url, member):
    alice, bob = await member("alice"), await member("bob")
    a, _, _ = await joined(base_url, alice.cookies)
    b1, _, _ = await joined(base_url, bob.cookies)
    assert (await frame(a))["type"] == "join"
    b2, _, presence = await joined(base_url, bob.cookies)  # a second tab: no second join
    assert presence["users"] == ["alice", "bob"]  # each name once
    await nothing_more(a)
    b1.close()  # one tab of two: no leave
    await nothing_more(a, 0.5)
    b2.close()
    assert (await until(a, "leave"))["user"] == "bob"
    a.close()


# --- the handshake -----------------------------------------------------------------------


@pytest.mark.gen_test
async def test_no_session_or_a_tampered_cookie_is_refused_with_403(base_url, client):
    with pytest.raises(HTTPClientError) as e:
        await connect(base_url)
    assert e.value.code == 403
    await client.register("alice")
    tampered = dict(client.cookies)
    value = tampered["session"]
    tampered["session"] = value[:-3] + ("aaa" if not value.endswith("aaa") else "bbb")
    with pytest.raises(HTTPClientError) as e:
        await connect(base_url, tampered)
    assert e.value.code == 403
    await client.logout()  # a signed cookie whose session is gone
    with pytest.raises(HTTPClientError) as e:
        await connect(base_url, {"session": value})
    assert e.value.code == 403


@pytest.mark.gen_test
async def test_a_foreign_origin_is_refused_with_403(base_url, client):
    await client.register("alice")
    with pytest.raises(HTTPClientError) as e:
        await connect(base_url, client.cookies, origin="http://evil.example")
    assert e.value.code == 403
    host = base_url.split("://", 1)[1]
    ws, _, _ = await joined(base_url, client.cookies, origin="http://" + host)  # same origin
    ws.close()


@pytest.fixture
def app_settings():
    return {
        "chat_trusted_origins": ["https://app.example.org"],
        "websocket_ping_interval": 0.5,  # so the dead-peer test takes a second
        "websocket_ping_timeout": 0.5,
    }


@pytest.fixture
def room_started(app, io_loop):
    """The room's bus and pinger, started as server.py starts them."""
    io_loop.run_sync(app.models.room.start)
    yield app.models.room
    io_loop.run_sync(app.models.room.stop)


@pytest.mark.gen_test
async def test_a_trusted_origin_from_the_option_is_accepted(base_url, client):
    await client.register("alice")
    ws, _, _ = await joined(base_url, client.cookies, origin="https://app.example.org")
    ws.close()
    with pytest.raises(HTTPClientError) as e:
        await connect(base_url, client.cookies, origin="https://app.example.org.evil.example")
    assert e.value.code == 403


# --- frames ------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_an_oversize_frame_closes_with_1009_and_the_server_goes_on(base_url, client):
    await client.register("alice")
    ws, _, _ = await joined(base_url, client.cookies)
    ws.write_message(json.dumps({"body": "x" * (64 * 1024)}))
    assert await frame(ws) is None
    assert ws.close_code == 1009
    assert (await client.get("/healthz")).code == 200
    again, _, _ = await joined(base_url, client.cookies)
    again.write_message(json.dumps({"body": "still here"}))
    assert (await until(again, "message"))["body"] == "still here"
    again.close()


BAD_FRAMES = [
    ("", "JSON"),
    ("not json", "JSON"),
    ("[]", "body"),
    ("null", "body"),
    ('"text"', "body"),
    ('{"body": 1}', "body"),
    ('{"text": "hi"}', "body"),
    ('{"body": "hi", "user": "mallory"}', "body"),
    ('{"body": ""}', "empty"),
    ('{"body": "   "}', "empty"),
    (json.dumps({"body": "x" * 2001}), "2000"),
    ('{"body": "\\ud800"}', "not valid"),
    (b"\x00\x01binary", "text frames"),
    ("[" * 5000 + "]" * 5000, "JSON"),  # json.loads raises RecursionError, not ValueError
]


@pytest.mark.gen_test
async def test_bad_frames_get_an_error_frame(base_url, client, db_settings):
    await client.register("alice")
    ws, _, _ = await joined(base_url, client.cookies)
    for i, (raw, why) in enumerate(BAD_FRAMES):
        if i and i % 8 == 0:
            await asyncio.sleep(1.6)  # a timer: the rate limit's tokens refill with time
        ws.write_message(raw, binary=isinstance(raw, bytes))
        f = await frame(ws)
        assert f["type"] == "error" and why in f["message"], (raw, f)
        assert set(f) == {"type", "message"}
    ws.write_message(json.dumps({"body": "x" * 2000}))  # the longest allowed
    assert (await frame(ws))["type"] == "message"
    assert len(query(db_settings, "SELECT id FROM chat_messages")) == 1
    ws.close()


@pytest.mark.gen_test
async def test_more_than_5_a_second_gets_an_error_frame(base_url, client):
    await client.register("alice")
    ws, _, _ = await joined(base_url, client.cookies)
    for i in range(14):
        ws.write_message(json.dumps({"body": "m%d" % i}))
    frames = [await frame(ws) for _ in range(14)]
    sent = [f["body"] for f in frames if f["type"] == "message"]
    errors = [f for f in frames if f["type"] == "error"]
    assert 10 <= len(sent) <= 11, frames  # the burst (and a token refilled meanwhile)
    assert errors and all("at most 5 a second" in f["message"] for f in errors)
    await asyncio.sleep(0.5)  # the behaviour under test: half a second refills 2 or more tokens
    ws.write_message(json.dumps({"body": "later"}))
    assert (await frame(ws))["body"] == "later"
    ws.close()


# --- revoked sessions ------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_logout_closes_the_members_sockets(base_url, member):
    alice, bob = await member("alice"), await member("bob")
    a1, _, _ = await joined(base_url, alice.cookies)
    a2, _, _ = await joined(base_url, alice.cookies)
    b, _, _ = await joined(base_url, bob.cookies)
    await alice.logout()
    for ws in (a1, a2):
        while await frame(ws) is not None:
            pass
        assert ws.close_code == SIGNED_OUT
    b.write_message(json.dumps({"body": "bob stays"}))
    assert (await until(b, "message"))["body"] == "bob stays"
    b.close()


@pytest.mark.gen_test
async def test_password_change_closes_the_other_sessions_sockets(base_url, make_client, member):
    here = await member("alice")
    there = make_client()
    assert (await there.login("alice")).code == 302
    old, _, _ = await joined(base_url, there.cookies)
    r = await here.post(
        "/account/password",
        {"current": "correct horse", "password": "new password!", "confirm": "new password!"},
    )
    assert r.code == 302, r.body
    while await frame(old) is not None:
        pass
    assert old.close_code == SIGNED_OUT
    mine, _, _ = await joined(base_url, here.cookies)  # the new session chats on
    mine.close()


@pytest.mark.gen_test
async def test_log_out_everywhere_closes_every_socket(base_url, client):
    await client.register("alice")
    ws, _, _ = await joined(base_url, client.cookies)
    await client.post("/account/sessions/revoke", {"all": "1"})
    while await frame(ws) is not None:
        pass
    assert ws.close_code == SIGNED_OUT


# --- slow readers ----------------------------------------------------------------------------


def raw_handshake(port, cookies):
    """A client that upgrades and then never reads (a tiny receive buffer fills at once). A plain
    socket: an IOStream would keep reading into its own buffer. Run it off the loop."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    s.sendall(
        (
            "GET /chat/ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nCookie: %s\r\n\r\n"
            % (port, cookie_header(cookies))
        ).encode()
    )
    assert s.recv(12) == b"HTTP/1.1 101"
    return s


@pytest.mark.gen_test(timeout=20)
async def test_a_slow_reader_is_disconnected_not_buffered(base_url, app, http_port, member):
    slow_member, fast_member = await member("slow"), await member("fast")
    fast, _, _ = await joined(base_url, fast_member.cookies)
    slow = await asyncio.get_running_loop().run_in_executor(
        None, raw_handshake, http_port, slow_member.cookies
    )
    await until(fast, "join", user="slow")
    (slow_sock,) = [s for s in app.models.room.sockets if s.user["username"] == "slow"]
    body = "y" * 500_000
    seen = []
    for i in range(24):  # 12 MB: past the kernel's buffers (up to 4 MB) and the 1 MB bound
        app.models.room.publish({"type": "message", "user": "fast", "body": body, "at": "x%d" % i})
        while True:  # the fast reader gets everything
            f = await frame(fast)
            seen.append(f)
            if f["type"] == "message" and f["at"] == "x%d" % i:
                break
        stream = slow_sock.ws_connection and slow_sock.ws_connection.stream
        assert stream is None or unsent_bytes(stream) <= MAX_UNSENT + len(body) + 20
    assert slow_sock not in app.models.room.sockets
    assert [f["user"] for f in seen if f["type"] == "leave"] == ["slow"]
    slow.close()
    fast.close()


@pytest.mark.gen_test(timeout=20)
async def test_a_dead_peer_is_dropped_and_a_live_one_kept(base_url, room_started, http_port, member):
    dead_member, live_member = await member("dead"), await member("live")
    live, _, _ = await joined(base_url, live_member.cookies)  # Tornado's client answers pings
    dead = await asyncio.get_running_loop().run_in_executor(
        None, raw_handshake, http_port, dead_member.cookies
    )
    assert (await until(live, "join"))["user"] == "dead"
    assert (await until(live, "leave", timeout=4))["user"] == "dead"  # no pong: dropped
    assert [s.user["username"] for s in room_started.sockets] == ["live"]
    pings = []
    live.on_ping = pings.append  # Tornado's client answers each one
    assert await eventually(lambda: len(pings) >= 2, 3), pings  # two more pings...
    assert [s.user["username"] for s in room_started.sockets] == ["live"]  # ...and still there
    dead.close()


# --- server.py processes -----------------------------------------------------------------------

DB = sp.database_name("chat")


@pytest.fixture(scope="module")
def chat_db():
    sp.drop_databases(DB)
    yield DB
    sp.drop_databases(DB)


def register(port, name):
    browser = sp.Browser(port)
    assert browser.register(name).status == 302
    return browser.cookies


@pytest.mark.gen_test(timeout=30)
async def test_sigterm_closes_sockets_with_1001(chat_db):
    with sp.running_server(chat_db) as (server, port):
        base = "http://127.0.0.1:%d" % port
        cookies = register(port, "sigterm_user")
        ws, _, _ = await joined(base, cookies)
        server.send(signal.SIGTERM)
        assert await frame(ws, 10) is None
        assert ws.close_code == 1001
        assert await asyncio.get_running_loop().run_in_executor(None, server.wait, 15) == 0


@pytest.mark.gen_test(timeout=40)
async def test_two_processes_on_one_redis_share_messages_and_presence(chat_db):
    extra = ["--redis_url=" + REDIS_URL, "--chat_redis_prefix=" + unique_prefix()]
    with (
        sp.running_server(chat_db, extra=extra) as (_, port_a),
        sp.running_server(chat_db, extra=extra) as (_, port_b),
    ):
        base_a, base_b = "http://127.0.0.1:%d" % port_a, "http://127.0.0.1:%d" % port_b
        ann, ben = register(port_a, "ann_two"), register(port_b, "ben_two")
        a, _, presence = await joined(base_a, ann)
        assert presence["users"] == ["ann_two"]
        b, _, presence = await joined(base_b, ben)
        assert presence["users"] == ["ann_two", "ben_two"]  # one list across the processes
        assert (await until(a, "join"))["user"] == "ben_two"
        a.write_message(json.dumps({"body": "from A"}))
        assert (await until(b, "message"))["body"] == "from A"
        b.write_message(json.dumps({"body": "from B"}))
        assert (await until(a, "message", body="from B"))["user"] == "ben_two"
        await until(b, "message", body="from B")  # the sender's own copy
        # Ann's second tab on B: no join; her name once in the list B shows.
        a2, history, presence = await joined(base_b, ann)
        assert presence["users"] == ["ann_two", "ben_two"]
        assert [m["body"] for m in history["items"]] == ["from A", "from B"]
        await nothing_more(b)
        a.close()  # Ann still has a tab on B: no leave
        await nothing_more(b, 0.5)
        a2.close()
        assert (await until(b, "leave"))["user"] == "ann_two"
        b.close()


async def start_redis(port):
    """redis-server on `port`, once it listens (the loop runs meanwhile: open sockets stay served)."""
    proc = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1"]
        + ["--save", "", "--appendonly", "no", "--daemonize", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert await eventually(lambda: not sp.port_is_free(port), 10), "redis-server did not start"
    return proc


async def stop_redis(proc):
    proc.terminate()
    if not await eventually(lambda: proc.poll() is not None, 5):
        proc.kill()
        proc.wait(5)


async def crosses(sender, receiver, tag, timeout=15):
    """Send until a message from `sender` reaches `receiver` (the bus reconnects with backoff)."""
    deadline = time.monotonic() + timeout
    i = 0
    while time.monotonic() < deadline:
        body = "%s %d" % (tag, i)
        sender.write_message(json.dumps({"body": body}))
        with contextlib.suppress(asyncio.TimeoutError):
            while True:
                f = await frame(receiver, 0.5)
                if f["type"] == "message" and f["body"] == body:
                    return True
        i += 1
    return False


@pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed")
@pytest.mark.gen_test(timeout=60)
async def test_redis_stopped_and_started_again(chat_db):
    redis_port = sp.free_port()
    extra = ["--redis_url=redis://127.0.0.1:%d/0" % redis_port, "--chat_redis_prefix=" + unique_prefix()]
    redis = await start_redis(redis_port)
    try:
        with (
            sp.running_server(chat_db, extra=extra) as (server_a, port_a),
            sp.running_server(chat_db, extra=extra) as (server_b, port_b),
        ):
            base_a, base_b = "http://127.0.0.1:%d" % port_a, "http://127.0.0.1:%d" % port_b
            cat, dan = register(port_a, "cat_redis"), register(port_b, "dan_redis")
            a, _, _ = await joined(base_a, cat)
            a_local, _, _ = await joined(base_a, dan)  # Dan also has a tab on A
            b, _, _ = await joined(base_b, dan)
            assert await crosses(a, b, "before")

            await stop_redis(redis)
            assert await eventually(lambda: all("lost Redis" in s.stderr for s in (server_a, server_b)), 10)
            a.write_message(json.dumps({"body": "while redis is away"}))  # local chat goes on
            assert (await until(a_local, "message", body="while redis is away"))["user"] == "cat_redis"
            await asyncio.sleep(1.0)  # a timer: Redis stays away while the bus retries (logged once)

            redis = await start_redis(redis_port)
            assert await crosses(a, b, "after"), "messages did not cross processes again"
            for server in (server_a, server_b):
                assert server.stderr.count("lost Redis") == 1, server.stderr  # logged once
                assert "is back" in server.stderr
            for ws in (a, a_local, b):
                ws.close()
    finally:
        await stop_redis(redis)


def test_several_processes_without_redis_warn_once(chat_db):
    with sp.running_server(chat_db, extra=["--processes=2"]) as (server, _):
        assert server.stderr.count("chat uses an in-process bus") == 1, server.stderr
    redis = ["--redis_url=" + REDIS_URL, "--chat_redis_prefix=" + unique_prefix()]
    with sp.running_server(chat_db, extra=["--processes=2"] + redis) as (server, _):
        assert "in-process bus" not in server.stderr
