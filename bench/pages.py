"""Pages benchmark (bench/run.sh runs it): the app beside its ceiling and a peer, same run, interleaved.

Seeds the benchmark database (bench/seed.py; kept between runs), starts four servers on loopback:

  app      server.py, one process
  app x2   server.py --processes=2
  ceiling  bench/ceiling.py: bare Tornado, the app's own templates and ui_modules, in-memory rows
  peer     bench/peer.py: the same pages in Flask + gunicorn, 2 gthread workers, same database

logs in through HTTP (a seeded member; the session cookie goes to wrk with -H), checks that every
server answers every target with the right page, then measures each target on each server with
wrk, the servers one after the other for each target, `--repeats` times. Reports medians of
req/s, p50, p99 and the errors (non-2xx/3xx answers and socket errors, summed over the repeats),
with the ratios, into bench/README.md (## Pages) and bench/pages.png.

    bench/run.sh                 # full: 5 s per measurement, -t2 -c64, 3 repeats (about 10 minutes)
    bench/run.sh --quick         # smoke: 1 s, -c16, 1 repeat; writes bench/out/ only, not the README
"""

import argparse
import datetime
import http.cookiejar
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import seed as seeder  # noqa: E402

import config  # noqa: E402
from models import search  # noqa: E402
from models.db import open_connection  # noqa: E402
from models.stories import _LIST_COLUMNS, PAGE_SIZE  # noqa: E402

PY = sys.executable
OUT = os.path.join(HERE, "out")
README = os.path.join(HERE, "README.md")
CHART = os.path.join(HERE, "pages.png")
SERVERS = ("app", "app x2", "ceiling", "peer")
BEGIN, END = "<!-- pages:results:begin -->", "<!-- pages:results:end -->"

SECTION = """## Pages

`bench/run.sh` (a wrapper around `bench/pages.py`) measures the pages with
[wrk](https://github.com/wg/wrk) against a seeded database (1,000 members, 10,000 stories with
Markdown bodies of 0.5–6 KB; the rows are inserted in batches of SQL but their `body_html`,
`excerpt` and `search_text` come from the app's own `models.markdown` and `models.search`, so they
are exactly what the app writes). In the same run, one target after the other, it measures four
servers:

| server | what |
|---|---|
| app | `server.py --link_previews=false` (no fetch may leave loopback), one process, access log to a file |
| app x2 | `server.py --processes=2` |
| ceiling | `bench/ceiling.py`: a bare Tornado app rendering the app's own templates with its own \
ui_modules, `PageMixin` and route names, from rows read once at start through `models.stories` \
(no query, no session lookup, no access log per request) |
| peer | `bench/peer.py`: the same pages in Flask + gunicorn (2 gthread workers, 8 threads \
each), the same SQL through pymysql, Jinja2 templates giving the same HTML, no cache; its \
story page has no attachment or link-preview queries |

Targets: `/`, `/?page=50`, `/?q=lighthouse` (a word in ~3 % of the stories), `/story/<id>`,
`/api/stories` (skipped while the route answers 404), `GET /login` (anonymous) and a logged-in `/`
(a real session: the script logs in through `POST /login` and hands the cookie to wrk with `-H`).
Before measuring, every server's answer to every target is checked (status 200 and the right
page: the expected story title, the "Log out" button for the logged-in page). wrk sends no
cookies back, so every page answer also sets a new `_xsrf` cookie, on all four servers alike.

```sh
bench/run.sh                       # full pass: 5 s each, wrk -t2 -c64, 3 repeats, medians; about 10 min
bench/run.sh --quick               # smoke: 1 s, -c16, 1 repeat; results in bench/out/ only
bench/run.sh --duration=10 --repeats=5 --connections=128 --targets=/,login
bench/run.sh --help
```

It installs `wrk` (apt-get) and `bench/requirements.txt` (Flask, gunicorn, matplotlib; bench only)
into `.venv` when missing, seeds `storyhouse_bench_pages` once (kept; `--reseed` writes it again),
and writes the table below, `bench/pages.png` and the raw figures in `bench/out/pages.json`.
Ratios: *app / ceiling* is one process against the ceiling of its own templates; *x2 / app* is
`--processes=2` against one process; *x2 / peer* against Flask + gunicorn. *err* counts answers
other than 2xx/3xx (503 when a query waited past `mysql_query_timeout`) and socket errors, summed
over the repeats; the ceiling never asks the database.

"""


# --- servers ------------------------------------------------------------------------------------


