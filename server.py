"""Entry point: options → database ready → cookie secret → fork if asked → Application → listen → run.

python server.py --port=8888 [--processes=N] [--config=FILE]   (--help lists every option)
The process machinery lives in serving/ (one module per concern, each naming the test that pins it).
"""

import asyncio
import logging
import os
import sys

import tornado.netutil
import tornado.options
import tornado.process
from tornado.options import options

import config
from models import cache, migrate
from models.db import CannotConnect
from serving import signals
from serving.connections import make_http_server, raise_open_files_limit
from serving.drain import drain
from serving.housekeeping import start_housekeeping
from serving.ports import PortInUse, claim_port

log = logging.getLogger("storyhouse")


def fail(sentence):
    print("storyhouse: " + sentence, file=sys.stderr)
    sys.exit(1)


def prepare_database():
    """Create and migrate the database on one plain connection, or say in one sentence why not."""
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


async def serve(reuse_port):
    from application import Application  # imported after the fork: nothing loop-bound before it

    app = Application()
    server = make_http_server(app, xheaders=options.xheaders, max_connections=options.max_connections)
    server.add_sockets(
        tornado.netutil.bind_sockets(options.port, options.address or None, reuse_port=reuse_port)
    )
    await app.models.start()  # the bus (Redis reconnects in the background) and the chat's pinger
    log.info(
        "Storyhouse listening on http://%s:%d/ (pid %d)",
        options.address or "0.0.0.0",
        options.port,
        os.getpid(),
    )
    housekeeping = start_housekeeping(app.models)
    await signals.wait_for_stop()
    await drain(app, server, options.shutdown_timeout, jobs=[housekeeping])
    log.info("stopped (pid %d)", os.getpid())


def main():
    signals.Signals.install()
    try:
        config.parse()
        config.parse_replicas(options.mysql_replicas)  # a malformed list stops here, clearly
    except (tornado.options.Error, ValueError, OSError, SyntaxError, NameError) as e:
        fail("cannot read the options: %s" % e)
    if options.debug and options.processes != 1:
        fail("--debug reloads code in one process only: use it with --processes=1.")
    raise_open_files_limit()
    prepare_database()
    options.cookie_secret = config.load_cookie_secret()  # every forked process shares it
    try:
        port_lock = claim_port(options.address, options.port)  # held (and inherited) while serving
    except PortInUse:
        fail("port %d is already in use: stop the other server or choose --port." % options.port)
    multi = options.processes != 1
    if multi and not options.redis_url:  # once, before the fork
        log.warning(
            "chat uses an in-process bus: with --processes=%d, set --redis_url so every "
            "process sees every message",
            options.processes,
        )
    if multi:
        signals.Signals.forking_parent = parent = os.getpid()
        signals.block_during_forks()
        cache.share_across_forks()  # one version counter for every child's page cache
        tornado.process.fork_processes(options.processes)  # the parent waits in here, then exits
        signals.unblock()
        signals.die_with_parent(parent)
    asyncio.run(serve(reuse_port=multi))
    signals.Signals.ignore_from_now_on()
    port_lock.close()


if __name__ == "__main__":
    main()
