"""server.py as a real process: options, start-up errors, connections (the cap, running out of
descriptors, bodies the server refuses on the wire), signals (a body still arriving at SIGTERM),
forking, the cookie secret file and migrations (SPEC §2 and §8). Every server runs on a free port
and a database of its own."""

import concurrent.futures
import contextlib
import http.client
import os
import re
import resource
import signal
import socket
import stat
import subprocess
import time

import pytest

from models import migrate
from tests import serverproc as sp
from tests.helpers import wait_until

DB = sp.database_name("proc")  # shared by the tests that do not care about its content
DB_FRESH = sp.database_name("mig")  # created from nothing by the migration tests
DB_RACE = sp.database_name("race")  # two servers migrate it at once
DB_WRONG = sp.database_name("wrong")  # named in a config file that the command line overrides
ATTEMPTS = 3  # for races: a fault shows on most tries, a correct server passes every one


@pytest.fixture(scope="module", autouse=True)
def databases():
    sp.drop_databases(DB, DB_FRESH, DB_RACE, DB_WRONG)
    yield
    sp.drop_databases(DB, DB_FRESH, DB_RACE, DB_WRONG)


def stop(server, signum=signal.SIGTERM, timeout=15):
    """Send signum to the server's main process and return its exit code."""
    server.send(signum)
    return server.wait(timeout)


def assert_no_traceback(text):
    assert "Traceback" not in text, text
    assert "KeyboardInterrupt" not in text, text


def one_sentence(stderr):
    """The single line a refused start prints (no traceback, no log noise)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert_no_traceback(stderr)
    return lines[0]


def unique(prefix):
    return "%s%d" % (prefix, time.monotonic_ns() % 10**9)


# --- options ------------------------------------------------------------------------------


def test_help_lists_every_option():
    rc, out, err = sp.run_server(["--help"])
    assert rc == 0
    text = (out + err).replace("-", "_")  # tornado prints --mysql-host for mysql_host
    for name in (
        "port",
        "processes",
        "mysql_host",
        "mysql_port",
        "mysql_user",
        "mysql_password",
        "mysql_database",
        "cookie_secret",
        "upload_dir",
        "max_upload_mb",
        "redis_url",
        "allowed_hosts",
        "xheaders",
        "debug",
        "config",
        "address",
        "log_file_prefix",
    ):
        assert re.search(r"__%s\b" % name, text), "--help does not list --%s" % name


def write_config(tmp_path, **values):
    path = tmp_path / "storyhouse.conf"
    path.write_text("".join("%s = %r\n" % kv for kv in values.items()))
    return str(path)


def test_config_file_is_read(tmp_path):
    port = sp.free_port()
    conf = write_config(
        tmp_path, port=port, mysql_database=DB, cookie_secret=sp.TEST_SECRET, address="127.0.0.1"
    )
    server = sp.ServerProcess(["--config=" + conf])
    try:
        sp.wait_until_healthy(server, port)
        assert stop(server) == 0
    finally:
        server.kill()


@pytest.mark.parametrize("order", ["port_first", "config_first"])
def test_command_line_wins_over_config_file(tmp_path, order):
    port = sp.free_port()
    conf = write_config(tmp_path, port=sp.free_port(), mysql_database=DB_WRONG, cookie_secret=sp.TEST_SECRET)
    cli = sp.server_args(port, DB)
    args = cli + ["--config=" + conf] if order == "port_first" else ["--config=" + conf] + cli
    server = sp.ServerProcess(args)
    try:
        sp.wait_until_healthy(server, port)
        assert stop(server) == 0
        assert not database_exists(DB_WRONG)
    finally:
        server.kill()


# --- refused starts -------------------------------------------------------------------------


def test_mysql_unreachable_is_one_clear_sentence():
    started = time.monotonic()
    rc, out, err = sp.run_server(sp.server_args(sp.free_port(), DB, extra=["--mysql_port=1"]), timeout=15)
    assert rc != 0
    assert time.monotonic() - started < 5
    line = one_sentence(err)
    assert "MySQL" in line or "MariaDB" in line
    assert re.search(r"127\.0\.0\.1(:| port )1\b", line), line


@contextlib.contextmanager
def mute_mysql():
    """A port that accepts connections but never sends MySQL's greeting, like a hung server."""
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        mute.settimeout(10)
        yield mute