class Server:
    def __init__(self, name, port, argv, env=None, ready_path="/"):
        self.name, self.port, self.argv, self.env, self.ready_path = name, port, argv, env, ready_path
        self.proc = None
        self.log = os.path.join(OUT, "%s.log" % name.replace(" ", "_"))

    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        env = dict(os.environ, **(self.env or {}))
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                self.argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("%s exited with %s: see %s" % (self.name, self.proc.returncode, self.log))
            try:
                urllib.request.urlopen(self.base + self.ready_path, timeout=2).read()
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        raise SystemExit("%s did not answer within %d s: see %s" % (self.name, timeout, self.log))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the server and its children
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def fetch(url, cookie=None, timeout=10):
    req = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def log_in(base, username, password):
    """A real session: GET /login for the XSRF cookie, POST /login; returns 'session=...'."""
    jar = http.cookiejar.CookieJar()

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    opener.open(base + "/login", timeout=10).read()
    xsrf = next(c.value for c in jar if c.name == "_xsrf")
    body = urllib.parse.urlencode({"username": username, "password": password, "_xsrf": xsrf}).encode()
    try:
        opener.open(base + "/login", body, timeout=30).read()
    except urllib.error.HTTPError as e:
        if e.code != 302:
            raise SystemExit("logging in as %s answered %d" % (username, e.code)) from None
    session = [c.value for c in jar if c.name == "session"]
    if not session:
        raise SystemExit("logging in as %s gave no session cookie" % username)
    return "session=" + session[0]


# --- wrk --------------------------------------------------------------------------------------------


def wrk(url, args, cookie=None, duration=None, header=None):
    cmd = ["wrk", "-t%d" % args.threads, "-c%d" % args.connections, "-d%gs" % (duration or args.duration)]
    cmd += ["--timeout", "10s", "-s", os.path.join(HERE, "report.lua")]
    if cookie:
        cmd += ["-H", "Cookie: " + cookie]
    if header:  # e.g. "Accept-Encoding: gzip" (bench/compression.py)
        cmd += ["-H", header]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=120)
    m = re.search(r"^BENCH_JSON (.*)$", out.stdout, re.M)
    if not m:
        raise SystemExit("wrk gave no result for %s:\n%s%s" % (url, out.stdout, out.stderr))
    r = json.loads(m.group(1))
    errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    answered = r["requests"] > 0  # none answered within the run: no latency to speak of
    return {
        "rps": r["requests"] / (r["duration_us"] / 1e6),
        "p50_ms": r["p50_us"] / 1000.0 if answered else None,
        "p99_ms": r["p99_us"] / 1000.0 if answered else None,
        "errors": errors,
        "requests": r["requests"],
        "bytes_per_request": r["bytes"] / max(1, r["requests"]),
    }


# --- the run ----------------------------------------------------------------------------------------


def expected(db, story_id, word):
    """What each target must show: a title from the rows the app's SQL gives (models.stories)."""
    con = open_connection(**db)
    try:
        with con.cursor() as cur:
            sql = _LIST_COLUMNS + " ORDER BY s.id DESC LIMIT %s OFFSET %s"
            cur.execute(sql, (1, 0))
            first = cur.fetchone()
            cur.execute(sql, (1, 49 * PAGE_SIZE))
            page50 = cur.fetchone()  # None with a small --stories: then any 200 will do
            cur.execute(
                _LIST_COLUMNS + " WHERE MATCH (s.search_text) AGAINST (%s IN BOOLEAN MODE)"
                " ORDER BY s.id DESC LIMIT 1",
                (search.query(word),),
            )
            found = cur.fetchone()
            cur.execute("SELECT title FROM stories WHERE id = %s", (story_id,))
            story = cur.fetchone()
    finally:
        con.close()
    return tuple(row["title"] if row else None for row in (first, page50, found, story))


def targets(args, story_id, first, page50, found, story_title):
    """[(key, label, path, logged_in, marker, servers)]"""
    q = urllib.parse.quote(args.word)
    every = SERVERS
    return [
        ("/", "/", "/", False, first, every),
        ("page50", "/?page=50", "/?page=50", False, page50, every),
        ("search", "/?q=" + args.word, "/?q=" + q, False, found, every),
        ("story", "/story/<id>", "/story/%d" % story_id, False, story_title, every),
        ("api", "/api/stories", "/api/stories", False, None, ("app", "app x2", "ceiling")),
        ("login", "GET /login", "/login", False, 'name="password"', every),
        ("member", "/ logged in", "/", True, ">Log out<", every),
    ]


