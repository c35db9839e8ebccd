"""The graceful stop of one serving process (tests/test_server.py, tests/test_resilience.py:
SIGTERM with requests, slow bodies, keep-alive clients and WebSockets in flight)."""

import asyncio
import logging
import time

from serving.tornado_internals import stop_keep_alive

log = logging.getLogger("storyhouse")


async def quiet(app, deadline):
    """Until no request has been in flight for 0.2 s (a request just arriving has had its
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


async def close_websockets(app, wait=2.0):
    """Tell the other processes who leaves, close every socket with 1001 (going away), and give
    the clients a moment to answer the close handshake."""
    await app.models.room.close()
    for ws in list(app.websockets):
        ws.close(1001, "server shutting down")
    deadline = time.monotonic() + wait
    while app.websockets and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def drain(app, server, timeout, jobs=()):
    """/healthz says 503, no new connections, in-flight requests finish (at most `timeout`),
    WebSockets close with 1001, keep-alive connections close after their last answer, the models
    close. Never raises: a forking parent would restart a child that failed while stopping."""
    try:
        app.draining = True
        for job in jobs:
            job.stop()
        server.stop()
        stop_keep_alive(server)
        deadline = time.monotonic() + timeout
        await quiet(app, deadline)
        await close_websockets(app)
        await app.models.stop()
        # Keep-alive connections stayed open meanwhile: answer what came in on them, then close.
        await quiet(app, max(deadline, time.monotonic() + 1))
        await server.close_all_connections()
        app.models.close()
    except Exception:
        log.exception("error while stopping")
