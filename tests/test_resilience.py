"""Resilience under load, with server.py as a real process and wrk (/usr/bin/wrk) driving it:

- the database cut (a TcpProxy between the app and MariaDB, stopped and started again) while wrk
  runs: only 503s during the cut, never a 500, no crash, 200s again within 5 s without a restart;
- SIGTERM while wrk runs and an upload is still arriving: the upload finishes, then exit 0;
- --processes=2 with one child killed by SIGKILL: the parent starts a new one (Tornado's
  fork_processes restarts a child that a signal killed) and both serve again.

wrk counts every status through a small Lua script (its own summary only counts "non-2xx").
Without wrk the tests skip, unless STORYHOUSE_REQUIRE_NGINX=1 (CI, which installs both)."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

from tests import serverproc as sp
from tests.helpers import cookie_header, multipart, wait_until
from tests.tcp_proxy import TcpProxy

WRK = shutil.which("wrk") or "/usr/bin/wrk"
DB = sp.database_name("resil")

if not os.access(WRK, os.X_OK):
    if os.environ.get("STORYHOUSE_REQUIRE_NGINX"):
        pytest.fail("STORYHOUSE_REQUIRE_NGINX is set but wrk is missing (apt-get install wrk).")
    pytest.skip("wrk is not installed, so the resilience tests are skipped.", allow_module_level=True)

# Every status wrk saw, summed over its threads, printed as "status <code> <count>" lines.
STATUS_SCRIPT = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do total[code] = (total[code] or 0) + n end
  end
  for code, n in pairs(total) do io.write(string.format("status %d %d\\n", code, n)) end
end
"""


@pytest.fixture(scope="module", autouse=True)
def database():
    sp.drop_databases(DB)
    yield
    sp.drop_databases(DB)


@pytest.fixture(scope="module")
def status_script():
    fd, path = tempfile.mkstemp(prefix="storyhouse-wrk-", suffix=".lua")
    with os.fdopen(fd, "w") as f:
        f.write(STATUS_SCRIPT)
    yield path
    os.unlink(path)