def check(servers, target, cookie):
    """Every server gives the right page for the target; returns the servers that do."""
    key, label, path, logged_in, marker, names = target
    good = []
    for name in names:
        status, body = fetch(servers[name].base + path, cookie if logged_in else None)
        if status == 200 and (marker is None or marker in body):
            good.append(name)
        else:
            print(
                "  CHECK FAILED: %s on %s answered %d%s"
                % (label, name, status, "" if status != 200 else ", wrong page")
            )
    return good


def median_of(runs, field):
    values = [r[field] for r in runs if r[field] is not None]
    return statistics.median(values) if values else None


def settle(db, limit=60):
    """Wait until no statement runs on the benchmark database (a server that wrk left with a
    backlog of queries would otherwise slow the next server's measurement). Returns seconds."""
    start = time.monotonic()
    con = open_connection(**db)
    quiet = 0
    try:
        with con.cursor() as cur:
            while time.monotonic() - start < limit and quiet < 3:
                cur.execute(
                    "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST"
                    " WHERE DB = %s AND COMMAND = 'Query' AND ID <> CONNECTION_ID()",
                    (db["database"],),
                )
                quiet = quiet + 1 if cur.fetchone()["n"] == 0 else 0
                time.sleep(0.1)
    finally:
        con.close()
    return time.monotonic() - start


