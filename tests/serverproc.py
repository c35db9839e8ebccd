"""Helpers for tests that run `server.py` as a real process: a free port, the server itself
(started in its own session, output kept in files, always killed), a small cookie-keeping HTTP
client built on http.client, and a look into /proc for children and listening sockets."""

import contextlib
import functools
import http.client
import http.cookies
import os
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.parse

import config
from tests.helpers import cookie_header, raw_connection, wait_until

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER_PY = os.path.join(PROJECT, "server.py")
# Databases of the process tests are named after the run's test database, so parallel runs on
# other databases never meet.
BASE_DATABASE = os.environ.get("STORYHOUSE_TEST_DB", "storyhouse_test")
TEST_SECRET = "serverproc-test-cookie-secret-0123456789"


def database_name(suffix):
    return "%s_%s" % (BASE_DATABASE, suffix)


@functools.cache
def mysql_settings():
    """Host, port, user and password as the server reads them (var/storyhouse.conf included)."""
    config.parse(["pytest"])
    settings = config.mysql_settings()
    settings.pop("database")
    return settings


def mysql_connection(database=None):
    return raw_connection(mysql_settings(), database)


def drop_databases(*names):
    con = mysql_connection()
    try:
        with con.cursor() as cur:
            for name in names:
                cur.execute("DROP DATABASE IF EXISTS `%s`" % name)
    finally:
        con.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port):
    """True when a new server could listen on port (SO_REUSEADDR, as servers bind: the closed
    connections' TIME_WAIT does not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# --- the server process -------------------------------------------------------------------


class ServerProcess:
    """`python server.py ARGS` in a session of its own, stdout and stderr kept in temp files."""

    def __init__(self, args, cwd=PROJECT):
        self.args = list(args)
        self._out = tempfile.TemporaryFile()
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, SERVER_PY] + self.args,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self.known_children = set()

    @property
    def stderr(self):
        self._err.seek(0)
        return self._err.read().decode("utf-8", "replace")

    @property
    def stdout(self):
        self._out.seek(0)
        return self._out.read().decode("utf-8", "replace")

    def wait(self, timeout):
        return self.proc.wait(timeout)

    def send(self, signum):
        self.proc.send_signal(signum)

    def children(self):
        found = children_of(self.pid)
        self.known_children |= set(found)
        return found

    def kill(self):
        """Kill the server, its process group and every child we have seen; never raises."""
        pids = set(self.known_children)
        with contextlib.suppress(OSError):
            pids |= set(children_of(self.pid))
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # start_new_session: the group is the server's alone
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._out.close()
        self._err.close()


def server_args(port, database, cookie_secret=TEST_SECRET, extra=()):
    # No link previews: a story's links must never make a test reach past loopback.
    args = [
        "--port=%d" % port,
        "--address=127.0.0.1",
        "--mysql_database=%s" % database,
        "--link_previews=false",
    ]
    if cookie_secret is not None:
        args.append("--cookie_secret=%s" % cookie_secret)
    return args + list(extra)


def processes_of(args):
    """How many processes listen, from a --processes=N argument (0 = one per core)."""
    n = 1
    for arg in args:
        if arg.startswith("--processes="):
            n = int(arg.split("=", 1)[1]) or os.cpu_count()
    return n


def wait_until_healthy(server, port, timeout=20.0):
    """Poll until every process listens and /healthz answers 200; fails with the server's stderr
    when it dies or hangs."""
    listeners = processes_of(server.args)

    def healthy():
        if server.proc.poll() is not None:
            raise AssertionError(
                "server exited with %s before answering:\n%s" % (server.proc.returncode, server.stderr)
            )
        try:
            listening = len(tcp_sockets(port, "0A")) >= listeners
            return listening and get(port, "/healthz", timeout=2).status == 200
        except OSError:
            return False

    if not wait_until(healthy, timeout):
        raise AssertionError("server did not answer /healthz within %.0f s:\n%s" % (timeout, server.stderr))


@contextlib.contextmanager
def running_server(database, port=None, cookie_secret=TEST_SECRET, extra=(), cwd=PROJECT, timeout=20.0):
    """Start server.py, wait until /healthz answers, yield (server, port), always kill it."""
    port = port or free_port()
    server = ServerProcess(server_args(port, database, cookie_secret, extra), cwd=cwd)
    try:
        wait_until_healthy(server, port, timeout)
        yield server, port
    finally:
        server.kill()


def run_server(args, timeout=30.0, cwd=PROJECT):
    """Run server.py to completion (for runs that should stop by themselves): (rc, stdout, stderr)."""
    done = subprocess.run(
        [sys.executable, SERVER_PY] + list(args),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        start_new_session=True,
    )
    return done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")


# --- HTTP ----------------------------------------------------------------------------------


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # an http.client.HTTPMessage
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")


def get(port, path, headers=None, timeout=10):
    return request(port, "GET", path, headers=headers, timeout=timeout)


def request(port, method, path, body=None, headers=None, timeout=10):
    """One request on a new connection; redirects are not followed."""
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        con.request(method, path, body=body, headers=headers or {})
        r = con.getresponse()
        return Response(r.status, r.headers, r.read())
    finally:
        con.close()


class Browser:
    """A user against a server process: keeps cookies, sends _xsrf with every POST."""

    def __init__(self, port):
        self.port = port
        self.cookies = {}

    def _remember(self, response):
        for header in response.headers.get_all("Set-Cookie") or []:
            jar = http.cookies.SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or (morsel["expires"] and "1970" in morsel["expires"]):
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    def fetch(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = cookie_header(self.cookies)
        response = request(self.port, method, path, body=body, headers=headers)
        self._remember(response)
        return response

    def get(self, path):
        return self.fetch("GET", path)

    def form_body(self, data):
        if "_xsrf" not in self.cookies:
            self.get("/login")  # any page sets the _xsrf cookie
        return urllib.parse.urlencode(dict(data, _xsrf=self.cookies["_xsrf"]))

    def post(self, path, data):
        return self.fetch(
            "POST", path, self.form_body(data), {"Content-Type": "application/x-www-form-urlencoded"}
        )

    def register(self, username, password="correct horse"):
        return self.post("/register", {"username": username, "password": password, "confirm": password})


# --- /proc -------------------------------------------------------------------------------


def children_of(pid):
    """PIDs whose parent is pid (and that are not zombies)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


def is_alive(pid):
    """True while pid runs (a zombie waiting for its reaper counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def tcp_sockets(port, state):
    """Inodes of the TCP sockets with local port `port` in `state` ('0A' LISTEN, '01' ESTABLISHED)."""
    return set(unread_bytes(port, state))


def unread_bytes(port, state="01"):
    """{inode: bytes received but not yet read by the process} of the TCP sockets with local port
    `port` in `state` (/proc/net/tcp's rx_queue)."""
    queues = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                queues[fields[9]] = int(fields[4].split(":")[1], 16)
    return queues


def socket_inodes(pid):
    """Inodes of the sockets process pid holds open."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(OSError):
            target = os.readlink(os.path.join(fd_dir, fd))
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    return inodes