def test_mysql_that_never_answers_fails_the_start_within_seconds():
    with mute_mysql() as mute:
        port = mute.getsockname()[1]
        server = sp.ServerProcess(sp.server_args(sp.free_port(), DB, extra=["--mysql_port=%d" % port]))
        try:
            try:
                rc = server.wait(6)
            except subprocess.TimeoutExpired:
                rc = "still waiting for MySQL after 6 s"
            assert rc != 0 and isinstance(rc, int), rc
            line = one_sentence(server.stderr)
            assert "127.0.0.1:%d" % port in line, line
        finally:
            server.kill()


@pytest.mark.parametrize("processes", ["2", "0"])
def test_debug_with_several_processes_is_refused(processes):
    rc, out, err = sp.run_server(
        sp.server_args(sp.free_port(), DB, extra=["--debug", "--processes=" + processes])
    )
    assert rc != 0
    line = one_sentence(err)
    assert "debug" in line and "process" in line


@pytest.mark.parametrize("extra", [[], ["--processes=2"]], ids=["single", "forked"])
def test_port_in_use_is_a_clear_error(extra):
    with sp.running_server(DB, extra=extra) as (first, port):
        rc, out, err = sp.run_server(sp.server_args(port, DB, extra=extra))
        assert rc != 0
        line = one_sentence(err)
        assert str(port) in line and "in use" in line
        assert sp.get(port, "/healthz").status == 200
        assert first.proc.poll() is None


def test_two_forked_servers_started_together_do_not_share_the_port():
    for _ in range(ATTEMPTS):
        start_two_forked_servers_on_one_port()


def start_two_forked_servers_on_one_port():
    port = sp.free_port()
    args = sp.server_args(port, DB, extra=["--processes=2"])
    a, b = sp.ServerProcess(args), sp.ServerProcess(args)
    try:
        wait_until(
            lambda: (
                a.proc.poll() is not None or b.proc.poll() is not None or len(sp.tcp_sockets(port, "0A")) > 2
            ),
            15,
        )
        assert len(sp.tcp_sockets(port, "0A")) <= 2, "both servers listen on port %d" % port
        assert (a.proc.poll() is None) != (b.proc.poll() is None)
        refused = a if a.proc.poll() is not None else b
        assert "in use" in one_sentence(refused.stderr)
    finally:
        a.kill()
        b.kill()


# --- connections: the cap, running out of descriptors, bodies refused on the wire -----------


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def idle_connections(port, n):
    conns = []
    for _ in range(n):
        try:
            conns.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:
            break
    return conns


def test_running_out_of_descriptors_pauses_accepting_instead_of_spinning():
    # --max_connections far above what the descriptors allow: accept() itself fails with EMFILE.
    with sp.running_server(DB, extra=["--max_connections=100000"]) as (server, port):
        limit = open_fds(server.pid) + 20
        resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (limit, limit))
        conns = idle_connections(port, 150)  # the kernel's backlog takes what the server cannot
        try:
            assert wait_until(lambda: "cannot accept connections" in server.stderr, 5), server.stderr
            before = cpu_seconds(server.pid)
            time.sleep(2.0)  # the measurement: the CPU the server uses in 2 s of nothing to accept
            used = cpu_seconds(server.pid) - before
            assert used < 0.5, "the server spun: %.2f s of CPU in 2 s" % used
            log = server.stderr
            assert log.count("Too many open files") <= 2 and "Traceback" not in log, log[-2000:]
        finally:
            for c in conns:
                c.close()
        # Descriptors free again: the server takes new connections (after its short pause).
        assert wait_until(lambda: _healthy(port), 10)


def _healthy(port):
    try:
        return sp.get(port, "/healthz", timeout=2).status == 200
    except OSError:
        return False


def test_connections_past_max_connections_are_closed_at_once():
    with sp.running_server(DB, extra=["--max_connections=20"]) as (server, port):

        def held():  # connections the server holds open
            return len(sp.tcp_sockets(port, "01") & sp.socket_inodes(server.pid))

        assert wait_until(lambda: held() == 0, 5)  # the start-up probe's connection is closed too
        conns = idle_connections(port, 20)
        try:
            assert wait_until(lambda: held() == 20, 5), held()  # all 20 accepted: the cap is reached
            for _ in range(3):
                with socket.create_connection(("127.0.0.1", port), timeout=2) as extra:
                    try:
                        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                        answer = extra.recv(100)
                    except ConnectionResetError:
                        answer = b""
                    assert answer == b"", server.stderr  # closed without an answer
            assert "20 connections open" in server.stderr
        finally:
            for c in conns:
                c.close()
        assert wait_until(lambda: _healthy(port), 5)


