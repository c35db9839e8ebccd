"""Upload benchmark: one large file over loopback to the running app's streamed upload route and,
in the same run, to a bare Tornado `@stream_request_body` handler that discards the bytes.

    .venv/bin/python bench/upload.py [--mb 1024] [--rounds 2]

Starts `server.py` on a database and an upload_dir of its own (both removed afterwards) and the
bare server (this file with --bare), uploads --mb MB as multipart/form-data from a client that
sends the same random 1 MB block over and over (so the client holds 1 MB, not the file), and
prints MB/s for both, the ratio, and each server's peak RSS growth during the upload (VmRSS from
/proc/<pid>/status, sampled every 20 ms). Targets: RSS growth under 64 MB, app >= 0.5x bare.

The app writes (and hashes) what it receives, so it can never beat the disk: the run also
measures that ceiling, the same size written and SHA-256-hashed in 1 MB blocks by a plain loop
into the same filesystem. Every upload starts with no dirty pages (os.sync() first) and the
stored file is deleted after each round (with its story), so rounds do not pay for each other.
"""

import argparse
import hashlib
import http.client
import http.cookies
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT)
BLOCK = 1024 * 1024
DATABASE = "storyhouse_bench_upload"


# --- the bare server (run as a process of its own) ------------------------------------------


def bare_server(port, directory):
    import asyncio

    import tornado.web
    from tornado.httpserver import HTTPServer

    @tornado.web.stream_request_body
    class Discard(tornado.web.RequestHandler):
        def prepare(self):
            self.received = 0

        def data_received(self, chunk):
            self.received += len(chunk)

        def post(self):
            self.write({"received": self.received})

    @tornado.web.stream_request_body
    class Write(Discard):
        """For reference only: the raw body written to a file as it comes (no parsing, no hash)."""

        def prepare(self):
            super().prepare()
            self.file = open(os.path.join(directory, "bare.bin"), "wb", buffering=0)

        def data_received(self, chunk):
            self.received += len(chunk)
            self.file.write(chunk)

        def post(self):
            self.file.close()
            os.unlink(self.file.name)
            super().post()

    async def main():
        app = tornado.web.Application([(r"/upload", Discard), (r"/upload-to-disk", Write)])
        server = HTTPServer(app, max_body_size=1 << 40)
        server.listen(port, "127.0.0.1")
        await asyncio.Event().wait()

    asyncio.run(main())


# --- helpers --------------------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("server exited early with %s" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server on port %d did not start" % port)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RssSampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, threading.Event()
        self.base = rss_kb(pid)

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_kb(self.pid))
            time.sleep(0.02)

    def growth_mb(self):
        self.stop.set()
        self.join()
        return max(0, self.peak - self.base) / 1024.0


class Session:
    """Cookies and the _xsrf token against the app, over http.client."""

    def __init__(self, port):
        self.port, self.cookies = port, {}

    def request(self, method, path, body=None, headers=None):
        con = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join("%s=%s" % kv for kv in self.cookies.items())
        con.request(method, path, body=body, headers=headers)
        r = con.getresponse()
        data = r.read()
        for header in r.headers.get_all("Set-Cookie") or []:
            jar = http.cookies.SimpleCookie()
            jar.load(header)
            self.cookies.update({k: m.value for k, m in jar.items()})
        con.close()
        return r.status, r.headers, data

    def post_form(self, path, data):
        if "_xsrf" not in self.cookies:
            self.request("GET", "/login")
        body = urllib.parse.urlencode(dict(data, _xsrf=self.cookies["_xsrf"]))
        return self.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"})


def multipart_parts(size, block):
    boundary = "----bench" + uuid.uuid4().hex
    head = (
        '--%s\r\nContent-Disposition: form-data; name="files"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n" % boundary
    ).encode()
    tail = ("\r\n--%s--\r\n" % boundary).encode()
    return boundary, head, tail


