"""WebSockets within their budget (serving/connections.py SocketBudget): per member and per address
caps, refused at the handshake with a 429, places given back when a socket closes; and a reserve
of the connections that sockets can never take, so /healthz answers whatever the sockets do."""

import asyncio
import uuid

import pytest
import tornado.websocket
from tornado.httpclient import HTTPClientError, HTTPRequest

from tests import serverproc as sp
from tests.helpers import eventually


@pytest.fixture
def app_settings():
    return {"max_sockets_per_member": 3, "max_sockets_per_ip": 5}


async def open_socket(base_url, cookies):
    headers = {"Cookie": "; ".join("%s=%s" % kv for kv in cookies.items())}
    ws = await tornado.websocket.websocket_connect(
        HTTPRequest(base_url.replace("http://", "ws://") + "/chat/ws", headers=headers)
    )
    for _ in range(2):  # history, presence: the room has it
        await asyncio.wait_for(ws.read_message(), 5)
    return ws


async def refused(base_url, cookies):
    with pytest.raises(HTTPClientError) as caught:
        await open_socket(base_url, cookies)
    return caught.value.code


@pytest.mark.gen_test(timeout=30)
async def test_a_member_holds_at_most_their_share_of_sockets(base_url, member, app):
    alice = await member("alice")
    sockets = [await open_socket(base_url, alice.cookies) for _ in range(3)]
    assert await refused(base_url, alice.cookies) == 429
    bob = await member("bob")
    sockets.append(await open_socket(base_url, bob.cookies))  # someone else still gets in
    sockets.pop(0).close()
    assert await eventually(lambda: app.websockets.by_member[1] < 3)  # once the server saw the close
    sockets.append(await open_socket(base_url, alice.cookies))
    for ws in sockets:
        ws.close()


@pytest.mark.gen_test(timeout=30)
async def test_one_address_holds_at_most_its_share(base_url, member):
    sockets = []
    for name in ("ann", "ben"):
        c = await member(name)
        sockets += [await open_socket(base_url, c.cookies) for _ in range(2)]
    cyd = await member("cyd")
    sockets.append(await open_socket(base_url, cyd.cookies))  # 5: the address's share
    assert await refused(base_url, cyd.cookies) == 429
    for ws in sockets:
        ws.close()


def test_sockets_never_take_the_connections_kept_for_http():
    """Issue 14 item 3: with --max_connections=50, sockets of one member used to take every slot
    (49 of them), and the server closed every other connection, /healthz included."""
    extra = ["--max_connections=50", "--max_sockets_per_member=100", "--max_sockets_per_ip=100"]
    with sp.running_server(sp.database_name("socketcap"), extra=extra) as (server, port):
        browser = sp.Browser(port)
        assert browser.register("hog_%s" % uuid.uuid4().hex[:8]).status == 302
        base = "http://127.0.0.1:%d" % port

        async def hog():
            opened, codes = [], []
            try:
                for _ in range(49):
                    try:
                        opened.append(await open_socket(base, browser.cookies))
                    except HTTPClientError as e:
                        codes.append(e.code)
                # 50 connections, 8 of them kept for HTTP: 42 sockets at most, the rest refused.
                assert len(opened) == 42 and set(codes) == {503}, (len(opened), codes)
                for _ in range(20):  # a blocking client, on this test's own loop: the server is a process
                    assert sp.request(port, "GET", "/healthz").status == 200
            finally:
                for ws in opened:
                    ws.close()
                for ws in opened:  # until the server has answered the close
                    await asyncio.wait_for(ws.read_message(), 5)

        asyncio.run(hog())