def test_the_open_files_limit_is_raised_at_start():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # what the server inherits
    try:
        server_cm = sp.running_server(DB)
        server, port = server_cm.__enter__()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        assert resource.prlimit(server.pid, resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        server_cm.__exit__(None, None, None)


def test_a_raw_client_reads_the_413_without_a_reset():
    with sp.running_server(DB) as (server, port):
        body = b"title=x&body=" + b"a" * (3 * 1024 * 1024)
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(
            b"POST /story/new HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        s.sendall(body)
        answer = b""
        while b"</html>" not in answer:
            chunk = s.recv(65536)
            assert chunk, "connection closed before the page: %r" % answer[:200]
            answer += chunk
        s.close()
        assert answer.startswith(b"HTTP/1.1 413 ")


def test_a_content_length_that_is_not_ascii_digits_gets_a_400_not_a_traceback():
    # "²".isdigit() is True but int("²") raises: once a traceback and no answer at all.
    with sp.running_server(DB) as (server, port):
        for length in ["\u00b2", "\u00b9", "1\u00b3", "-1", "1e9"]:  # headers are read as latin-1
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(
                    b"POST /lang HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
                    + length.encode("latin-1")
                    + b"\r\n\r\nab"
                )
                answer = s.recv(200)
            assert answer.startswith(b"HTTP/1.1 400"), (length, answer)
        assert "Traceback" not in server.stderr


# --- signals, single process ------------------------------------------------------------------


def test_sigterm_finishes_in_flight_requests_then_exits_0():
    with sp.running_server(DB) as (server, port):
        browser = sp.Browser(port)
        browser.get("/register")
        prefix = unique("drain")
        names = ["%s_%d" % (prefix, i) for i in range(16)]  # argon2 on 2 threads: about a second
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": "_xsrf=" + browser.cookies["_xsrf"],
        }
        keep_alive = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        keep_alive.request("GET", "/healthz")
        assert keep_alive.getresponse().read() == b'{"status": "ok"}'

        def register(name):
            body = browser.form_body(
                {"username": name, "password": "correct horse", "confirm": "correct horse"}
            )
            return sp.request(port, "POST", "/register", body, headers, timeout=30)

        def accepted():
            return len(sp.tcp_sockets(port, "01") & sp.socket_inodes(server.pid))

        with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
            futures = [pool.submit(register, name) for name in names]
            # The server holds every connection (and the keep-alive one), then handlers run.
            assert wait_until(lambda: accepted() > len(names), 10)
            assert wait_until(lambda: "POST /register" in server.stderr, 10)
            server.send(signal.SIGTERM)
            # Draining: the listening socket is closed, /healthz on an open connection says 503.
            assert wait_until(lambda: not sp.tcp_sockets(port, "0A"), 5)
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
            keep_alive.request("GET", "/healthz")
            health = keep_alive.getresponse()
            assert (health.status, health.read()) == (503, b'{"status": "unavailable"}')
            keep_alive.close()
            responses = [f.result() for f in futures]

        assert [r.status for r in responses] == [302] * len(names)
        assert all(r.headers["Location"] == "/" for r in responses)
        assert server.wait(15) == 0
        assert_no_traceback(server.stderr)
        assert sp.port_is_free(port)

    con = sp.mysql_connection(DB)
    with con.cursor() as cur:
        cur.execute("SELECT COUNT(*) AS n FROM users WHERE username LIKE %s", (prefix + "\\_%",))
        assert cur.fetchone()["n"] == len(names)
    con.close()


def test_sigint_exits_0_without_traceback():
    with sp.running_server(DB) as (server, port):
        assert sp.get(port, "/").status == 200
        assert stop(server, signal.SIGINT) == 0
        assert_no_traceback(server.stderr)
        assert sp.port_is_free(port)


def test_sigint_while_waiting_for_mysql_has_no_traceback():
    with mute_mysql() as mute:
        server = sp.ServerProcess(
            sp.server_args(sp.free_port(), DB, extra=["--mysql_port=%d" % mute.getsockname()[1]])
        )
        try:
            with mute.accept()[0]:  # the server now waits for MySQL's greeting
                server.send(signal.SIGINT)
                server.wait(10)
            assert_no_traceback(server.stderr)
        finally:
            server.kill()


def test_sigterm_waits_for_a_request_whose_body_is_still_arriving():
    with sp.running_server(DB) as (server, port):
        browser = sp.Browser(port)
        browser.get("/login")
        form = browser.form_body({"theme": "dark", "next": "/"}).encode()
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(
            b"POST /theme HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Cookie: _xsrf=%s\r\nContent-Length: %d\r\n\r\n" % (browser.cookies["_xsrf"].encode(), len(form))
        )
        s.sendall(form[:5])

        def headers_read():  # the server holds the connection and has read all that came
            return list(sp.unread_bytes(port).values()) == [0] and sp.tcp_sockets(port, "01") <= (
                sp.socket_inodes(server.pid)
            )

        assert wait_until(headers_read, 5)
        server.send(signal.SIGTERM)
        assert wait_until(lambda: not sp.tcp_sockets(port, "0A"), 5)  # draining: no longer listening
        time.sleep(1.0)  # the behaviour under test: the rest of the body comes a second into the drain
        s.sendall(form[5:])
        response = http.client.HTTPResponse(s)
        response.begin()
        assert response.status == 302
        s.close()
        assert server.wait(15) == 0


# --- forked processes --------------------------------------------------------------------------


def stops_without_restart(server, timeout=5):
    """The exit code, or why the server did not stop: fork_processes restarting a child means the
    parent will run on (no need to wait the whole timeout to know it)."""
    wait_until(lambda: server.proc.poll() is not None or "restarting" in server.stderr, timeout)
    if "restarting" in server.stderr:
        return "a child was restarted: %s" % server.stderr.splitlines()[-1]
    return server.proc.poll() if server.proc.poll() is not None else "still running"


def forked_server_children(server):
    assert wait_until(lambda: len(server.children()) == 2, 10), server.stderr
    return server.children()


def test_forked_processes_each_listen_and_share_the_work():
    with sp.running_server(DB, extra=["--processes=2"]) as (server, port):
        children = forked_server_children(server)
        listening = sp.tcp_sockets(port, "0A")
        own = [sp.socket_inodes(pid) & listening for pid in children]
        assert all(len(s) == 1 for s in own), "each child has one listening socket of its own"
        assert own[0] != own[1], "the children share one socket instead of reuse_port"
        assert not sp.socket_inodes(server.pid) & listening, "the parent keeps a listening socket"

        # The kernel spreads new connections over both children's sockets.
        connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(20)]
        try:
            for con in connections:
                con.request("GET", "/healthz")
                assert con.getresponse().read() == b'{"status": "ok"}'
            established = sp.tcp_sockets(port, "01")
            assert all(sp.socket_inodes(pid) & established for pid in children)
        finally:
            for con in connections:
                con.close()

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(lambda _: sp.get(port, "/").status, range(100)))
        assert statuses == [200] * 100

        assert stop(server) == 0
        assert wait_until(lambda: not any(map(sp.is_alive, children)), 5)
        assert_no_traceback(server.stderr)
        assert sp.port_is_free(port)


