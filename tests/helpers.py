"""Small helpers shared by test modules: the test database, reading a response (its text, form
fields, cookies, the site's error page and security headers), a browser on another address,
multipart uploads, and waiting for a condition instead of sleeping."""

import asyncio
import datetime
import hashlib
import http.cookies
import inspect
import os
import re
import time
import urllib.parse
import uuid

import pymysql
from tornado.escape import xhtml_escape

from models.db import connect_args

PASSWORD = "correct horse"  # what Client.register and the `member` fixture use
OTHER_IP = "127.0.0.2"  # all of 127/8 is loopback: a second "machine" for per-IP checks

CSP = (
    "default-src 'self'; img-src 'self' https: data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
XSRF_MESSAGE = "This form has expired or came from another site. Reload the page and try again."
# The English heading of each error page (the status line's reason, as the site words it).
ERROR_TITLES = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    507: "Insufficient Storage",
}


# --- the test database ------------------------------------------------------------------------


def raw_connection(settings, database=None):
    """A plain pymysql connection of the test's own (not the app's pool)."""
    s = settings
    return pymysql.connect(**connect_args(s["host"], s["port"], s["user"], s["password"], database))


def query(db_settings, sql, params=()):
    """Rows (dicts) of one statement, run on a connection of the test's own."""
    con = raw_connection(db_settings, db_settings["database"])
    try:
        with con.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        con.close()


def count(db_settings, table, where="1", params=()):
    """Rows of `table` (a name written in the test, never input) matching `where`."""
    sql = "SELECT COUNT(*) AS n FROM %s WHERE %s" % (table, where)  # noqa: S608
    return query(db_settings, sql, params)[0]["n"]


# --- responses and pages ----------------------------------------------------------------------


def text(response):
    return response.body.decode("utf-8")


def set_cookie(response, name):
    """The Set-Cookie of `name` in a response, as a Morsel, or None."""
    for header in response.headers.get_list("Set-Cookie"):
        jar = http.cookies.SimpleCookie()
        jar.load(header)
        if name in jar:
            return jar[name]
    return None


def cookie_header(cookies):
    """A Cookie header's value for a {name: value} dict."""
    return "; ".join("%s=%s" % kv for kv in cookies.items())


def assert_error_page(response, status, message=None):
    """The site's HTML error page for `status` (its layout, not Tornado's bare page, never a
    traceback), showing `message` (plain text, compared HTML-escaped) as its paragraph. Returns
    the page."""
    page = text(response)
    assert response.code == status, (response.code, page[:300])
    assert response.headers["Content-Type"].startswith("text/html")
    assert page.lstrip().lower().startswith("<!doctype html>")
    assert 'class="brand"><strong>Storyhouse</strong>' in page  # the header of the layout
    assert "<title>%d %s" % (status, ERROR_TITLES[status]) in page, page[:500]
    assert "<h1>%d · %s</h1>" % (status, ERROR_TITLES[status]) in page, page
    assert "Traceback" not in page
    if message is not None:
        assert "<p>%s</p>" % xhtml_escape(message) in page, page
    return page


def assert_security_headers(response, https=False):
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get_list(name) == [value], (name, response.code, response.effective_url)
    if https:
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    else:
        assert "Strict-Transport-Security" not in response.headers


def field_errors(page):
    """{field: message} for every message shown next to a field."""
    return dict(re.findall(r'<small id="error-(\w+)" class="field-error">(.*?)</small>', page, re.S))


def field_error(page, field):
    """The message shown next to one field, or None."""
    return field_errors(page).get(field)


def flash(page):
    m = re.search(r'<p class="flash" role="status">(.*?)</p>', page, re.S)
    return m and m.group(1)


def input_value(page, name):
    """The (still HTML-escaped) value attribute of a field of the page's form (in <main>: the
    header's menu has forms of its own, the theme form's `next` among them)."""
    main = page[page.index("<main") :] if "<main" in page else page
    m = re.search(r'<input[^>]* name="%s" value="([^"]*)"' % re.escape(name), main)
    assert m, "no input named %r" % name
    return m.group(1)


