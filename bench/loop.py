"""Is the IOLoop free under load? 50 requests wait on slow queries while a probe times /healthz and /login.

For each variant, bench/loop_app.py (the real Application plus one bench-only route,
`/bench/slow`, that waits on `SELECT SLEEP(1)`) is started; wrk keeps 50 connections on
`/bench/slow` (so 50 requests are always waiting on a slow query); after a second and a half, two
probe threads of this process ask `/healthz` and an anonymous `GET /login`, one request at a time
each, on a new connection, 20 ms apart, and record the latency of each. Variants:

  executor, pool 8    the app as configured by default: the query through app.models.db (8 threads)
  executor, pool 50   the same with --mysql_pool_size=50: all 50 queries really run at once
  blocking            the deliberate mistake: the route calls pymysql on the IOLoop

    bench/run.sh loop [--quick]     # installs wrk first; or: .venv/bin/python bench/loop.py
"""

import argparse
import datetime
import http.client
import json
import math
import os
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from pages import OUT, PY, README, Server, fetch, load_average, replace_section, stop_on_signals  # noqa: E402

BEGIN, END = "<!-- loop:results:begin -->", "<!-- loop:results:end -->"
VARIANTS = (
    ("executor, pool 8 (default)", "executor", 8),
    ("executor, pool 50", "executor", 50),
    ("blocking: pymysql on the loop", "blocking", 8),
)
SECTION = """## Loop under load

`bench/loop.py` checks that the IOLoop stays free while requests wait on the database. It starts
`bench/loop_app.py`: the real `Application` plus one route that exists only in that harness,
`/bench/slow`, which waits on `SELECT SLEEP(1)` through the app's own database layer
(`await app.models.db.fetch_one(...)`). wrk keeps 50 connections busy on that route, so 50 requests are
always waiting on a slow query, while two probes (threads of the script, one request at a time
each, a new connection per request, 20 ms apart) time `/healthz` (its own executor and
connection) and an anonymous `GET /login` (no query).
The same run is made against a deliberately blocking variant of the route (pymysql called on the
IOLoop), and with the pool raised from the default 8 to 50 so that all 50 queries run at once.
Target: p99 < 10 ms on the free loop.

```sh
bench/run.sh loop              # 10 s per variant (the blocking one takes a minute more); README updated
bench/run.sh loop --quick      # 4 s per variant, README left alone
bench/run.sh loop --help
```

"""


def probe(port, path, timeout=120):
    start = time.perf_counter()
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        con.request("GET", path)
        resp = con.getresponse()
        resp.read()
        status = resp.status
    except OSError:
        status = 0
    finally:
        con.close()
    return (time.perf_counter() - start) * 1000.0, status


def percentile(values, pct):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(pct / 100.0 * len(ordered)) - 1))]


def stats(samples):
    ms = [m for m, _ in samples]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else None,
        "bad": sum(1 for _, s in samples if s != 200),
    }


