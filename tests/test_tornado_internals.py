"""serving/tornado_internals.py against the installed Tornado: each place Storyhouse reaches under
the public API still works as it assumes. A failure here means a Tornado upgrade moved one: fix
that helper (and only it) before anything else."""

import socket

import pytest
import tornado.http1connection
import tornado.httpserver
import tornado.httputil
import tornado.iostream
import tornado.web
import tornado.websocket
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from models.frames import encode
from serving import tornado_internals as internals


def test_the_stream_request_body_marker_is_where_we_read_it():
    @tornado.web.stream_request_body
    class Streamed(tornado.web.RequestHandler):
        pass

    class Plain(tornado.web.RequestHandler):
        pass

    assert internals.streams_body(Streamed) is True
    assert not internals.streams_body(Plain)


def test_parsed_cookies_are_cached_where_we_drop_them():
    request = tornado.httputil.HTTPServerRequest(
        start_line=tornado.httputil.RequestStartLine("GET", "/", "HTTP/1.1"),
        headers=tornado.httputil.HTTPHeaders({"Cookie": "a=1", "Host": "127.0.0.1"}),
    )
    assert request.cookies["a"].value == "1"
    assert "_cookies" in request.__dict__  # Tornado caches the parse here
    internals.forget_parsed_cookies(request)
    assert "_cookies" not in request.__dict__
    assert request.cookies["a"].value == "1"  # and parses again when asked


@pytest.mark.gen_test
async def test_unsent_bytes_reads_the_write_buffer():
    a, b = socket.socketpair()
    stream = tornado.iostream.IOStream(a)
    try:
        assert internals.unsent_bytes(stream) == 0
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stream.write(b"x" * 4_000_000)  # more than the kernel takes: the rest is queued
        assert 0 < internals.unsent_bytes(stream) <= 4_000_000
        assert stream.writing()
    finally:
        stream.close()
        b.close()


class Echo(tornado.websocket.WebSocketHandler):
    def open(self):
        type(self).opened = self

    def on_message(self, message):
        pass


@pytest.fixture
def app():
    return tornado.web.Application([(r"/ws", Echo), (r"/", tornado.web.RequestHandler)])


@pytest.mark.gen_test
async def test_a_frame_built_once_is_what_write_message_sends(http_server, http_port):
    """models/frames.encode must produce exactly Tornado's own frame, for every length class, and
    websocket_stream must be the stream under the socket."""
    ws = await websocket_connect(HTTPRequest("ws://127.0.0.1:%d/ws" % http_port))
    try:
        handler = Echo.opened
        stream = internals.websocket_stream(handler)
        assert isinstance(stream, tornado.iostream.IOStream)
        for size in (3, 125, 126, 65535, 65536):
            event = {"type": "message", "body": "é" * size}
            frame, payload = encode(event)
            stream.write(frame)
            assert (await ws.read_message()).encode() == payload
            await handler.write_message(payload.decode())
            assert (await ws.read_message()).encode() == payload
        handler.close()
        assert internals.websocket_stream(handler) is None  # closing: nothing more is written
    finally:
        ws.close()


def test_the_connection_parameters_we_change_exist():
    params = tornado.http1connection.HTTP1ConnectionParameters()
    assert hasattr(params, "chunk_size") and hasattr(params, "no_keep_alive")
    server = tornado.httpserver.HTTPServer(tornado.web.Application())
    internals.stop_keep_alive(server)
    assert server.conn_params.no_keep_alive is True
