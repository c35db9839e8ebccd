"""Entry point: options → database ready → cookie secret → fork if asked → Application → listen → run.

python server.py --port=8888 [--processes=N] [--config=FILE]   (--help lists every option)
"""

import asyncio
import ctypes
import errno
import logging
import os
import signal
import sys
import time

import pymysql
import tornado.netutil
import tornado.process
from tornado.httpserver import HTTPServer
from tornado.options import options

import config
from models import migrate

log = logging.getLogger("storyhouse")
PR_SET_PDEATHSIG = 1


def make_http_server(app, xheaders=False):
    """The HTTP server with a small body limit (the upload route raises its own in prepare)."""
    return HTTPServer(
        app,
        xheaders=xheaders,
        max_body_size=config.MAX_BODY_BYTES,
        idle_connection_timeout=60,
        body_timeout=60,
    )


def fail(sentence):
    print("storyhouse: " + sentence, file=sys.stderr)
    sys.exit(1)


def prepare_database():
    db = config.mysql_settings()
    try:
        applied = migrate.migrate(**db)
    except pymysql.err.OperationalError as e:
        fail(
            "cannot reach MySQL at %s:%s as %r (%s). Start MariaDB (scripts/setup does it) or set "
            "--mysql_host/--mysql_port/--mysql_user/--mysql_password."
            % (db["host"], db["port"], db["user"], e.args[-1] if e.args else e)
        )
    if applied:
        log.info("database %s: applied migrations %s", db["database"], applied)


def check_port_free():
    # reuse_port would let a second server bind beside a running one: probe without it first.
    try:
        probe = tornado.netutil.bind_sockets(options.port, options.address or None)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            fail("port %d is already in use: stop the other server or choose --port." % options.port)
        raise
    for sock in probe:
        sock.close()


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


def forward_signals_to_children():
    def forward(signum, frame):
        for pid in _children():
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)


def die_with_parent(parent_pid):
    """A child never outlives its parent."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        sys.exit(0)


async def serve(reuse_port):
    from application import Application  # imported after the fork: nothing loop-bound before it

    app = Application()
    server = make_http_server(app, xheaders=options.xheaders)
    sockets = tornado.netutil.bind_sockets(options.port, options.address or None, reuse_port=reuse_port)
    server.add_sockets(sockets)
    if app.settings["redis_url"] == "" and options.processes != 1:
        log.warning(
            "chat uses an in-process bus: with --processes=%d, set --redis_url so every "
            "process sees every message",
            options.processes,
        )
    log.info(
        "Storyhouse listening on http://%s:%d/ (pid %d)",
        options.address or "127.0.0.1",
        options.port,
        os.getpid(),
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()

    # Drain: /healthz says 503, no new connections, in-flight requests finish (bounded).
    app.draining = True
    server.stop()
    deadline = time.monotonic() + options.shutdown_timeout
    while app.in_flight and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    app.close_websockets()
    await server.close_all_connections()
    app.close()
    log.info("stopped (pid %d)", os.getpid())


def main():
    config.parse()
    if options.debug and options.processes != 1:
        fail("--debug reloads code in one process only: use it with --processes=1.")
    prepare_database()
    secret = config.load_cookie_secret()
    options.cookie_secret = secret  # every forked process shares it
    check_port_free()
    multi = options.processes != 1
    if multi:
        parent = os.getpid()
        forward_signals_to_children()
        tornado.process.fork_processes(options.processes)  # the parent waits in here, then exits
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        die_with_parent(parent)
    asyncio.run(serve(reuse_port=multi))


if __name__ == "__main__":
    main()
