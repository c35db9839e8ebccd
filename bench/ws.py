"""Chat benchmark: N authenticated WebSocket connections to one Storyhouse server process, beside a
bare Tornado room (a `write_message` loop over a set of handlers) measured in the same run.

For each N: server RSS per connection, time to connect all N (each has its history and presence
frames), and broadcast latency (one message from a member until the last of the N has it: median
and max of 5). The client is a minimal asyncio WebSocket client in several processes.

    .venv/bin/python bench/ws.py                       # 1000, 5000, 10000; both servers
    .venv/bin/python bench/ws.py --counts=1000 --workers=2
    .venv/bin/python bench/ws.py --processes=2 --redis_url=redis://127.0.0.1:6379/0 --counts=20000

Sessions are written straight into a database of its own (storyhouse_bench_chat, dropped at the
end); cookies are signed with the server's --cookie_secret, as a browser would have them.
"""

import argparse
import asyncio
import base64
import hashlib
import multiprocessing
import os
import resource
import secrets
import selectors
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)
sys.path.insert(0, PROJECT)

SECRET = "bench-cookie-secret-" + "x" * 32
DATABASE = "storyhouse_bench_chat"
MEMBERS = 100  # distinct members; the N connections are their tabs, N / MEMBERS each
ROUNDS = 5


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def tree_rss_kb(pid):
    """RSS of a server and its children (--processes=N)."""
    total = rss_kb(pid)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        total += rss_kb(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return total


# --- sessions --------------------------------------------------------------------------------


def make_cookies(count):
    """MEMBERS members with `count` sessions between them: the signed session cookies."""
    import pymysql
    import tornado.web

    import config
    from models import migrate
    from models.db import connect_args

    config.parse(["bench"])
    s = dict(config.mysql_settings(), database=DATABASE)
    con = pymysql.connect(**connect_args(s["host"], s["port"], s["user"], s["password"]))
    with con.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS " + DATABASE)
    con.close()
    migrate.migrate(**s)
    con = pymysql.connect(**connect_args(s["host"], s["port"], s["user"], s["password"], DATABASE))
    cookies = []
    with con.cursor() as cur:
        cur.executemany(
            "INSERT INTO users (id, username, password_hash) VALUES (%s, %s, 'x')",
            [(i + 1, "member%03d" % i) for i in range(MEMBERS)],
        )
        rows = []
        for i in range(count):
            token = secrets.token_urlsafe(32)
            rows.append((hashlib.sha256(token.encode()).hexdigest(), i % MEMBERS + 1))
            cookies.append(tornado.web.create_signed_value(SECRET, "session", token, version=2).decode())
        cur.executemany(
            "INSERT INTO sessions (token_hash, user_id, expires_at) VALUES (%s, %s, NOW() + INTERVAL 1 DAY)",
            rows,
        )
    con.commit()
    con.close()
    return cookies


def drop_database():
    import pymysql

    import config
    from models.db import connect_args

    s = config.mysql_settings()
    con = pymysql.connect(**connect_args(s["host"], s["port"], s["user"], s["password"]))
    with con.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS " + DATABASE)
    con.close()


# --- a minimal WebSocket client ------------------------------------------------------------------


def client_frame(opcode, payload):
    """A masked client frame (RFC 6455 §5.3)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n <= 0xFFFF:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


class Client:
    def __init__(self, port, cookie, on_text):
        self.port = port
        self.cookie = cookie
        self.on_text = on_text
        self.reader = self.writer = None

    async def connect(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write(
            (
                "GET /chat/ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                "Cookie: session=%s\r\n\r\n" % (self.port, key, self.cookie)
            ).encode()
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode())

    async def read_frame(self):
        b1, b2 = await self.reader.readexactly(2)
        n = b2 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return b1 & 0x0F, await self.reader.readexactly(n)

    async def run(self):
        try:
            while True:
                opcode, payload = await self.read_frame()
                if opcode == 0x1:
                    self.on_text(payload)
                elif opcode == 0x9:  # ping → pong, or the server drops us
                    self.writer.write(client_frame(0xA, payload))
                elif opcode == 0x8:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return

    def send_text(self, text):
        self.writer.write(client_frame(0x1, text.encode()))

    def close(self):
        self.writer.close()


# --- worker processes -----------------------------------------------------------------------------
# Plain non-blocking sockets on a selector, not asyncio: a client process must read a broadcast on
# thousands of sockets faster than the server writes it, or the benchmark measures the client.


class Conn:
    __slots__ = ("sock", "cookie", "stage", "buf", "tail", "done")

    def __init__(self, sock, cookie):
        self.sock = sock
        self.cookie = cookie
        self.stage = "connecting"
        self.buf = b""
        self.tail = b""
        self.done = False


PING = b"\x89\x00"  # Tornado's pings carry no payload; 0x89 0x00 never occurs in JSON text


def pong(sock):
    sock.send(b"\x8a\x80" + os.urandom(4))  # a masked, empty pong


def worker(pipe, port, cookies, concurrency, bare):
    raise_nofile()
    sel = selectors.DefaultSelector()
    n = len(cookies)
    pending = list(cookies)
    conns = []
    in_flight = joined = retries = 0
    pipe.recv()  # "go"
    t0 = time.monotonic()
    while joined < n:
        while pending and in_flight < concurrency:
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            c = Conn(sock, pending.pop())
            c.buf = (
                "GET /chat/ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                "Cookie: session=%s\r\n\r\n" % (port, base64.b64encode(os.urandom(16)).decode(), c.cookie)
            ).encode()
            sel.register(sock, selectors.EVENT_WRITE, c)
            conns.append(c)
            in_flight += 1
        for key, _ in sel.select(1.0):
            c = key.data
            try:
                if c.stage == "connecting":
                    c.sock.send(c.buf)
                    c.buf = b""
                    c.stage = "handshake"
                    sel.modify(c.sock, selectors.EVENT_READ, c)
                    continue
                data = c.sock.recv(262144)
            except ConnectionError:
                data = b""
            if not data:  # refused under load (a full accept queue): that one tries again
                if c.stage == "open" or retries >= n:
                    why = "an open connection closed" if c.stage == "open" else "too many refused handshakes"
                    pipe.send(("error", why))
                    return
                retries += 1
                sel.unregister(c.sock)
                c.sock.close()
                conns.remove(c)
                pending.append(c.cookie)
                in_flight -= 1
                continue
            if c.stage == "open":  # joined already: only pings matter until the rounds
                if PING in data:
                    pong(c.sock)
                continue
            if PING in data:
                pong(c.sock)
            c.buf += data
            if c.stage == "handshake" and b"\r\n\r\n" in c.buf:
                if not c.buf.startswith(b"HTTP/1.1 101"):
                    pipe.send(("error", c.buf.split(b"\r\n", 1)[0].decode()))
                    return
                c.stage = "opening"
            if c.stage == "opening" and (bare or b'{"type":"presence"' in c.buf):
                c.stage = "open"
                c.buf = b""
                joined += 1
                in_flight -= 1
    pipe.send(("connected", time.monotonic() - t0, retries))

    def wait_for_coordinator():
        # Other workers may still be connecting: keep answering pings, or the server drops us.
        while not pipe.poll(0.05):
            for key, _ in sel.select(0.05):
                data = key.data.sock.recv(262144)
                if data and PING in data:
                    pong(key.data.sock)
        return pipe.recv()

    while True:
        tag = wait_for_coordinator()
        if tag == "stop":
            break
        tag = tag.encode()
        for c in conns:
            c.done = False
            c.tail = b""
        count, last = 0, 0.0
        pipe.send(("armed",))
        while count < n:
            for key, _ in sel.select(5.0):
                c = key.data
                data = c.sock.recv(262144)
                if not data:
                    pipe.send(("error", "a connection closed"))
                    return
                if PING in data:
                    pong(c.sock)
                if not c.done and tag in c.tail + data:
                    c.done = True
                    count += 1
                    last = time.monotonic()
                c.tail = data[-len(tag) :]
        pipe.send(("round", last))
    for c in conns:
        c.sock.close()
    pipe.send(("closed",))


# --- servers -------------------------------------------------------------------------------------


def bare_server(port):
    """A bare Tornado room: a set of handlers and a write_message loop, nothing else."""
    raise_nofile()
    import tornado.ioloop
    import tornado.web
    import tornado.websocket

    class Room(tornado.websocket.WebSocketHandler):
        waiters = set()

        def open(self):
            Room.waiters.add(self)

        def on_close(self):
            Room.waiters.discard(self)

        def on_message(self, message):
            for waiter in Room.waiters:
                waiter.write_message(message)

    async def main():
        app = tornado.web.Application([(r"/chat/ws", Room)])
        app.listen(port, "127.0.0.1")
        await asyncio.Event().wait()

    asyncio.run(main())


def start_server(kind, port, args):
    env = dict(os.environ)
    if kind == "bare":
        cmd = [sys.executable, os.path.abspath(__file__), "--bare-server=%d" % port]
    else:
        cmd = [
            sys.executable,
            os.path.join(PROJECT, "server.py"),
            "--port=%d" % port,
            "--address=127.0.0.1",
            "--mysql_database=" + DATABASE,
            "--cookie_secret=" + SECRET,
            "--logging=" + args.server_logging,
            "--processes=%d" % args.processes,
        ]
        if args.redis_url:
            cmd += ["--redis_url=" + args.redis_url, "--chat_redis_prefix=bench%d" % os.getpid()]
    proc = subprocess.Popen(cmd, cwd=PROJECT, env=env, preexec_fn=raise_nofile, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            time.sleep(1.0 if args.processes > 1 else 0.3)  # every child listening, settled
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the %s server did not start" % kind)


def stop_server(proc):
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(kind, count, cookies, sender_cookie, args):
    port = free_port()
    server = start_server(kind, port, args)
    try:
        time.sleep(0.5)
        rss_before = tree_rss_kb(server.pid)
        workers = min(args.workers, count)
        per = [cookies[i::workers] for i in range(workers)]
        pipes, procs = [], []
        ctx = multiprocessing.get_context("fork")
        for share in per:
            mine, theirs = ctx.Pipe()
            p = ctx.Process(target=worker, args=(theirs, port, share, args.concurrency, kind == "bare"))
            p.start()
            pipes.append(mine)
            procs.append(p)
        for pipe in pipes:
            pipe.send("go")
        connect_times = []
        retried = 0
        for pipe in pipes:
            reply = pipe.recv()
            if reply[0] == "error":
                raise SystemExit("%s, N=%d: %s" % (kind, count, reply[1]))
            connect_times.append(reply[1])
            retried += reply[2]
        time.sleep(1.0)
        rss_after = tree_rss_kb(server.pid)

        # One more member's connection sends; the others receive.
        async def rounds():
            sender = Client(port, sender_cookie, lambda payload: None)
            await sender.connect()
            reader = asyncio.create_task(sender.run())
            latencies = []
            loop = asyncio.get_running_loop()
            for r in range(ROUNDS):
                tag = "bench-%d-%d." % (count, r)
                for pipe in pipes:
                    pipe.send(tag)
                for pipe in pipes:
                    await loop.run_in_executor(None, pipe.recv)  # armed
                t0 = time.monotonic()
                sender.send_text('{"body": "%s"}' % tag)
                replies = [await loop.run_in_executor(None, pipe.recv) for pipe in pipes]
                failed = [r[1] for r in replies if r[0] != "round"]
                if failed:
                    raise SystemExit("%s, N=%d: %s" % (kind, count, failed[0]))
                lasts = [r[1] for r in replies]
                latencies.append(max(lasts) - t0)
                await asyncio.sleep(1.0)  # under the rate limit, and a calm loop between rounds
            sender.close()
            reader.cancel()
            return latencies

        latencies = asyncio.run(rounds())
        for pipe in pipes:
            pipe.send("stop")
        for pipe in pipes:
            pipe.recv()
        for p in procs:
            p.join(10)
        return {
            "kind": kind,
            "count": count,
            "rss_per_conn_kb": (rss_after - rss_before) / count,
            "rss_mb": rss_after / 1024,
            "connect_s": max(connect_times),
            "median_ms": statistics.median(latencies) * 1000,
            "max_ms": max(latencies) * 1000,
            "retried": retried,
        }
    finally:
        stop_server(server)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", default="1000,5000,10000")
    parser.add_argument("--workers", type=int, default=4, help="client processes")
    parser.add_argument("--concurrency", type=int, default=25, help="handshakes in flight per worker")
    parser.add_argument("--processes", type=int, default=1, help="Storyhouse server processes")
    parser.add_argument("--redis_url", default="")
    parser.add_argument("--server_logging", default="warning", help="the servers' --logging")
    parser.add_argument("--only", choices=["storyhouse", "bare"], default=None)
    parser.add_argument("--bare-server", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        return bare_server(args.bare_server)
    raise_nofile()
    counts = [int(c) for c in args.counts.split(",")]
    cookies = make_cookies(max(counts) + 1)
    results = []
    try:
        for count in counts:
            for kind in ("bare", "storyhouse"):
                if args.only and kind != args.only:
                    continue
                r = measure(kind, count, cookies[:count], cookies[-1], args)
                results.append(r)
                print(
                    "%-10s N=%5d  RSS %6.1f MB  %5.1f KB/conn  connect %5.2f s  broadcast median %6.1f ms"
                    "  max %6.1f ms  (%d handshakes retried)"
                    % (
                        r["kind"],
                        r["count"],
                        r["rss_mb"],
                        r["rss_per_conn_kb"],
                        r["connect_s"],
                        r["median_ms"],
                        r["max_ms"],
                        r["retried"],
                    ),
                    flush=True,
                )
    finally:
        drop_database()
    print()
    print("| server | connections | server RSS | RSS per connection | connect all | broadcast median | max |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            "| %s | %d | %.0f MB | %.1f KB | %.2f s | %.0f ms | %.0f ms |"
            % (
                r["kind"],
                r["count"],
                r["rss_mb"],
                r["rss_per_conn_kb"],
                r["connect_s"],
                r["median_ms"],
                r["max_ms"],
            )
        )


if __name__ == "__main__":
    main()