def stop_on_signals():
    """SIGTERM/SIGHUP (and SIGINT, even when started in the background) end the run through the
    `finally` that stops the servers."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt()

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, interrupt)


def summarize(results):
    rows = {}
    for key, per_server in results.items():
        rows[key] = {}
        for name, runs in per_server.items():
            rows[key][name] = {
                "rps": median_of(runs, "rps"),
                "p50_ms": median_of(runs, "p50_ms"),
                "p99_ms": median_of(runs, "p99_ms"),
                "errors": sum(r["errors"] for r in runs),
                "runs": len(runs),
            }
    return rows


def ratio(a, b):
    return a / b if a and b else None


def fmt(x, spec="%.0f"):
    return "—" if x is None else spec % x


def table(summary, labels, notes):
    lines = [
        "| target | app req/s | p50 / p99 ms | err | app x2 req/s | p50 / p99 ms | err | ceiling req/s "
        "| p50 / p99 ms | peer req/s | p50 / p99 ms | err | app / ceiling | x2 / app | x2 / peer |",
        "|---|" + "---:|" * 14,
    ]
    for key, label in labels:
        if key not in summary:
            lines.append("| `%s` | %s |" % (label, notes.get(key, "not measured")) + " |" * 13)
            continue
        s = summary[key]
        cells = ["`%s`" % label]
        for name in SERVERS:
            m = s.get(name)
            if m is None:
                cells += ["—", "—"] + (["—"] if name != "ceiling" else [])
                continue
            cells += [fmt(m["rps"]), "%s / %s" % (fmt(m["p50_ms"], "%.1f"), fmt(m["p99_ms"], "%.1f"))]
            if name != "ceiling":
                cells.append(str(m["errors"]))
        app, x2, ceil, peer = (s.get(n, {}).get("rps") for n in SERVERS)
        cells += [fmt(ratio(app, ceil), "%.2f"), fmt(ratio(x2, app), "%.2f"), fmt(ratio(x2, peer), "%.2f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(summary, labels, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [(k, lab) for k, lab in labels if k in summary]
    fig, ax = plt.subplots(figsize=(11, 4.8), dpi=100)
    width = 0.2
    colors = {"app": "#1f77b4", "app x2": "#2ca02c", "ceiling": "#7f7f7f", "peer": "#ff7f0e"}
    for i, name in enumerate(SERVERS):
        values = [(summary[k].get(name) or {}).get("rps") or 0 for k, _ in keys]
        xs = [j + (i - 1.5) * width for j in range(len(keys))]
        bars = ax.bar(xs, values, width, label=name, color=colors[name])
        for bar, v in zip(bars, values, strict=True):
            if v:
                ax.annotate(
                    "%.0f" % v,
                    (bar.get_x() + bar.get_width() / 2, v),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    rotation=90,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([lab for _, lab in keys], fontsize=9)
    ax.set_ylabel("requests per second (median)")
    ax.set_title("Storyhouse pages beside the ceiling (bare Tornado) and the peer (Flask + gunicorn)")
    ax.legend(fontsize=8)
    ax.margins(y=0.15)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def replace_section(text, heading, begin, end, generated, default_prose):
    """Put `generated` between the markers of our section, creating the section if missing; every
    other section of the shared README stays as it is."""
    block = begin + "\n" + generated.strip() + "\n" + end
    if begin in text and end in text:
        return text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    if heading in text:  # the section without markers: results go at its end
        start = text.index(heading)
        nxt = text.find("\n## ", start + len(heading))
        cut = len(text) if nxt < 0 else nxt + 1
        return text[:cut].rstrip("\n") + "\n\n" + block + "\n\n" + text[cut:].lstrip("\n")
    if not text.strip():
        text = (
            "# Benchmarks\n\nScripts that measure; they are not tests."
            " Each section gives the command, the machine and the figures.\n"
        )
    return text.rstrip("\n") + "\n\n" + default_prose + block + "\n"


def write_readme(generated):
    text = open(README, encoding="utf-8").read() if os.path.exists(README) else ""
    text = replace_section(text, "## Pages", BEGIN, END, generated, SECTION)
    with open(README, "w", encoding="utf-8") as f:
        f.write(text)


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 s, -c16, 1 repeat, no README")
    parser.add_argument("--duration", type=float, default=5, help="seconds per measurement (5)")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (2)")
    parser.add_argument("--connections", type=int, default=64, help="wrk -c (64)")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per server and target (3)")
    parser.add_argument("--warmup", type=float, default=1, help="seconds of wrk before the first repeat (1)")
    parser.add_argument("--targets", default="", help="comma list of: /,page50,search,story,api,login,member")
    parser.add_argument(
        "--database", default="storyhouse_bench_pages", help="must start with storyhouse_bench_"
    )
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--stories", type=int, default=10000)
    parser.add_argument("--reseed", action="store_true", help="write the benchmark rows again")
    parser.add_argument("--word", default=seeder.SEARCH_WORD, help="the search word (%(default)s)")
    parser.add_argument("--port", type=int, default=18870, help="first of four ports (%(default)s)")
    parser.add_argument("--no-readme", action="store_true", help="leave bench/README.md and the chart alone")
    parser.add_argument("--note", default="", help="a sentence for the README (e.g. 'the machine was busy')")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.connections, args.repeats, args.warmup = 1, 16, 1, 0
        args.no_readme = True
    if not args.database.startswith("storyhouse_bench_"):
        raise SystemExit("--database must start with storyhouse_bench_ (the seeder empties it)")
    os.makedirs(OUT, exist_ok=True)
    stop_on_signals()

    config.parse([sys.argv[0], "--mysql_database=" + args.database])
    db = config.mysql_settings()
    seeder.seed(db, args.users, args.stories, force=args.reseed)
    secret = config.load_cookie_secret()  # the app's own (var/cookie_secret): the peer reads the same cookie
    con = open_connection(**db)
    with con.cursor() as cur:
        cur.execute("SELECT id FROM stories ORDER BY id LIMIT 1 OFFSET %s", (args.stories // 2,))
        story_id = cur.fetchone()["id"]
    con.close()
    first, page50, found, story_title = expected(db, story_id, args.word)
    username = "writer0001"

    p = args.port
    # No link previews: the app would fetch cards from other hosts (the seeded links are same-site
    # anyway); nothing in a benchmark may leave loopback.
    app_argv = [PY, "server.py", "--address=127.0.0.1", "--mysql_database=" + args.database]
    app_argv.append("--link_previews=false")
    servers = {
        "app": Server("app", p, app_argv + ["--port=%d" % p], ready_path="/healthz"),
        "app x2": Server(
            "app x2", p + 1, app_argv + ["--port=%d" % (p + 1), "--processes=2"], ready_path="/healthz"
        ),
        "peer": Server(
            "peer",
            p + 3,
            [os.path.join(os.path.dirname(PY), "gunicorn"), "-w", "2", "-k", "gthread", "--threads", "8"]
            + ["-b", "127.0.0.1:%d" % (p + 3), "--control-socket", os.path.join(OUT, "gunicorn.ctl")]
            + ["bench.peer:app"],
            env={"PEER_DATABASE": args.database, "PEER_COOKIE_SECRET": secret},
        ),
    }
    api_json = os.path.join(OUT, "api_stories.json")
    notes = {}
    try:
        for s in servers.values():
            s.start()
        for s in servers.values():
            s.wait_ready()
        status, body = fetch(servers["app"].base + "/api/stories")
        if status == 200:
            with open(api_json, "w", encoding="utf-8") as f:
                f.write(body)
        else:
            notes["api"] = "skipped: the app answers %d (the route arrives with the API branch)" % status
            api_json = ""
        servers["ceiling"] = Server(
            "ceiling",
            p + 2,
            [PY, "bench/ceiling.py", "--port=%d" % (p + 2), "--mysql_database=" + args.database]
            + ["--link_previews=false"]
            + ["--story_id=%d" % story_id, "--query=" + args.word, "--username=" + username]
            + ["--api_json=" + api_json],
        )
        servers["ceiling"].start()
        servers["ceiling"].wait_ready()

        cookie = log_in(servers["app"].base, username, seeder.PASSWORD)
        chosen = [t for t in args.targets.split(",") if t]
        plan = []
        for target in targets(args, story_id, first, page50, found, story_title):
            if chosen and target[0] not in chosen:
                continue
            if target[0] in notes:
                print("%s: %s" % (target[1], notes[target[0]]))
                continue
            good = check(servers, target, cookie)
            if len(good) < len(target[5]):
                notes[target[0]] = "check failed on " + ", ".join(n for n in target[5] if n not in good)
            plan.append((target, good))

        results = {t[0]: {n: [] for n in good} for t, good in plan}
        started = datetime.datetime.now(datetime.UTC)
        load_before = load_average()
        for rep in range(args.repeats):
            for target, good in plan:
                key, label, path, logged_in = target[:4]
                # Interleaved: each target on every server, in a rotating order.
                order = good[rep % len(good) :] + good[: rep % len(good)] if good else []
                for name in order:
                    url = servers[name].base + path
                    if rep == 0 and args.warmup:
                        wrk(url, args, cookie if logged_in else None, duration=args.warmup)
                        settle(db)
                    r = wrk(url, args, cookie if logged_in else None)
                    r["settle_s"] = settle(db)
                    results[key][name].append(r)
                    print(
                        "run %d  %-14s %-8s %8.0f req/s  p50 %7s ms  p99 %7s ms  errors %d  (settled %.1f s)"
                        % (
                            rep + 1,
                            label,
                            name,
                            r["rps"],
                            fmt(r["p50_ms"], "%.1f"),
                            fmt(r["p99_ms"], "%.1f"),
                            r["errors"],
                            r["settle_s"],
                        ),
                        flush=True,
                    )
        load_after = load_average()
    finally:
        for s in servers.values():
            s.stop()

    summary = summarize(results)
    labels = [(t[0], t[1]) for t in targets(args, story_id, first, page50, found, story_title)]
    if args.targets:
        labels = [(k, lab) for k, lab in labels if k in args.targets.split(",")]
    command = "bench/run.sh" + "".join(" " + a for a in sys.argv[1:] if not a.startswith("--note"))
    md = table(summary, labels, notes)
    raw = {
        "started": started.isoformat(timespec="seconds"),
        "command": command,
        "settings": {k: getattr(args, k) for k in ("duration", "threads", "connections", "repeats", "word")},
        "story_id": story_id,
        "load_before": load_before,
        "load_after": load_after,
        "notes": notes,
        "summary": summary,
        "runs": results,
    }
    with open(os.path.join(OUT, "pages.json"), "w") as f:
        json.dump(raw, f, indent=1)
    print()
    print(md)
    for key, note in notes.items():
        if key in dict(labels):
            print("note: %s: %s" % (key, note))
    if args.no_readme:
        print(
            "\n(not written to bench/README.md: --quick or --no-readme; raw figures in bench/out/pages.json)"
        )
        return

    chart(summary, labels, CHART)
    lines = [
        "Latest run: %s UTC, `%s` (wrk -t%d -c%d, %g s per measurement, %d repeats, medians; errors"
        " summed over the repeats), on this machine (%d cores), load average %s before and %s after."
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
        ),
    ]
    if args.note:
        lines.append("")
        lines.append("**Note:** " + args.note)
    lines += ["", md, ""]
    for key, note in notes.items():
        if key in dict(labels):
            lines.append("- `%s`: %s" % (dict(labels).get(key, key), note))
    lines += ["", "![req/s per target and server](pages.png)"]
    write_readme("\n".join(lines))
    print("written: bench/README.md (## Pages), bench/pages.png, bench/out/pages.json")


if __name__ == "__main__":
    main()