def utcnow():
    return datetime.datetime.now(datetime.UTC)


# --- a browser (tests.conftest.Client) from another address ------------------------------------


async def post_from(client, path, data, ip=None, user_agent=None):
    """A form POST like Client.post, but optionally from another source IP and User-Agent."""
    if not client.xsrf:
        await client.get("/login")
    body = urllib.parse.urlencode(list(data.items()) + [("_xsrf", client.xsrf)])
    headers = {"User-Agent": user_agent} if user_agent is not None else {}
    return await client.fetch(path, "POST", body, headers=headers, network_interface=ip)


async def login_from(client, username="alice", password=PASSWORD, ip=None, user_agent=None):
    return await post_from(
        client, "/login", {"username": username, "password": password}, ip=ip, user_agent=user_agent
    )


async def is_logged_in(client):
    """True when /account opens; False when it redirects to the login page."""
    r = await client.get("/account")
    assert r.code in (200, 302), r.code
    if r.code == 302:
        assert r.headers["Location"] == "/login?next=%2Faccount"
    return r.code == 200


# --- uploads ------------------------------------------------------------------------------------

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4"
    b"\x89\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99=\x1d\x00\x00\x00\x00IEND"
    b"\xaeB`\x82"
)


def binary(size):
    """`size` bytes that look random but are the same on every run (SHAKE-256 of a fixed seed) and
    match no content-type signature (checked below), so they are always application/octet-stream:
    random bytes start like JSON or another type about once in 200 runs."""
    return hashlib.shake_256(b"storyhouse").digest(size)


def multipart(files, field="files", extra=()):
    """(content type, body) for files [(filename, bytes)] (filename may be str or raw bytes)."""
    boundary = "----storyhouse" + uuid.uuid4().hex
    out = []
    for name, value in extra:
        out.append(('--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n' % (boundary, name)).encode())
        out.append(value.encode() + b"\r\n")
    for filename, data in files:
        raw = filename if isinstance(filename, bytes) else filename.encode("utf-8")
        raw = raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        out.append(
            b'--%s\r\nContent-Disposition: form-data; name="%s"; filename="%s"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n" % (boundary.encode(), field.encode(), raw)
        )
        out.append(data + b"\r\n")
    out.append(("--%s--\r\n" % boundary).encode())
    return "multipart/form-data; boundary=" + boundary, b"".join(out)


async def upload(client, story_id, files, json=True, xsrf="header", headers=None):
    ctype, body = multipart(files)
    if not client.xsrf:
        await client.get("/login")
    h = {"Content-Type": ctype}
    path = "/story/%d/attachments" % story_id
    if json:
        h["Accept"] = "application/json"
    if xsrf == "header":
        h["X-XSRFToken"] = client.xsrf
    elif xsrf == "query":
        path += "?_xsrf=" + client.xsrf
    h.update(headers or {})
    return await client.fetch(path, "POST", body, headers=h, request_timeout=30)


# --- waiting for a condition ------------------------------------------------------------------


def wait_until(condition, timeout=5.0, interval=0.05):
    """Poll condition() until it is true or `timeout` seconds pass; returns its last value. For
    tests without an IOLoop (server.py processes): it blocks the thread while it waits."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


async def eventually(condition, timeout=5.0, interval=0.02):
    """wait_until for async tests: the IOLoop (and the app under test on it) runs while it waits.
    `condition` may be a coroutine function (e.g. one that fetches a page)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value or time.monotonic() >= deadline:
            return value
        await asyncio.sleep(interval)


async def author(client, name="alice"):
    """Register `name` and publish a story: its id (the uploads' owner)."""
    assert (await client.register(name)).code == 302
    return await client.new_story()


def stored_files(upload_dir):
    """Every file under upload_dir (temporary ones included), relative paths."""
    found = []
    for dirpath, _, names in os.walk(upload_dir):
        found += [os.path.relpath(os.path.join(dirpath, n), upload_dir) for n in names]
    return sorted(found)