def test_sigint_to_the_parent_stops_forked_server():
    with sp.running_server(DB, extra=["--processes=2"]) as (server, port):
        children = forked_server_children(server)
        assert stop(server, signal.SIGINT) == 0
        assert wait_until(lambda: not any(map(sp.is_alive, children)), 5)
        assert_no_traceback(server.stderr)
        assert "restarting" not in server.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_to_the_process_group_stops_forked_server(signum):
    for _ in range(ATTEMPTS):
        with sp.running_server(DB, extra=["--processes=2"]) as (server, port):
            children = forked_server_children(server)
            os.killpg(server.pid, signum)  # start_new_session: this group holds the server alone
            assert stops_without_restart(server) == 0, server.stderr
            assert not any(map(sp.is_alive, children))
            assert_no_traceback(server.stderr)


def test_children_do_not_outlive_a_killed_parent():
    with sp.running_server(DB, extra=["--processes=2"]) as (server, port):
        children = forked_server_children(server)
        server.send(signal.SIGKILL)
        server.wait(5)
        assert wait_until(lambda: not any(map(sp.is_alive, children)), 5), (
            "children %s still run after their parent was killed" % children
        )
        assert wait_until(lambda: sp.port_is_free(port), 2)


def test_sigterm_while_children_start_still_stops_the_server():
    for _ in range(ATTEMPTS):
        sigterm_while_children_start()


