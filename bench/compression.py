"""What gzip costs the app: CPU per request and bytes per answer, with and without compression.

Starts one `server.py` process (its own database `storyhouse_bench_compress`, seeded once with
bench/seed.py: 200 members, 2,000 stories, kept between runs; plus one 100 KB Markdown table whose
HTML is about 950 KB, the largest story the limits allow) and measures each target with wrk twice,
the two runs interleaved: without `Accept-Encoding` (identity) and with `Accept-Encoding: gzip`.
CPU is the server process's own (utime + stime from /proc/<pid>/stat over the wrk run) divided by
the requests answered; bytes are wrk's received bytes per request (headers included). It also
times the compressing step alone (views/compression.py on each target's whole body, Tornado's
gzip level 6) in this process, for scale.

    .venv/bin/python bench/compression.py                 # 5 s per run, -t2 -c16, 3 repeats, medians
    .venv/bin/python bench/compression.py --quick         # 1 s, 1 repeat, README left alone
"""

import argparse
import datetime
import gzip
import os
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import seed as seeder  # noqa: E402
from pages import OUT, PY, README, Server, load_average, replace_section, stop_on_signals, wrk  # noqa: E402
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine  # noqa: E402

import config  # noqa: E402
from models import markdown, search  # noqa: E402
from models.db import open_connection  # noqa: E402
from models.stories import links_json  # noqa: E402
from views.compression import TextCompression  # noqa: E402

