"""Entry point: options → database ready → cookie secret → fork if asked → Application → listen → run.

python server.py --port=8888 [--processes=N] [--config=FILE]   (--help lists every option)
"""

import asyncio
import ctypes
import errno
import logging
import os
import resource
import signal
import socket
import sys
import time

import tornado.ioloop
import tornado.netutil
import tornado.options
import tornado.process
from tornado.httpserver import HTTPServer
from tornado.options import options

import config
from models import cache, migrate
from models.db import CannotConnect

log = logging.getLogger("storyhouse")
PR_SET_PDEATHSIG = 1


FD_RESERVE = 100  # descriptors kept for the database pool, Redis, uploads and logs
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

    - At most `max_connections` open connections (HTTP ones plus WebSockets, which leave the
      HTTP server's count when they upgrade): past it, a new connection is closed at once.
    - accept() failing with EMFILE (descriptors taken by something else) leaves the listening
      socket readable, so Tornado's accept handler would be called again at once, forever, with
      a traceback each time. Here accepting pauses for a moment instead, with one log line.
    """

    PAUSE_SECONDS = 0.5

    def initialize(self, *args, max_connections=10000, **kwargs):
        super().initialize(*args, **kwargs)
        self.max_connections = max_connections
        self._last_warning = {}

    def warn_now_and_then(self, kind, message, *args):
        now = time.monotonic()
        if now - self._last_warning.get(kind, -3600) >= 60:
            self._last_warning[kind] = now
            log.warning(message, *args)

    def open_connections(self):
        return len(self._connections) + len(getattr(self.request_callback, "websockets", ()))

    def handle_stream(self, stream, address):
        if self.open_connections() >= self.max_connections:
            self.warn_now_and_then(
                "full", "%d connections open (--max_connections): closing new ones", self.max_connections
            )
            stream.close()
            return
        super().handle_stream(stream, address)

    def add_sockets(self, sockets):
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = self._accept_on(sock)

    def _accept_on(self, sock):
        """tornado.netutil.add_accept_handler, pausing on EMFILE. Returns the remover stop() calls."""
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
                self._handle_connection(connection, address)

        def remove():
            state["removed"] = True
            if state["listening"]:
                loop.remove_handler(sock)

        loop.add_handler(sock, accept, loop.READ)
        return remove


def make_http_server(app, xheaders=False, max_connections=None):
    """The HTTP server with a small body limit (the upload route raises its own in prepare)."""
    if not max_connections:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        max_connections = max(16, (1 << 20 if soft == resource.RLIM_INFINITY else soft) - FD_RESERVE)
    return GuardedHTTPServer(
        app,
        xheaders=xheaders,
        max_body_size=config.MAX_BODY_BYTES,
        idle_connection_timeout=60,
        body_timeout=60,
        max_connections=max_connections,
    )


def fail(sentence):
    print("storyhouse: " + sentence, file=sys.stderr)
    sys.exit(1)


def prepare_database():
    db = config.mysql_settings()
    try:
        applied = migrate.migrate(**db)
    except CannotConnect as e:
        where = "MySQL at %s:%s" % (e.host, e.port)
        if e.denied:
            fail(
                "%s refused the user %r (%s). Run scripts/setup, or set --mysql_user/--mysql_password."
                % (where, e.user, e.reason)
            )
        fail(
            "cannot reach %s (%s). Start MariaDB (scripts/setup does it) or set --mysql_host/--mysql_port."
            % (where, e.reason)
        )
    except migrate.MigrationLocked as e:
        fail(str(e))
    if applied:
        log.info("database %s: applied migrations %s", db["database"], applied)


def claim_port():
    """Refuse a port that is in use, with one sentence, instead of sharing it.

    The children bind with SO_REUSEPORT, which would let a second server bind beside a running one.
    So: an abstract Unix socket named after the address and port works as a lock between servers
    starting at the same moment (the kernel drops it when the last holder exits), and a probe
    without SO_REUSEPORT catches any other program on the port."""
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lock.bind("\0storyhouse:%s:%d" % (options.address or "*", options.port))
        for sock in tornado.netutil.bind_sockets(options.port, options.address or None):
            sock.close()
    except OSError as e:
        lock.close()
        if e.errno == errno.EADDRINUSE:
            fail("port %d is already in use: stop the other server or choose --port." % options.port)
        raise
    return lock


def _children():
    """PIDs of this process's children (read from /proc: fork_processes keeps its own list)."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        yield int(entry)
            except (OSError, IndexError, ValueError):
                continue


class Signals:
    """One SIGTERM/SIGINT handler for the whole life of every process, installed first thing.

    In the forking parent it forwards the signal to the children. In a serving process it asks
    serve() to drain, once: a second copy (Ctrl-C reaches the whole process group, then the parent
    forwards it) is ignored, so no child dies by a signal and fork_processes never restarts one.
    Before anything is serving there is nothing to drain: exit 0 quietly.
    """

    forking_parent = None  # pid of the parent once it forks
    on_stop = None  # set by serve()
    stopping = False

    @classmethod
    def install(cls):
        signal.signal(signal.SIGTERM, cls.handle)
        signal.signal(signal.SIGINT, cls.handle)

    @classmethod
    def handle(cls, signum, frame):
        if cls.forking_parent == os.getpid():
            for pid in _children():
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass
        elif cls.on_stop is None:
            raise SystemExit(0)
        elif not cls.stopping:
            cls.stopping = True
            cls.on_stop()


def die_with_parent(parent_pid):
    """A child never outlives its parent."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        sys.exit(0)


def wake_loop_on_signals(loop):
    """Python runs a signal handler on the main thread when that thread next runs, and a signal
    may land on an executor thread while the loop sleeps in epoll: let the signal wake the loop.
    (loop.add_signal_handler would do this too, but puts SIG_DFL back when the loop closes.)"""
    rsock, wsock = socket.socketpair()
    rsock.setblocking(False)
    wsock.setblocking(False)
    signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
    loop.add_reader(rsock.fileno(), rsock.recv, 4096)
    return rsock, wsock


async def quiet(app, deadline):
    """Wait until no request has been in flight for 0.2 s (a request just arriving has had its
    chance), or until the deadline."""
    quiet_since = None
    while time.monotonic() < deadline:
        if app.in_flight:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= 0.2:
            return
        await asyncio.sleep(0.02)


async def serve(reuse_port):
    from application import Application  # imported after the fork: nothing loop-bound before it

    app = Application()
    server = make_http_server(app, xheaders=options.xheaders, max_connections=options.max_connections)
    sockets = tornado.netutil.bind_sockets(options.port, options.address or None, reuse_port=reuse_port)
    server.add_sockets(sockets)
    await app.chat.start()  # the chat's bus (Redis reconnects in the background) and pinger
    log.info(
        "Storyhouse listening on http://%s:%d/ (pid %d)",
        options.address or "0.0.0.0",
        options.port,
        os.getpid(),
    )

    housekeeping = tornado.ioloop.PeriodicCallback(app.housekeeping, 3600 * 1000, jitter=0.1)
    housekeeping.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    wake = wake_loop_on_signals(loop)
    Signals.on_stop = lambda: loop.call_soon_threadsafe(stop.set)
    await stop.wait()

    # Drain: /healthz says 503, no new connections, in-flight requests finish (bounded).
    try:
        app.draining = True
        housekeeping.stop()
        server.stop()
        # Every answer from now on says "Connection: close" and closes its connection, so a
        # keep-alive client sends its next request elsewhere instead of into a closing socket.
        server.conn_params.no_keep_alive = True
        deadline = time.monotonic() + options.shutdown_timeout
        await quiet(app, deadline)
        await app.close_websockets()
        sockets_deadline = time.monotonic() + 2  # let the clients answer the close (1001) handshake
        while app.websockets and time.monotonic() < sockets_deadline:
            await asyncio.sleep(0.05)
        await app.chat.stop()
        # Keep-alive connections stayed open meanwhile: answer what came in on them, then close.
        await quiet(app, max(deadline, time.monotonic() + 1))
        await server.close_all_connections()
        app.close()
    except Exception:
        # Still exit 0: a forking parent would restart a child that failed while stopping.
        log.exception("error while stopping")
    signal.set_wakeup_fd(-1)
    loop.remove_reader(wake[0].fileno())
    for sock in wake:
        sock.close()
    log.info("stopped (pid %d)", os.getpid())


def main():
    Signals.install()
    try:
        config.parse()
    except (tornado.options.Error, ValueError, OSError, SyntaxError, NameError) as e:
        fail("cannot read the options: %s" % e)
    if options.debug and options.processes != 1:
        fail("--debug reloads code in one process only: use it with --processes=1.")
    raise_open_files_limit()
    prepare_database()
    secret = config.load_cookie_secret()
    options.cookie_secret = secret  # every forked process shares it
    port_lock = claim_port()  # held (and inherited by the children) for the server's life
    if not options.redis_url and options.processes != 1:  # once, before the fork
        log.warning(
            "chat uses an in-process bus: with --processes=%d, set --redis_url so every "
            "process sees every message",
            options.processes,
        )
    multi = options.processes != 1
    if multi:
        Signals.forking_parent = parent = os.getpid()
        # A signal must not land in a new child while Python runs its after-fork hooks (an
        # exception raised there is dropped, and that child would serve on): block the signals
        # around each fork; the child takes a pending one once fork_processes has returned.
        stop_signals = {signal.SIGTERM, signal.SIGINT}
        os.register_at_fork(
            before=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals),
            after_in_parent=lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals),
        )
        cache.share_across_forks()  # one version counter for every child's page cache
        tornado.process.fork_processes(options.processes)  # the parent waits in here, then exits
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
        die_with_parent(parent)
    asyncio.run(serve(reuse_port=multi))
    # Done: a late copy of the signal must not kill us now. Python puts SIG_DFL back for its own
    # handlers while it shuts down, and the parent would restart a child killed by a signal.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    port_lock.close()


if __name__ == "__main__":
    main()