def sigterm_while_children_start():
    server = sp.ServerProcess(sp.server_args(sp.free_port(), DB, extra=["--processes=2"]))
    try:
        assert wait_until(lambda: len(server.children()) == 2, 10, interval=0.005), server.stderr
        server.send(signal.SIGTERM)
        assert stops_without_restart(server) == 0, server.stderr
    finally:
        server.kill()


# --- cookie secret file --------------------------------------------------------------------------


def test_generated_cookie_secret_is_private_and_survives_restarts(tmp_path):
    path = os.path.join(sp.PROJECT, "var", "cookie_secret")  # the project's real file: never removed
    name = unique("keeper")
    with sp.running_server(DB, cookie_secret=None) as (server, port):
        browser = sp.Browser(port)
        assert browser.register(name).status == 302
        assert name in browser.get("/").text
        assert stop(server) == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path) as f:
        secret = f.read()
    assert len(secret.strip()) >= 32

    # Run 2: forked processes, started from another directory; var/ still is the project's.
    with sp.running_server(DB, cookie_secret=None, extra=["--processes=2"], cwd=str(tmp_path)) as (
        server,
        port,
    ):
        browser.port = port
        for _ in range(8):  # new connections, so both children answer
            page = browser.get("/").text
            assert name in page and "Log out" in page
    assert not (tmp_path / "var").exists()
    with open(path) as f:
        assert f.read() == secret
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    # The cookie really depends on the secret: another secret does not know the session.
    with sp.running_server(DB, cookie_secret="some-other-secret-abcdefghijklmnopqrstuvwxyz") as (
        server,
        port,
    ):
        browser.port = port
        page = browser.get("/").text
        assert name not in page and "Log in" in page


# --- migrations ----------------------------------------------------------------------------------


def database_exists(name):
    con = sp.mysql_connection()
    try:
        with con.cursor() as cur:
            cur.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (name,))
            return cur.fetchone() is not None
    finally:
        con.close()


def applied_migrations(database):
    con = sp.mysql_connection(database)
    try:
        with con.cursor() as cur:
            cur.execute("SELECT version, name FROM schema_migrations ORDER BY version")
            rows = [(r["version"], r["name"]) for r in cur.fetchall()]
            cur.execute(
                "SELECT default_character_set_name AS cs FROM information_schema.schemata"
                " WHERE schema_name = %s",
                (database,),
            )
            charset = cur.fetchone()["cs"]
            cur.execute(
                "SELECT table_name AS t FROM information_schema.tables WHERE table_schema = %s", (database,)
            )
            tables = {r["t"] for r in cur.fetchall()}
    finally:
        con.close()
    return rows, charset, tables


def expected_migrations():
    return [(version, name) for version, name, _ in migrate.migration_files()]


def test_start_creates_the_database_and_applies_migrations_once():
    sp.drop_databases(DB_FRESH)
    with sp.running_server(DB_FRESH) as (server, port):
        assert stop(server) == 0
        assert "applied migration" in server.stderr
    rows, charset, tables = applied_migrations(DB_FRESH)
    assert rows == expected_migrations() and rows
    assert charset == "utf8mb4"
    assert {"users", "sessions", "stories", "login_failures"} <= tables

    with sp.running_server(DB_FRESH) as (server, port):
        assert stop(server) == 0
        assert "applied migration" not in server.stderr
    assert applied_migrations(DB_FRESH)[0] == rows


def test_two_servers_starting_at_once_on_an_empty_database_both_come_up():
    sp.drop_databases(DB_RACE)
    ports = [sp.free_port(), sp.free_port()]
    servers = [sp.ServerProcess(sp.server_args(port, DB_RACE)) for port in ports]
    try:
        for server, port in zip(servers, ports, strict=True):
            sp.wait_until_healthy(server, port)
        for server in servers:
            assert stop(server) == 0
            assert_no_traceback(server.stderr)
        assert sum("applied migration" in s.stderr for s in servers) == 1
    finally:
        for server in servers:
            server.kill()
    assert applied_migrations(DB_RACE)[0] == expected_migrations()
