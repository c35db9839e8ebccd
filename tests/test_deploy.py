"""deploy/ for real: Debian's nginx with the site file from deploy/ (only ports, paths and the
server name replaced), in front of two server.py processes on loopback that share a cookie secret,
one database and Redis. Pages, register/login, an upload and its download, and chat between the
two backends work through it; the app records the client's address, not nginx's; nginx serves
/static/ itself with a year's cache for ?v= URLs; its body limit matches --max_upload_mb; text is
gzipped (pages by the app, CSS and JS by nginx) and uploaded files never are.

nginx runs as a private instance (`-p tmpdir -c conf`, its own pid and logs, a free loopback
port): /etc/nginx and port 80 are never touched. Without /usr/sbin/nginx the tests skip, unless
STORYHOUSE_REQUIRE_NGINX=1 (set by .ci/run) makes that a failure."""

import asyncio
import contextlib
import grp
import http.client
import http.cookies
import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import uuid

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from tests import serverproc as sp
from tests.helpers import cookie_header, multipart, wait_until

NGINX = "/usr/sbin/nginx"
SITE = os.path.join(sp.PROJECT, "deploy", "nginx-storyhouse.conf")
DB = sp.database_name("deploy")
REDIS_URL = "redis://127.0.0.1:6379/0"
CLIENT_IP = "127.0.0.3"  # a client connecting straight to nginx (all of 127/8 is loopback)
BALANCER_IP = "127.0.0.2"  # an outer load balancer nginx trusts (set_real_ip_from) in this test
WAIT = 10

if not os.access(NGINX, os.X_OK):
    if os.environ.get("STORYHOUSE_REQUIRE_NGINX"):
        pytest.fail("STORYHOUSE_REQUIRE_NGINX is set but %s is missing (apt-get install nginx)." % NGINX)
    pytest.skip(
        "Debian's nginx (%s) is not installed, so the deploy test is skipped." % NGINX,
        allow_module_level=True,
    )


# --- the site file, rendered for a private nginx -------------------------------------------------


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def replace_once(text, old, new):
    assert text.count(old) == 1, "deploy site file: expected %r exactly once" % old
    return text.replace(old, new)


def render_site(listen_port, backends, static_dir):
    site = read(SITE)
    site = replace_once(site, "server 127.0.0.1:8001 ", "server 127.0.0.1:%d " % backends[0])
    site = replace_once(site, "server 127.0.0.1:8002 ", "server 127.0.0.1:%d " % backends[1])
    site = replace_once(site, "listen 80;", "listen 127.0.0.1:%d;" % listen_port)
    site = replace_once(site, "listen [::]:80;", "")
    site = replace_once(site, "server_name stories.example.org;", "server_name 127.0.0.1;")
    site = replace_once(site, "alias /srv/storyhouse/static/;", "alias %s/;" % static_dir)
    # The site's documented option for an outer load balancer, turned on for one address.
    site = replace_once(site, "# set_real_ip_from 10.0.0.0/8;", "set_real_ip_from %s/32;" % BALANCER_IP)
    site = replace_once(site, "# real_ip_header X-Forwarded-For;", "real_ip_header X-Forwarded-For;")
    return site


def nginx_conf(tmp, site_path):
    # The workers run as whoever runs the suite, so they read the checkout wherever it lies (a 0700
    # home directory included). A root master would otherwise drop them to nobody; a non-root master
    # keeps its own user anyway (and ignores `user`, with a warning).
    user = ""
    if os.geteuid() == 0:
        user = "user %s %s;\n" % (pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name)
    return """%sdaemon off;
master_process on;
worker_processes 1;
pid %s/nginx.pid;
error_log %s/error.log info;
events { worker_connections 256; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    gzip on;  # as in Debian's /etc/nginx/nginx.conf: the site file must decide for itself
    gzip_types text/plain text/css application/json application/javascript text/xml application/xml;
    access_log %s/access.log;
    client_body_temp_path %s/body;
    proxy_temp_path %s/proxy;
    fastcgi_temp_path %s/fastcgi;
    uwsgi_temp_path %s/uwsgi;
    scgi_temp_path %s/scgi;
    include %s;
}
""" % ((user,) + (tmp,) * 8 + (site_path,))