def disk_ceiling(directory, size, block):
    """MB/s of writing and hashing size bytes in block-sized writes, as the app does."""
    os.sync()
    path = os.path.join(directory, "ceiling.bin")
    started = time.perf_counter()
    digest = hashlib.sha256()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(size // len(block)):
            os.write(fd, block)
            digest.update(block)
    finally:
        os.close(fd)
    seconds = time.perf_counter() - started
    os.unlink(path)
    return size / BLOCK / seconds


def upload(port, path, size, block, headers):
    """Send a size-byte file in a multipart body; returns (seconds, status, response body)."""
    boundary, head, tail = multipart_parts(size, block)
    length = len(head) + size + len(tail)
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    con.putrequest("POST", path)
    for k, v in dict(headers, **{"Content-Type": "multipart/form-data; boundary=" + boundary}).items():
        con.putheader(k, v)
    con.putheader("Content-Length", str(length))
    con.endheaders()
    con.send(head)
    view = memoryview(block)
    sent = 0
    while sent < size:
        n = min(len(block), size - sent)
        con.sock.sendall(view[:n])
        sent += n
    con.send(tail)
    r = con.getresponse()
    data = r.read()
    elapsed = time.perf_counter() - started
    con.close()
    return elapsed, r.status, data


# --- the run ----------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=1024, help="file size in MB (default 1024)")
    parser.add_argument("--rounds", type=int, default=2, help="uploads to each server (best is reported)")
    parser.add_argument(
        "--dir",
        default=None,
        help="where the app's upload_dir goes (default: a temporary folder on the project's filesystem;"
        " /dev/shm takes the disk out of the measurement)",
    )
    parser.add_argument("--bare", type=int, help=argparse.SUPPRESS)  # internal: run the bare server
    args = parser.parse_args()
    if args.bare:
        return bare_server(args.bare, args.dir)

    size = args.mb * BLOCK
    block = os.urandom(BLOCK)
    expected = hashlib.sha256()
    for _ in range(size // BLOCK):
        expected.update(block)
    expected = expected.hexdigest()

    workdir = tempfile.mkdtemp(prefix="storyhouse-bench-", dir=args.dir or PROJECT)
    app_port, bare_port = free_port(), free_port()
    logs = open(os.path.join(workdir, "server.log"), "wb")
    app = subprocess.Popen(
        [
            sys.executable,
            os.path.join(PROJECT, "server.py"),
            "--port=%d" % app_port,
            "--address=127.0.0.1",
            "--mysql_database=" + DATABASE,
            "--upload_dir=" + os.path.join(workdir, "uploads"),
            "--max_upload_mb=%d" % (args.mb + 1),
            "--logging=warning",
        ],
        cwd=PROJECT,
        stdout=logs,
        stderr=logs,
    )
    bare = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--bare=%d" % bare_port, "--dir=" + workdir]
    )
    try:
        wait_for_port(app_port, app)
        wait_for_port(bare_port, bare)
        user = Session(app_port)
        name = "bench%d" % (os.getpid() % 100000)
        status, _, _ = user.post_form(
            "/register", {"username": name, "password": "benchmark pw", "confirm": "benchmark pw"}
        )
        assert status == 302, "register: %s" % status
        app_headers = {
            "Cookie": "; ".join("%s=%s" % kv for kv in user.cookies.items()),
            "X-XSRFToken": user.cookies["_xsrf"],
            "Accept": "application/json",
        }
        ceiling = disk_ceiling(workdir, size, block)
        print("disk ceiling  %7.1f MB/s  (write + SHA-256 in 1 MB blocks, same filesystem)" % ceiling)

        results = {"app": [], "bare": [], "bare+write": []}
        for round_ in range(args.rounds):
            status, headers, _ = user.post_form(
                "/story/new", {"title": "Round %d" % round_, "body": "Uploads."}
            )
            assert status == 302, "new story: %s" % status
            story_id = int(headers["Location"].rsplit("/", 1)[1])
            for which, port, proc, path, headers in (
                ("bare", bare_port, bare, "/upload", {}),
                ("bare+write", bare_port, bare, "/upload-to-disk", {}),
                ("app", app_port, app, "/story/%d/attachments" % story_id, app_headers),
            ):
                os.sync()  # no dirty pages from before
                sampler = RssSampler(proc.pid)
                sampler.start()
                seconds, status, body = upload(port, path, size, block, headers)
                growth = sampler.growth_mb()
                if which == "app":
                    assert status == 201, "app answered %s: %s" % (status, body[:300])
                    item = json.loads(body)["items"][0]
                    assert item["size"] == size and item["sha256"] == expected, "stored file differs"
                else:
                    assert status == 200 and json.loads(body)["received"] > size
                mbps = size / BLOCK / seconds
                results[which].append((mbps, growth))
                print(
                    "round %d  %-10s  %7.1f MB/s  %6.2f s  RSS growth %5.1f MB"
                    % (round_ + 1, which, mbps, seconds, growth)
                )
        app_best = max(m for m, _ in results["app"])
        bare_best = max(m for m, _ in results["bare"])
        app_rss = max(g for _, g in results["app"])
        print()
        print("file            %d MB, %d round(s), best of each" % (args.mb, args.rounds))
        print("bare handler    %.1f MB/s" % bare_best)
        print("app (to disk)   %.1f MB/s  (stored, SHA-256 checked)" % app_best)
        print("ratio           %.2fx  (target >= 0.5x)" % (app_best / bare_best))
        print("disk ceiling    %.1f MB/s  (app / ceiling %.2f)" % (ceiling, app_best / ceiling))
        write_best = max(m for m, _ in results["bare+write"])
        print(
            "bare + write    %.1f MB/s  (the raw body to a file, no parsing, no hash; app / this %.2f)"
            % (write_best, app_best / write_best)
        )
        print("app peak RSS    +%.1f MB  (target < 64 MB)" % app_rss)
    finally:
        for proc in (app, bare):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        logs.close()
        shutil.rmtree(workdir, ignore_errors=True)
        drop_database()


def drop_database():
    import config
    from models.db import open_connection

    config.parse([sys.argv[0]])
    settings = config.mysql_settings()
    settings.pop("database")
    con = open_connection(**settings)
    try:
        with con.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS " + DATABASE)
    finally:
        con.close()


if __name__ == "__main__":
    main()