class Wrk:
    """wrk in the background; result() waits and returns {status: count}, socket errors, req/s."""

    def __init__(self, script, port, path, seconds, connections=16, headers=()):
        args = [WRK, "-t2", "-c%d" % connections, "-d%ds" % seconds, "--timeout", "10s", "-s", script]
        for header in headers:
            args += ["-H", header]
        self.proc = subprocess.Popen(
            args + ["http://127.0.0.1:%d%s" % (port, path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def result(self, timeout=60):
        out = self.proc.communicate(timeout=timeout)[0].decode()
        statuses = {int(code): int(n) for code, n in re.findall(r"^status (\d+) (\d+)$", out, re.M)}
        errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        errors = (
            dict(zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True))
            if errors
            else {}
        )
        assert statuses, out
        return statuses, errors, out

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class Prober(threading.Thread):
    """GETs one path every 50 ms on a fresh connection and records (monotonic time, status or
    the exception's name)."""

    def __init__(self, port, path, headers=None):
        super().__init__(daemon=True)
        self.port, self.path, self.headers = port, path, headers or {}
        self.seen = []
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            try:
                status = sp.get(self.port, self.path, self.headers, timeout=10).status
            except OSError as e:
                status = type(e).__name__
            self.seen.append((time.monotonic(), status))
            self.stopping.wait(0.05)

    def stop(self):
        self.stopping.set()
        self.join(15)

    def between(self, start, end):
        return [s for t, s in self.seen if start <= t <= end]


def member_with_story(port, name):
    browser = sp.Browser(port)
    assert browser.register(name).status == 302
    r = browser.post("/story/new", {"title": "Resilient", "body": "Still here."})
    assert r.status == 302, r.text
    return browser, r.headers["Location"]


def assert_no_500(server):
    assert not re.search(r"\b500 (GET|POST|HEAD)\b", server.stderr), server.stderr[-3000:]
    assert "Traceback" not in server.stderr, server.stderr[-3000:]


# --- (a) the database cut while wrk drives the site -----------------------------------------------


def test_database_cut_under_load_gives_503s_then_recovers_without_restart(status_script):
    mysql = sp.mysql_settings()
    proxy = TcpProxy(mysql["host"], mysql["port"]).start()
    extra = ["--mysql_host=127.0.0.1", "--mysql_port=%d" % proxy.port]
    try:
        with sp.running_server(DB, extra=extra) as (server, port):
            browser, story = member_with_story(port, "cut_%s" % uuid.uuid4().hex[:6])
            cookie = cookie_header(browser.cookies)
            # Logged in: every request looks its session up in MySQL (no page cache in the way).
            wrk = Wrk(status_script, port, "/", seconds=7, headers=["Cookie: " + cookie])
            prober = Prober(port, story, {"Cookie": cookie})
            prober.start()
            try:
                # Under load, the story answers (the "before" the checks below compare with).
                assert wait_until(lambda: [s for _, s in prober.seen].count(200) >= 5, 10), prober.seen
                cut = time.monotonic()
                proxy.stop()  # the database is gone: live connections closed, new ones refused
                time.sleep(2.0)  # the behaviour under test: a 2 s outage
                restored = time.monotonic()
                proxy.start()
                statuses, errors, out = wrk.result()
                # The checks below look at 5.5 s after the database came back: a window, not a wait.
                time.sleep(max(0.0, restored + 5.5 - time.monotonic()))
            finally:
                wrk.kill()
                prober.stop()
            assert server.proc.poll() is None, "the server died"
            assert set(statuses) <= {200, 503}, out  # never a 500, nothing else
            assert statuses.get(503, 0) > 0 and statuses.get(200, 0) > 0, out
            assert not any(errors.values()), out  # every request answered
            before, during = prober.between(0, cut), prober.between(cut + 1.0, restored)
            assert before and set(before) == {200}, prober.seen
            assert during and set(during) == {503}, prober.seen  # a 503 page, quickly
            back = [t for t, s in prober.seen if t > restored and s == 200]
            assert back and back[0] - restored < 5.0, prober.seen
            assert set(prober.between(back[0], restored + 5.5)) == {200}, prober.seen
            assert sp.get(port, "/healthz").status == 200
            assert_no_500(server)
            print(
                "cut: wrk %s; first 200 on %s %.2f s after the database came back"
                % (statuses, story, back[0] - restored)
            )
    finally:
        proxy.stop()


# --- (b) SIGTERM under load while an upload is still arriving ----------------------------------------


def test_sigterm_under_load_lets_a_slow_upload_finish_then_exits_0(status_script):
    with sp.running_server(DB, extra=["--shutdown_timeout=10"]) as (server, port):
        author, story = member_with_story(port, "term_%s" % uuid.uuid4().hex[:6])
        ctype, body = multipart([("slow.bin", os.urandom(512 * 1024))])
        wrk = Wrk(status_script, port, "/login", seconds=4)
        try:
            assert wait_until(lambda: server.stderr.count("200 GET /login") >= 20, 10)  # under load
            s = socket.create_connection(("127.0.0.1", port), timeout=20)
            s.sendall(
                (
                    "POST %s/attachments HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nCookie: %s\r\n"
                    "X-XSRFToken: %s\r\nAccept: application/json\r\n"
                    "Content-Type: %s\r\nContent-Length: %d\r\n\r\n"
                    % (
                        story,
                        port,
                        cookie_header(author.cookies),
                        author.cookies["_xsrf"],
                        ctype,
                        len(body),
                    )
                ).encode()
            )
            pieces = [body[i : i + 32 * 1024] for i in range(0, len(body), 32 * 1024)]
            started = time.monotonic()
            for i, piece in enumerate(pieces):  # about 2 s for the whole body
                s.sendall(piece)
                if i == 4:
                    signalled = time.monotonic()
                    server.send(signal.SIGTERM)
                time.sleep(2.0 / len(pieces))  # the behaviour under test: a slow client
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
            s.close()
            uploaded = time.monotonic()
            code = server.wait(20)
            exited = time.monotonic()
            statuses, errors, out = wrk.result()
        finally:
            wrk.kill()
        assert reply.startswith(b"HTTP/1.1 201 "), reply[:500]
        assert b'"filename": "slow.bin"' in reply
        assert uploaded - signalled > 1.0  # the body was still arriving long after SIGTERM
        assert code == 0, server.stderr[-3000:]
        assert set(statuses) <= {200} and statuses[200] > 100, out  # load, and never an error page
        assert_no_500(server)
        print(
            "sigterm: upload done %.2f s after SIGTERM (body %.2f s), exit %.2f s after SIGTERM; wrk %s %s"
            % (uploaded - signalled, uploaded - started, exited - signalled, statuses, errors)
        )
    # The file was committed: a new server on the same database lists it.
    with sp.running_server(DB) as (_, port):
        page = sp.get(port, story).text
        assert "slow.bin" in page


def test_sigterm_under_keep_alive_load_leaves_no_request_unanswered(status_script):
    """What a graceful stop owes keep-alive clients (nginx's upstream keepalive is one): every
    response the server logged reaches the client, and no request sent on a kept-alive connection
    is left without an answer (the last answer says Connection: close); wrk's "read" errors count
    requests sent on a connection that was then closed without an answer."""
    with sp.running_server(DB) as (server, port):
        wrk = Wrk(status_script, port, "/login", seconds=3, connections=8)
        try:
            assert wait_until(lambda: server.stderr.count("200 GET /login") >= 20, 10)  # under load
            server.send(signal.SIGTERM)
            assert server.wait(20) == 0
            statuses, errors, out = wrk.result()
        finally:
            wrk.kill()
        answered = server.stderr.count("200 GET /login")
        print(
            "keep-alive drain: server answered %d, wrk received %s, errors %s" % (answered, statuses, errors)
        )
        assert statuses.get(200) == answered, (answered, out)
        assert errors.get("read") == 0, out


# --- (c) --processes=2, one child killed with SIGKILL -----------------------------------------------------


def test_a_child_killed_with_sigkill_is_replaced_and_the_site_keeps_serving(status_script):
    with sp.running_server(DB, extra=["--processes=2"]) as (server, port):
        children = server.children()
        assert len(children) == 2, children
        wrk = Wrk(status_script, port, "/login", seconds=4)
        try:
            assert wait_until(lambda: server.stderr.count("200 GET /login") >= 20, 10)  # under load
            victim = children[0]
            os.kill(victim, signal.SIGKILL)
            killed = time.monotonic()
            # The parent notices, says so, and forks a new child that listens on the same port.
            assert wait_until(lambda: victim not in server.children() and len(server.children()) == 2, 10), (
                server.stderr
            )
            assert wait_until(lambda: len(sp.tcp_sockets(port, "0A")) >= 2, 10)
            replaced = time.monotonic()
            statuses, errors, out = wrk.result()
        finally:
            wrk.kill()
        assert server.proc.poll() is None, "the parent exited"
        assert re.search(r"child \d+ \(pid %d\) killed by signal 9, restarting" % victim, server.stderr), (
            server.stderr
        )
        assert set(statuses) <= {200} and statuses[200] > 100, out
        # Both children answer: many fresh connections, spread by SO_REUSEPORT, all succeed.
        new_child = (set(server.children()) - set(children)).pop()
        assert wait_until(lambda: "pid %d" % new_child in server.stderr, 10), server.stderr
        results = [sp.get(port, "/healthz").status for _ in range(40)]
        assert results == [200] * 40
        assert_no_500(server)
        print(
            "sigkill: replaced in %.2f s; wrk %s, socket errors %s (connections the dead child held)"
            % (replaced - killed, statuses, errors)
        )
        # The new child stops with the others.
        server.send(signal.SIGTERM)
        assert server.wait(20) == 0
        assert not any(sp.is_alive(pid) for pid in server.known_children)