@contextlib.contextmanager
def running_nginx(backends, static_dir=os.path.join(sp.PROJECT, "static")):
    tmp = tempfile.mkdtemp(prefix="storyhouse-nginx-")  # 0700: the workers are the suite's own user
    port = sp.free_port()
    site_path = os.path.join(tmp, "storyhouse.conf")
    with open(site_path, "w") as f:
        f.write(render_site(port, backends, static_dir))
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(nginx_conf(tmp, site_path))
    proc = subprocess.Popen(
        [NGINX, "-p", tmp, "-c", conf, "-e", os.path.join(tmp, "error.log")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        if not wait_until(lambda: proc.poll() is not None or not sp.port_is_free(port), 10):
            raise AssertionError("nginx did not listen on %d" % port)
        if proc.poll() is not None:
            raise AssertionError("nginx exited: %s" % proc.stderr.read().decode())
        yield port, tmp
    finally:
        proc.terminate()  # nginx's fast shutdown
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(5)
        proc.stderr.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def site():
    """(nginx port, backend A, backend B, nginx's temp dir) for the module."""
    sp.drop_databases(DB)
    extra = [
        "--xheaders",
        "--redis_url=" + REDIS_URL,
        "--chat_redis_prefix=shdeploy_%d_%s" % (os.getpid(), uuid.uuid4().hex[:8]),
        "--upload_dir=" + tempfile.mkdtemp(prefix="storyhouse-shared-uploads-"),  # shared by both
    ]
    upload_dir = extra[-1].split("=", 1)[1]
    try:
        # One after the other: the first creates and migrates the database.
        with (
            sp.running_server(DB, extra=extra) as (a, port_a),
            sp.running_server(DB, extra=extra) as (b, port_b),
        ):
            with running_nginx([port_a, port_b]) as (port, tmp):
                yield dict(port=port, a=a, b=b, tmp=tmp)
    finally:
        shutil.rmtree(upload_dir, ignore_errors=True)
        sp.drop_databases(DB)


# --- a client that connects from a chosen loopback address -----------------------------------------


class Browser(sp.Browser):
    def __init__(self, port, source=CLIENT_IP, forwarded_for=None):
        super().__init__(port)
        self.source = source
        self.forwarded_for = forwarded_for

    def fetch(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        headers.setdefault("Host", "127.0.0.1:%d" % self.port)
        if self.forwarded_for:
            headers["X-Forwarded-For"] = self.forwarded_for
        if self.cookies:
            headers["Cookie"] = cookie_header(self.cookies)
        con = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20, source_address=(self.source, 0))
        try:
            con.request(method, path, body=body, headers=headers)
            r = con.getresponse()
            response = sp.Response(r.status, r.headers, r.read())
        finally:
            con.close()
        self._remember(response)
        return response


def member(port, name, **kwargs):
    browser = Browser(port, **kwargs)
    r = browser.register(name)
    assert r.status == 302, r.text
    return browser


def session_ips(browser):
    page = browser.get("/account")
    assert page.status == 200, page.status
    return re.findall(r"<td>([0-9a-f.:]+)</td>", page.text)


def backend_log(site):
    return site["a"].stderr + site["b"].stderr


# --- the tests --------------------------------------------------------------------------------


def test_the_site_file_limits_bodies_to_max_upload_mb():
    import config

    config.parse(["pytest"])
    size = re.search(r"^\s*client_max_body_size (\d+)m;", read(SITE), re.M)
    assert size, "no client_max_body_size in the site file"
    assert int(size.group(1)) == config.options.max_upload_mb + 1  # the files plus the multipart envelope


def test_pages_and_login_through_nginx(site):
    port = site["port"]
    home = Browser(port).get("/")
    assert home.status == 200 and "Storyhouse" in home.text
    assert home.headers["Content-Security-Policy"]  # the app's headers pass through
    name = "dep_%s" % uuid.uuid4().hex[:6]
    member(port, name)
    browser = Browser(port)
    r = browser.post("/login", {"username": name, "password": "correct horse"})
    assert (r.status, r.headers["Location"]) == (302, "/")
    assert name in browser.get("/").text  # the session is good on whichever backend answers
    for _ in range(4):  # round robin: both backends see the cookie (one cookie_secret, one MySQL)
        assert browser.get("/account").status == 200
    log = backend_log(site)
    assert "GET /account" in site["a"].stderr and "GET /account" in site["b"].stderr, log


def test_the_app_records_the_clients_address_not_nginxs(site):
    port = site["port"]
    # A client straight at nginx: its own address counts, a forged X-Forwarded-For does not.
    direct = member(port, "dep_ip_%s" % uuid.uuid4().hex[:6], forwarded_for="198.51.100.9")
    assert session_ips(direct) == [CLIENT_IP]
    # Through a load balancer nginx trusts (set_real_ip_from): the address it forwards counts.
    behind = member(port, "dep_lb_%s" % uuid.uuid4().hex[:6], source=BALANCER_IP, forwarded_for="203.0.113.7")
    assert session_ips(behind) == ["203.0.113.7"]
    # nginx itself connects from 127.0.0.1: without --xheaders every session would show that.
    assert "(%s)" % CLIENT_IP in backend_log(site) and "(203.0.113.7)" in backend_log(site)


def test_static_files_are_served_by_nginx_with_a_long_cache_for_versioned_urls(site):
    port = site["port"]
    page = Browser(port).get("/").text
    urls = re.findall(r'"(/static/[^"?]+\?v=[0-9a-f]+)"', page)
    assert urls, "no versioned static URL on the index"
    for url in urls[:3]:
        r = Browser(port).get(url)
        assert r.status == 200
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.body == read(os.path.join(sp.PROJECT, url.split("?")[0].lstrip("/")), "rb")
    plain = Browser(port).get(urls[0].split("?")[0])
    assert plain.status == 200 and plain.headers["Cache-Control"] == "no-cache"
    assert "/static/" not in backend_log(site)  # nginx answered them all itself


def test_static_files_are_served_from_a_checkout_only_its_owner_can_read():
    """A checkout in a private home directory (0700, files 0600 as a clone under umask 077 makes
    them): the test's nginx still serves it, whoever runs the suite (issue 19)."""
    home = tempfile.mkdtemp(prefix="storyhouse-private-home-")  # 0700
    try:
        static = os.path.join(home, "checkout", "static")
        shutil.copytree(os.path.join(sp.PROJECT, "static"), static)
        for folder, _dirs, files in os.walk(os.path.dirname(static)):
            os.chmod(folder, 0o700)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o600)
        # No backend is needed for /static/: the upstream ports only have to parse.
        with running_nginx([sp.free_port(), sp.free_port()], static) as (port, tmp):
            for name in ("css/site.css", "js/chat.js"):
                r = Browser(port).get("/static/%s?v=1" % name)
                assert r.status == 200, "%s: %s\n%s" % (name, r.status, read(os.path.join(tmp, "error.log")))
                assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
                assert r.body == read(os.path.join(static, name), "rb")
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_upload_and_download_through_nginx(site):
    port = site["port"]
    author = member(port, "dep_up_%s" % uuid.uuid4().hex[:6])
    r = author.post("/story/new", {"title": "Through nginx", "body": "With a file."})
    assert r.status == 302, r.text
    story_path = r.headers["Location"]
    data = os.urandom(3 * 1024 * 1024 + 17)  # several of nginx's buffers and the app's chunks
    ctype, body = multipart([("noise.bin", data)])
    headers = {"Content-Type": ctype, "X-XSRFToken": author.cookies["_xsrf"], "Accept": "application/json"}
    r = author.fetch("POST", story_path + "/attachments", body, headers)
    assert r.status == 201, r.text
    items = json.loads(r.body)["items"]
    assert [i["filename"] for i in items] == ["noise.bin"]
    url = urllib.parse.urlsplit(items[0]["url"]).path
    for _ in range(2):  # each backend serves it from the shared upload_dir
        got = Browser(port).get(url)
        assert got.status == 200 and got.body == data
    # Without the token nginx passes the refusal through, before the body is stored.
    ctype, body = multipart([("x.bin", b"x")])
    r = author.fetch(
        "POST", story_path + "/attachments", body, {"Content-Type": ctype, "Accept": "application/json"}
    )
    assert r.status == 403
    # Just over --max_upload_mb: the app's own 413 and sentence (nginx lets it through) ...
    over_app = author.fetch(
        "POST",
        story_path + "/attachments",
        None,
        dict(headers, **{"Content-Length": str(50 * 2**20 + 2**17)}),
    )
    assert over_app.status == 413 and "50 MB" in json.loads(over_app.body)["error"]["message"], over_app.text
    # ... past client_max_body_size, nginx's 413 before the app sees anything.
    over_nginx = author.fetch(
        "POST", story_path + "/attachments", None, dict(headers, **{"Content-Length": str(52 * 2**20)})
    )
    assert over_nginx.status == 413 and "nginx" in over_nginx.text, over_nginx.text


def test_text_is_compressed_through_nginx_and_uploaded_files_never(site):
    """Issue 14, item 10: pages and JSON gzipped by the app, CSS and JS by nginx, all unpacked to
    the same bytes; an attachment (text, image, archive) and a partial answer go out as stored."""
    import gzip

    port = site["port"]
    gz = {"Accept-Encoding": "gzip"}
    author = member(port, "dep_gz_%s" % uuid.uuid4().hex[:6])
    r = author.post("/story/new", {"title": "Packed", "body": "Words to pack. " * 300})
    assert r.status == 302, r.text
    story_path = r.headers["Location"]
    static = re.findall(r'"(/static/[^"?]+\.(?:css|js)\?v=[0-9a-f]+)"', Browser(port).get("/").text)
    assert static
    api_path = "/api/stories/" + story_path.rsplit("/", 1)[1]
    for path in [story_path, story_path, api_path, "/"] + static:
        packed = author.fetch("GET", path, headers=gz)
        assert packed.status == 200, path
        assert packed.headers["Content-Encoding"] == "gzip", path
        assert "Accept-Encoding" in (packed.headers["Vary"] or ""), path
        plain = author.fetch("GET", path)
        assert "Content-Encoding" not in plain.headers, path
        unpacked = gzip.decompress(packed.body)
        if path.startswith("/static/"):
            assert (
                unpacked == plain.body == read(os.path.join(sp.PROJECT, path.split("?")[0].lstrip("/")), "rb")
            )
        else:
            assert len(unpacked) > 1024 and unpacked[:5] == plain.body[:5], path
    # nginx ignores Range when it compresses (a 200 with the whole file); a 206 is never packed.
    part = author.fetch("GET", static[0], headers=dict(gz, Range="bytes=0-99"))
    whole = read(os.path.join(sp.PROJECT, static[0].split("?")[0].lstrip("/")), "rb")
    if part.status == 206:
        assert "Content-Encoding" not in part.headers and part.body == whole[:100]
    else:
        assert part.status == 200 and gzip.decompress(part.body) == whole

    text = ("a line of plain text\n" * 300).encode()
    files = [("notes.txt", text), ("page.html", b"<p>" + text), ("pic.png", b"\x89PNG\r\n\x1a\n" + text)]
    files.append(("bundle.tar.gz", gzip.compress(text)))
    ctype, body = multipart(files)
    r = author.fetch(
        "POST",
        story_path + "/attachments",
        body,
        {
            "Content-Type": ctype,
            "X-XSRFToken": author.cookies["_xsrf"],
            "Accept": "application/json",
        },
    )
    assert r.status == 201, r.text
    items = json.loads(r.body)["items"]
    assert [i["filename"] for i in items] == [name for name, _ in files]
    for item, (name, data) in zip(items, files, strict=True):
        url = urllib.parse.urlsplit(item["url"]).path
        for _ in range(2):  # both backends
            got = Browser(port).fetch("GET", url, headers=gz)
            assert got.status == 200 and "Content-Encoding" not in got.headers, name
            assert got.body == data, name


async def joined(port, cookies, source=CLIENT_IP):
    url = "ws://127.0.0.1:%d/chat/ws" % port
    ws = await websocket_connect(HTTPRequest(url, headers={"Cookie": cookie_header(cookies)}))
    kinds = [json.loads(await ws.read_message())["type"] for _ in range(2)]
    assert kinds == ["history", "presence"], kinds
    return ws


async def until_message(ws, body, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = await asyncio.wait_for(ws.read_message(), max(0.01, deadline - time.monotonic()))
        assert raw is not None, "socket closed (%s)" % ws.close_code
        frame = json.loads(raw)
        if frame["type"] == "message" and frame["body"] == body:
            return frame
    raise AssertionError("no message %r" % body)


@pytest.mark.gen_test(timeout=30)
async def test_chat_through_nginx_across_the_two_backends(site):
    port = site["port"]
    ann = member(port, "dep_ann_%s" % uuid.uuid4().hex[:6]).cookies
    ben = member(port, "dep_ben_%s" % uuid.uuid4().hex[:6]).cookies
    # Round robin: four sockets land on both backends (checked in their logs below).
    sockets = [await joined(port, c) for c in (ann, ben, ann, ben)]
    try:
        assert site["a"].stderr.count("GET /chat/ws") >= 1 and site["b"].stderr.count("GET /chat/ws") >= 1
        for i, sender in enumerate(sockets):
            body = "hello %d through nginx" % i
            sender.write_message(json.dumps({"body": body}))
            for receiver in sockets:
                await until_message(receiver, body)
    finally:
        for ws in sockets:
            ws.close()


def test_an_author_sees_their_edit_on_every_backend_at_once(site):
    """Read-your-writes through the load balancer: after an edit, whichever backend answers shows
    the new text (both had the story and the index in their page cache; the write reaches the
    other process through the Redis bus)."""
    port = site["port"]
    author = member(port, "dep_edit_%s" % uuid.uuid4().hex[:6])
    r = author.post("/story/new", {"title": "Before the edit", "body": "First words."})
    assert r.status == 302, r.text
    story = r.headers["Location"]
    for path in (story, story, "/", "/"):  # round robin: both backends read both pages (and cache them)
        assert "Before the edit" in author.get(path).text
    r = author.post(story + "/edit", {"title": "After the edit", "body": "New words."})
    assert (r.status, r.headers["Location"]) == (302, story)
    seen = [("After the edit" in author.get(path).text) for path in (story, story, "/", "/")]
    assert seen == [True] * 4, "a backend served the story as it was before the edit: %s" % seen
