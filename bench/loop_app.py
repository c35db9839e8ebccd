"""Harness for bench/loop.py: the real Application plus one bench-only route that waits on a slow query.

The route exists only here, never in the app. `--mode=executor` runs the query through the app's
own database layer (`await app.models.db.fetch_one(...)`: its thread pool and connection pool);
`--mode=blocking` is the deliberate mistake: pymysql called directly on the IOLoop.

    .venv/bin/python bench/loop_app.py --port=18880 --mysql_database=storyhouse_bench_loop \
        --mode=executor --slow_seconds=1 [--mysql_pool_size=50]
"""

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pymysql  # noqa: E402
import tornado.web  # noqa: E402
from tornado.options import define, options  # noqa: E402

import config  # noqa: E402
import server  # noqa: E402
from models.db import connect_args  # noqa: E402
from serving.connections import make_http_server, raise_open_files_limit  # noqa: E402

define(
    "mode",
    type=str,
    default="executor",
    help="executor (the app's db layer) or blocking (pymysql on the loop)",
)
define("slow_seconds", type=float, default=1.0, help="how long the slow query sleeps")


class SlowExecutor(tornado.web.RequestHandler):
    async def get(self):
        row = await self.application.models.db.fetch_one("SELECT SLEEP(%s) AS slept", (options.slow_seconds,))
        self.write({"slept": row["slept"]})


class SlowBlocking(tornado.web.RequestHandler):
    con = None

    def get(self):
        # Wrong on purpose: a blocking driver call on the IOLoop thread stops every other request.
        if SlowBlocking.con is None:
            SlowBlocking.con = pymysql.connect(**connect_args(**config.mysql_settings()))
        with SlowBlocking.con.cursor() as cur:
            cur.execute("SELECT SLEEP(%s) AS slept", (options.slow_seconds,))
            self.write({"slept": cur.fetchone()["slept"]})


async def serve():
    from application import Application

    app = Application()
    handler = SlowBlocking if options.mode == "blocking" else SlowExecutor
    app.add_handlers(r".*", [(r"/bench/slow", handler)])
    http = make_http_server(app)
    http.listen(options.port, "127.0.0.1")
    print("loop harness (%s) on http://127.0.0.1:%d/" % (options.mode, options.port), flush=True)
    await asyncio.Event().wait()


def main():
    config.parse()
    if options.mode not in ("executor", "blocking"):
        sys.exit("--mode is executor or blocking")
    raise_open_files_limit()
    server.prepare_database()
    options.cookie_secret = config.load_cookie_secret()
    asyncio.run(serve())


if __name__ == "__main__":
    main()
