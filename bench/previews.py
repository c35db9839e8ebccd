"""Link previews do not slow the app: GET /api/stories/<id> latency on a real server.py, first
idle, then while the stories it just published wait on slow link previews (every upstream page
takes --slow seconds, so the 3 s timeout or the page decides). Also reports how many fetches the
upstream saw at once (the per-process bound).

    .venv/bin/python bench/previews.py [--stories 20] [--requests 300] [--slow 2.5]

Everything is on loopback: the upstream is a Tornado app in this process, the server runs with
--link_preview_allow_private (as the tests do). The server's database is its own, dropped after.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import serverproc as sp  # noqa: E402


class Upstream:
    def __init__(self, slow):
        self.slow = slow
        self.active = self.max_active = self.hits = 0
        self.port = sp.free_port()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait(10)

    def _run(self):
        import logging

        import tornado.web

        logging.getLogger("tornado.access").setLevel(logging.WARNING)

        up = self

        class Slow(tornado.web.RequestHandler):
            async def get(self, n):
                up.hits += 1
                up.active += 1
                up.max_active = max(up.max_active, up.active)
                try:
                    await asyncio.sleep(up.slow)
                    self.write("<title>Page %s</title>" % n)
                finally:
                    up.active -= 1

        async def main():
            tornado.web.Application([(r"/page/(\d+)", Slow)]).listen(self.port, "127.0.0.1")
            self.ready.set()
            await asyncio.Event().wait()

        asyncio.run(main())


def timings(port, path, count):
    out = []
    for _ in range(count):
        t = time.perf_counter()
        response = sp.get(port, path)
        out.append((time.perf_counter() - t) * 1000)
        assert response.status == 200, response.status
    return out


def summary(ms):
    ms = sorted(ms)
    return "p50 %.1f ms, p95 %.1f ms, max %.1f ms" % (
        statistics.median(ms),
        ms[int(len(ms) * 0.95) - 1],
        ms[-1],
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stories", type=int, default=20, help="stories published, 5 slow links each")
    parser.add_argument("--requests", type=int, default=300, help="GETs timed in each phase")
    parser.add_argument("--slow", type=float, default=2.5, help="seconds each upstream page takes")
    args = parser.parse_args()

    upstream = Upstream(args.slow)
    database = sp.database_name("bench_previews")
    sp.drop_databases(database)
    extra = ["--link_previews=true", "--link_preview_allow_private=true"]
    try:
        with sp.running_server(database, extra=extra) as (_server, port):
            browser = sp.Browser(port)
            assert browser.register("bencher").status == 302
            first = browser.post("/story/new", {"title": "Plain", "body": "No links."})
            story = first.headers["Location"].rsplit("/", 1)[1]
            path = "/api/stories/" + story
            timings(port, path, 20)  # warm up
            idle = timings(port, path, args.requests)

            started = time.perf_counter()
            for s in range(args.stories):
                links = "\n\n".join(
                    "<http://127.0.0.1:%d/page/%d>" % (upstream.port, s * 5 + n) for n in range(5)
                )
                r = browser.post("/story/new", {"title": "Links %d" % s, "body": links})
                assert r.status == 302, r.status
            publish_ms = (time.perf_counter() - started) * 1000 / args.stories
            busy = timings(port, path, args.requests)
            busy_while = upstream.active > 0 or upstream.hits < args.stories * 5
            deadline = time.monotonic() + args.stories * 5 * args.slow + 30
            while upstream.hits < args.stories * 5 and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(args.slow + 1)
            last = json.loads(sp.get(port, "/api/stories/%d" % (int(story) + args.stories)).body)
    finally:
        sp.drop_databases(database)

    print("GET %s, %d requests each, one connection at a time" % (path, args.requests))
    print("  idle:                 %s" % summary(idle))
    print("  previews in flight:   %s (fetches still running when timed: %s)" % (summary(busy), busy_while))
    print("  publish (5 links):    %.1f ms a story, the save does not wait for the fetches" % publish_ms)
    print("  upstream: %d fetches, at most %d at once" % (upstream.hits, upstream.max_active))
    print("  cards on the last story: %d" % len(last["previews"]))


if __name__ == "__main__":
    main()
