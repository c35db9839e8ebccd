"""The HTTP server: a small body limit, at most `max_connections` open, and an accept loop that
pauses instead of spinning when descriptors run out (tests/test_server.py: the connection cap,
the open-files limit, EMFILE)."""

import collections
import errno
import logging
import os
import resource
import time

import tornado.ioloop
from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream

import config

log = logging.getLogger("storyhouse")

FD_RESERVE = 100  # descriptors kept for the database pool, Redis, uploads and logs
HTTP_RESERVE_SHARE = 0.1  # connections WebSockets may never take: plain HTTP (/healthz) gets them
OUT_OF_FDS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def raise_open_files_limit():
    """Raise the soft open-files limit to the hard one (often 1024 → 500,000+): every connection
    holds a descriptor. Returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    except (ValueError, OSError):
        return soft


class GuardedHTTPServer(HTTPServer):
    """Tornado's HTTPServer, kept steady when descriptors run short.

    - At most `max_connections` open connections, HTTP ones plus WebSockets (which leave the HTTP
      server when they upgrade, and are counted in `application.websockets`): past it, a new
      connection is closed at once.
    - accept() failing with EMFILE leaves the listening socket readable, so Tornado's accept
      handler (tornado.netutil.add_accept_handler) is called again at once, forever, with a
      traceback each time. This server runs its own accept loop on the public pieces (the
      socket, IOStream, handle_stream) and pauses for a moment instead, with one log line.
    """

    PAUSE_SECONDS = 0.5

    def initialize(self, *args, max_connections=10000, **kwargs):
        super().initialize(*args, **kwargs)
        self.max_connections = max_connections
        self.http_connections = 0  # handle_stream adds one, on_close takes it away
        self._accepting = []  # one remover per listening socket
        self._last_warning = {}

    def warn_now_and_then(self, kind, message, *args):
        now = time.monotonic()
        if now - self._last_warning.get(kind, -3600) >= 60:
            self._last_warning[kind] = now
            log.warning(message, *args)

    def open_connections(self):
        return self.http_connections + len(getattr(self.request_callback, "websockets", ()))

    def handle_stream(self, stream, address):
        if self.open_connections() >= self.max_connections:
            self.warn_now_and_then(
                "full", "%d connections open (--max_connections): closing new ones", self.max_connections
            )
            stream.close()
            return
        self.http_connections += 1
        super().handle_stream(stream, address)

    def on_close(self, server_conn):
        self.http_connections -= 1
        super().on_close(server_conn)

    def add_sockets(self, sockets):
        for sock in sockets:
            self._accepting.append(self._accept_on(sock))

    def stop(self):
        super().stop()
        while self._accepting:
            self._accepting.pop()()

    def _accept_on(self, sock):
        """Accept connections on `sock` until the returned function is called (it closes sock)."""
        loop = tornado.ioloop.IOLoop.current()
        state = {"listening": True, "removed": False}

        def resume():
            if not state["removed"]:
                state["listening"] = True
                loop.add_handler(sock, accept, loop.READ)

        def accept(fd, events):
            for _ in range(128):  # as Tornado does: a bounded batch, then other work gets a turn
                if state["removed"]:
                    return
                try:
                    connection, address = sock.accept()
                except BlockingIOError:
                    return
                except ConnectionAbortedError:
                    continue
                except OSError as e:
                    if e.errno not in OUT_OF_FDS:
                        raise
                    self.warn_now_and_then(
                        "fds",
                        "cannot accept connections (%s): pausing; raise the open-files limit"
                        " or lower --max_connections",
                        os.strerror(e.errno),
                    )
                    state["listening"] = False
                    loop.remove_handler(sock)
                    loop.call_later(self.PAUSE_SECONDS, resume)
                    return
                stream = IOStream(
                    connection, max_buffer_size=self.max_buffer_size, read_chunk_size=self.read_chunk_size
                )
                self.handle_stream(stream, address)

        def remove():
            state["removed"] = True
            if state["listening"]:
                loop.remove_handler(sock)
            sock.close()

        loop.add_handler(sock, accept, loop.READ)
        return remove


class SocketBudget:
    """The open WebSockets of this process (`application.websockets`), counted by member and by
    address against their caps, and against `limit`: what the HTTP server leaves after keeping a
    reserve for plain HTTP, so sockets never starve /healthz (tests/test_socket_limits.py).

    A socket takes its place at the handshake, before the upgrade (so a burst of handshakes cannot
    all pass the check), and gives it back when it closes or its handshake fails."""

    def __init__(self, per_member=16, per_ip=100):
        self.per_member = per_member
        self.per_ip = per_ip
        self.limit = None  # set by make_http_server
        self.sockets = set()
        self.by_member = collections.Counter()
        self.by_ip = collections.Counter()

    def __len__(self):
        return len(self.sockets)

    def __iter__(self):
        return iter(list(self.sockets))

    def take(self, sock, member, ip):
        """Count `sock` in, or say why not: (status, message)."""
        if self.limit is not None and len(self.sockets) >= self.limit:
            return 503, "The server is full right now. Try again in a moment."
        if self.by_member[member] >= self.per_member:
            return 429, "Too many open connections for your account: close a tab or two."
        if self.by_ip[ip] >= self.per_ip:
            return 429, "Too many open connections from your address."
        self.sockets.add(sock)
        self.by_member[member] += 1
        self.by_ip[ip] += 1
        sock.budget_keys = (member, ip)
        return None

    def give_back(self, sock):
        if sock not in self.sockets:
            return
        self.sockets.discard(sock)
        member, ip = sock.budget_keys
        for counter, key in ((self.by_member, member), (self.by_ip, ip)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]


def make_http_server(app, xheaders=False, max_connections=None):
    """The HTTP server with a small body limit (the upload route raises its own in prepare), and
    the WebSockets' share of its connections."""
    if not max_connections:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        max_connections = max(16, (1 << 20 if soft == resource.RLIM_INFINITY else soft) - FD_RESERVE)
    if isinstance(getattr(app, "websockets", None), SocketBudget):
        app.websockets.limit = max_connections - max(8, int(max_connections * HTTP_RESERVE_SHARE))
    return GuardedHTTPServer(
        app,
        xheaders=xheaders,
        max_body_size=config.MAX_BODY_BYTES,
        idle_connection_timeout=60,
        body_timeout=60,
        max_connections=max_connections,
    )