BEGIN, END = "<!-- compression:results:begin -->", "<!-- compression:results:end -->"
SECTION = """## Compression

`bench/compression.py` measures what gzip (issue 14, item 10: `compress_response` with
`views/compression.py`) costs one app process: each target is run with wrk without
`Accept-Encoding` and with `Accept-Encoding: gzip`, interleaved; the CPU of the server process
(utime + stime) over each run is divided by the requests it answered. *The transform alone* is
`views/compression.py` (Tornado's gzip, level 6) timed on the same whole body in the script.
The seeded stories are 0.5–6 KB of Markdown; *big story* is a 100 KB Markdown table (about
950 KB of HTML).

```sh
.venv/bin/python bench/compression.py          # 5 s per run, -t2 -c16, 3 repeats, medians; README
.venv/bin/python bench/compression.py --quick  # 1 s, 1 repeat; README left alone
```

"""


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def big_table(size=100 * 1024):
    row = "|" + "x|||" * 10 + "\n"
    head = "|" + "h|" * 30 + "\n|" + "-|" * 30 + "\n"
    return head + row * ((size - len(head)) // len(row))


def add_big_story(db):
    """The 100 KB table, written as Stories.create writes a story; returns its id."""
    title, body = "A big table (bench)", big_table()
    con = open_connection(**db)
    try:
        with con.cursor() as cur:
            cur.execute("SELECT id FROM stories WHERE title = %s", (title,))
            row = cur.fetchone()
            if row:
                return row["id"]
            html = markdown.render(body)
            cur.execute(
                "INSERT INTO stories (user_id, title, body, body_html, excerpt, search_text, links)"
                " VALUES (1, %s, %s, %s, %s, %s, %s)",
                (title, body, html, markdown.excerpt(html), search.document(title, body), links_json(html)),
            )
            return cur.lastrowid
    finally:
        con.close()


def body_of(url):
    """(body, Content-Type) as identity (urllib sends no Accept-Encoding)."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read(), resp.headers["Content-Type"]


def transform_ms(data, content_type, rounds=50):
    """The app's own step alone: views/compression.py's transform on one whole answer."""
    request = HTTPServerRequest(
        start_line=RequestStartLine("GET", "/", "HTTP/1.1"),
        headers=HTTPHeaders({"Host": "bench", "Accept-Encoding": "gzip"}),
    )
    started = time.process_time()
    for _ in range(rounds):
        headers = HTTPHeaders({"Content-Type": content_type, "Content-Length": str(len(data))})
        out = TextCompression(request).transform_first_chunk(200, headers, data, True)[2]
    assert gzip.decompress(out) == data
    return (time.process_time() - started) / rounds * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 s, 1 repeat, README left alone")
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--port", type=int, default=18890)
    parser.add_argument("--database", default="storyhouse_bench_compress")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.repeats, args.no_readme = 1, 1, True
    if not args.database.startswith("storyhouse_bench_"):
        raise SystemExit("--database must start with storyhouse_bench_ (the seeder empties it)")
    os.makedirs(OUT, exist_ok=True)
    stop_on_signals()
    config.parse([sys.argv[0], "--mysql_database=" + args.database])
    db = config.mysql_settings()
    seeder.seed(db, users=200, stories=2000)
    big_id = add_big_story(db)
    story_id = 1000

    app = Server(
        "compression app",
        args.port,
        [PY, "server.py", "--address=127.0.0.1", "--port=%d" % args.port, "--mysql_database=" + args.database]
        + ["--link_previews=false"],
        ready_path="/healthz",
    )
    targets = [
        ("`/`", "/"),
        ("`/story/<id>`", "/story/%d" % story_id),
        ("`/api/stories`", "/api/stories"),
        ("`/feed.atom`", "/feed.atom"),
        ("`site.css`", "/static/css/site.css"),
        ("big story `/api/stories/<id>`", "/api/stories/%d" % big_id),
    ]
    modes = (("identity", None), ("gzip", "Accept-Encoding: gzip"))
    results = {path: {m: [] for m, _ in modes} for _, path in targets}
    sizes = {}
    started = datetime.datetime.now(datetime.UTC)
    load_before = load_average()
    try:
        app.start()
        app.wait_ready()
        pid = app.proc.pid
        for _, path in targets:
            sizes[path] = body_of(app.base + path)
        for rep in range(args.repeats):
            for label, path in targets:
                for mode, header in modes if rep % 2 == 0 else reversed(modes):
                    if rep == 0:
                        wrk(app.base + path, args, duration=1, header=header)  # warm: templates, cache
                    before = cpu_seconds(pid)
                    r = wrk(app.base + path, args, header=header)
                    r["cpu_ms"] = (cpu_seconds(pid) - before) * 1000 / max(1, r["requests"])
                    results[path][mode].append(r)
                    print(
                        "run %d  %-32s %-8s %7.0f req/s  %6.3f ms CPU/req  %8.0f bytes/answer"
                        % (rep + 1, label, mode, r["rps"], r["cpu_ms"], r["bytes_per_request"]),
                        flush=True,
                    )
    finally:
        app.stop()
    load_after = load_average()

    lines = [
        "| target | body | identity req/s | CPU ms/req | bytes/answer | gzip req/s | CPU ms/req "
        "| bytes/answer | CPU added by gzip | the transform alone |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, path in targets:
        m = {mode: {k: statistics.median(r[k] for r in runs) for k in ("rps", "cpu_ms", "bytes_per_request")}
             for mode, runs in results[path].items()}  # fmt: skip
        plain, packed = m["identity"], m["gzip"]
        added = packed["cpu_ms"] - plain["cpu_ms"]
        lines.append(
            "| %s | %.1f KB | %.0f | %.3f | %.0f | %.0f | %.3f | %.0f | %+.3f ms (%+.0f %%) | %.3f ms |"
            % (
                label,
                len(sizes[path][0]) / 1024,
                plain["rps"],
                plain["cpu_ms"],
                plain["bytes_per_request"],
                packed["rps"],
                packed["cpu_ms"],
                packed["bytes_per_request"],
                added,
                100 * added / plain["cpu_ms"] if plain["cpu_ms"] else 0,
                transform_ms(*sizes[path]),
            )
        )
    table = "\n".join(lines)
    print()
    print(table)
    if args.no_readme:
        return
    command = "bench/compression.py" + "".join(" " + a for a in sys.argv[1:])
    text = (
        "Latest run: %s UTC, `.venv/bin/python %s` (wrk -t%d -c%d, %g s per run, %d repeats, medians),"
        " one app process, on this machine (%d cores), load average %s before and %s after.\n\n%s\n"
        % (
            started.strftime("%Y-%m-%d %H:%M"),
            command,
            args.threads,
            args.connections,
            args.duration,
            args.repeats,
            os.cpu_count(),
            load_before,
            load_after,
            table,
        )
    )
    readme = open(README, encoding="utf-8").read()
    with open(README, "w", encoding="utf-8") as f:
        f.write(replace_section(readme, "## Compression", BEGIN, END, text, SECTION))
    print("written: bench/README.md (## Compression)")


if __name__ == "__main__":
    subprocess.run(["wrk", "--version"], capture_output=True)  # fails early when wrk is missing
    main()