def run_variant(label, mode, pool, args, port):
    argv = [PY, "bench/loop_app.py", "--port=%d" % port, "--mysql_database=" + args.database]
    argv += ["--link_previews=false"]
    argv += ["--mode=" + mode, "--mysql_pool_size=%d" % pool, "--slow_seconds=%g" % args.slow]
    srv = Server("loop " + mode + str(pool), port, argv, ready_path="/healthz")
    srv.start()
    try:
        srv.wait_ready()
        status, _ = fetch(srv.base + "/bench/slow", timeout=30)
        if status != 200:
            raise SystemExit("the harness's /bench/slow answered %d: see %s" % (status, srv.log))
        load = subprocess.Popen(
            ["wrk", "-t1", "-c%d" % args.concurrent, "-d%gs" % args.duration, "--timeout", "60s"]
            + ["-s", os.path.join(HERE, "report.lua"), srv.base + "/bench/slow"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(1.5)  # every connection now has a slow request waiting
        samples = {"/healthz": [], "/login": []}
        stop = time.monotonic() + args.duration - 2.5

        def prober(path):  # one thread per path, so each is asked while the load runs
            while time.monotonic() < stop:
                samples[path].append(probe(port, path))
                time.sleep(0.02)

        threads = [threading.Thread(target=prober, args=(path,)) for path in samples]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out, _ = load.communicate(timeout=300)
        m = re.search(r"^BENCH_JSON (.*)$", out, re.M)
        slow = json.loads(m.group(1)) if m else {}
        errors = sum(slow.get(k, 0) for k in ("connect", "read", "write", "status", "timeout"))
        result = {
            "variant": label,
            "slow_completed": slow.get("requests"),
            "slow_errors": errors,
            "slow_p50_ms": slow.get("p50_us", 0) / 1000.0,
            "healthz": stats(samples["/healthz"]),
            "login": stats(samples["/login"]),
        }
    finally:
        srv.stop()
    h, lg = result["healthz"], result["login"]
    print(
        "%-30s slow: %s done, %s errors | /healthz n=%d p50 %.1f p99 %.1f max %.1f ms | "
        "/login n=%d p50 %.1f p99 %.1f max %.1f ms"
        % (
            label,
            result["slow_completed"],
            result["slow_errors"],
            h["n"],
            h["p50_ms"] or 0,
            h["p99_ms"] or 0,
            h["max_ms"] or 0,
            lg["n"],
            lg["p50_ms"] or 0,
            lg["p99_ms"] or 0,
            lg["max_ms"] or 0,
        ),
        flush=True,
    )
    return result


def cell(s):
    if not s["n"]:
        return "no answer"
    text = "%.1f / %.1f / %.1f (n=%d)" % (s["p50_ms"], s["p99_ms"], s["max_ms"], s["n"])
    return text + (", %d not 200" % s["bad"] if s["bad"] else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds of load per variant (10)")
    parser.add_argument("--concurrent", type=int, default=50, help="requests waiting on slow queries (50)")
    parser.add_argument("--slow", type=float, default=1.0, help="seconds each slow query sleeps (1)")
    parser.add_argument("--database", default="storyhouse_bench_loop")
    parser.add_argument("--port", type=int, default=18880)
    parser.add_argument("--quick", action="store_true", help="4 s per variant, README left alone")
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--note", default="", help="a sentence for the README")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.no_readme = 4, True
    if not args.database.startswith("storyhouse_bench_"):
        raise SystemExit("--database must start with storyhouse_bench_")
    os.makedirs(OUT, exist_ok=True)
    stop_on_signals()
    started = datetime.datetime.now(datetime.UTC)
    load_before = load_average()
    results = [run_variant(label, mode, pool, args, args.port) for label, mode, pool in VARIANTS]
    load_after = load_average()
    with open(os.path.join(OUT, "loop.json"), "w") as f:
        json.dump({"started": started.isoformat(timespec="seconds"), "results": results}, f, indent=1)

    lines = [
        "| variant | slow requests done (errors) | `/healthz` p50 / p99 / max ms"
        " | `GET /login` p50 / p99 / max ms |",
        "|---|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            "| %s | %s (%s) | %s | %s |"
            % (r["variant"], r["slow_completed"], r["slow_errors"], cell(r["healthz"]), cell(r["login"]))
        )
    table = "\n".join(lines)
    print()
    print(table)
    if args.no_readme:
        return
    command = "bench/run.sh loop" + "".join(" " + a for a in sys.argv[1:] if not a.startswith("--note"))
    text = [
        "Latest run: %s UTC, `%s`: %d connections on `/bench/slow` (SLEEP(%g)) for %g s per variant,"
        " on this machine (%d cores), load average %s before and %s after."
        % (
            started.strftime("%Y-%m-%d %H:%M"),
            command,
            args.concurrent,
            args.slow,
            args.duration,
            os.cpu_count(),
            load_before,
            load_after,
        )
    ]
    if args.note:
        text += ["", "**Note:** " + args.note]
    text += ["", table]
    current = open(README, encoding="utf-8").read() if os.path.exists(README) else ""
    with open(README, "w", encoding="utf-8") as f:
        f.write(replace_section(current, "## Loop under load", BEGIN, END, "\n".join(text), SECTION))
    print("written: bench/README.md (## Loop under load), bench/out/loop.json")


if __name__ == "__main__":
    main()
