"""Attachments on the real server and MariaDB: streamed multi-file uploads, hostile names, the size
limit (by header and by stream), clients that vanish mid-body, a disk write that really fails,
who may upload, XSRF, safe downloads (disposition, type, nosniff, ETag, Range), deletion with the
story, and the hourly sweep."""

import asyncio
import gzip
import hashlib
import os
import re
import resource
import socket
import time

import puremagic
import pytest

from models.filenames import SNIFF_BYTES, clean_filename, content_disposition, human_size, sniff_type
from serving.housekeeping import housekeeping
from tests import serverproc as sp
from tests.helpers import (
    PNG,
    author,
    binary,
    cookie_header,
    eventually,
    multipart,
    query,
    stored_files,
    upload,
    wait_until,
)

LIMIT_MB = 1
LIMIT = LIMIT_MB * 1024 * 1024
HTML = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
STORED_NAME = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def upload_dir(tmp_path):
    return str(tmp_path / "uploads")


@pytest.fixture
def app_settings(upload_dir, request):
    """The app on a fresh upload_dir with a 1 MB limit (a test may override with indirect=True)."""
    return dict({"upload_dir": upload_dir, "max_upload_mb": LIMIT_MB}, **getattr(request, "param", {}))


def rows(db_settings):
    return query(db_settings, "SELECT * FROM attachments ORDER BY id")


# --- raw HTTP for what a polite client never does ----------------------------------------


class Raw:
    """A socket that speaks just enough HTTP/1.1 to misbehave."""

    def __init__(self, base_url):
        port = int(base_url.rsplit(":", 1)[1])
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setblocking(False)

    async def send(self, data):
        await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def response(self, timeout=10):
        """One response: until its Content-Length is complete, the server closes, or timeout."""
        loop = asyncio.get_running_loop()
        data = b""
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            head, sep, rest = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length: *(\d+)", head) if sep else None
            if length and len(rest) >= int(length.group(1)):
                break
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), deadline - loop.time())
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            data += chunk
        return data

    def close(self):
        self.sock.close()


def request_head(client, story_id, headers):
    lines = ["POST /story/%d/attachments HTTP/1.1" % story_id, "Host: 127.0.0.1"]
    lines += ["Cookie: " + cookie_header(client.cookies), "X-XSRFToken: " + client.xsrf]
    lines += ["%s: %s" % kv for kv in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def status_of(response):
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else None


# --- pure helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\x", "x"),
        ("/absolute/path/file.txt", "file.txt"),
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        ("a\x00b", "ab"),
        ("bell\x07 and\x1b[31m red", "bell and[31m red"),
        ("line\nbreak.txt", "line break.txt"),
        ("evil\u202etxt.exe", "eviltxt.exe"),  # a right-to-left override would disguise the type
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("..", "file"),
        ("", "file"),
        ("   ", "file"),
        ("中文.txt", "中文.txt"),
        ("family 👨\u200d👩\u200d👧.png", "family 👨\u200d👩\u200d👧.png"),
    ],
)
def test_clean_filename(raw, expected):
    assert clean_filename(raw) == expected


def test_clean_filename_cuts_long_names_in_characters_and_keeps_the_extension():
    name = clean_filename("a" * 296 + ".txt")
    assert len(name) == 200 and name.endswith(".txt")
    emoji = clean_filename("😀" * 300)
    assert emoji == "😀" * 200
    # a cut never leaves half a joined sequence behind
    joined = clean_filename("x" * 198 + "👨\u200d👩")
    assert joined == "x" * 198 + "👨"
    assert clean_filename("中" * 250 + ".文档") == "中" * 197 + ".文档"


def test_content_disposition_rfc6266():
    assert content_disposition("report.pdf") == 'attachment; filename="report.pdf"'
    assert content_disposition("photo.png", inline=True) == 'inline; filename="photo.png"'
    value = content_disposition('中文 "q".txt')
    assert value == "attachment; filename=\"__ _q_.txt\"; filename*=UTF-8''%E4%B8%AD%E6%96%87%20%22q%22.txt"


def test_human_size_and_sniffing():
    assert [human_size(n) for n in (0, 1, 1023, 1536, 50 * 1024 * 1024, 3 * 1024**3)] == [
        "0 bytes",
        "1 byte",
        "1023 bytes",
        "1.5 KB",
        "50 MB",
        "3.0 GB",
    ]
    assert sniff_type(PNG) == "image/png"
    assert sniff_type(HTML) == "text/html"
    assert sniff_type(SVG) == "image/svg+xml"
    assert sniff_type(b"plain words\n") == "text/plain; charset=utf-8"
    assert sniff_type(binary(256) + b"\x00") == "application/octet-stream"
    assert sniff_type(b"") == "text/plain; charset=utf-8"


def test_the_binary_test_bytes_match_no_signature():
    """binary(n) starts with the same SNIFF_BYTES for every n: not one signature of puremagic's
    (whatever its confidence) in them, so no upload test depends on what the sniffer guesses."""
    with pytest.raises(puremagic.PureError):
        puremagic.magic_string(binary(SNIFF_BYTES))
    assert binary(SNIFF_BYTES) == binary(300_000)[:SNIFF_BYTES]


# --- the round trip ------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_several_files_round_trip_with_identical_bytes(client, db_settings, upload_dir):
    story_id = await author(client)
    files = [
        ("pixel.png", PNG),
        ("notes.txt", "Plain notes, ünïcode.\n".encode() * 50),
        ("blob.bin", binary(300_000)),
        ("empty.dat", b""),
    ]
    response = await upload(client, story_id, files)
    assert response.code == 201, response.body
    items = __import__("json").loads(response.body)["items"]
    assert [i["filename"] for i in items] == [f[0] for f in files]

    db_rows = rows(db_settings)
    assert len(db_rows) == 4
    for (name, data), row, item in zip(files, db_rows, items, strict=True):
        assert row["filename"] == name and row["story_id"] == story_id
        assert row["size"] == len(data) == item["size"]
        assert row["sha256"] == hashlib.sha256(data).hexdigest() == item["sha256"]
        assert STORED_NAME.fullmatch(row["storage_name"])
        path = os.path.join(
            upload_dir, row["storage_name"][:2], row["storage_name"][2:4], row["storage_name"]
        )
        with open(path, "rb") as f:
            assert f.read() == data
        download = await client.get(item["url"])
        assert download.code == 200
        assert download.body == data
        assert download.headers["X-Content-Type-Options"] == "nosniff"
        assert download.headers["Etag"] == '"%s"' % row["sha256"]
    assert [r["content_type"] for r in db_rows] == [
        "image/png",
        "text/plain; charset=utf-8",
        "application/octet-stream",
        "text/plain; charset=utf-8",
    ]
    # only the generated names are on disk; no temporary file is left
    assert sorted(os.path.basename(p) for p in stored_files(upload_dir)) == sorted(
        r["storage_name"] for r in db_rows
    )

    page = (await client.get("/story/%d" % story_id)).body.decode()
    for name in ("pixel.png", "notes.txt", "blob.bin", "empty.dat"):
        assert name in page
    assert "293 KB" in page and "0 bytes" in page
    assert '<img class="thumb" src="/attachments/%d"' % items[0]["id"] in page
    assert page.count('<img class="thumb"') == 1  # only the image gets a thumbnail
    assert 'id="upload-form"' in page and "/static/js/upload.js" in page


@pytest.mark.gen_test(timeout=30)
async def test_plain_form_upload_redirects_to_the_story(client, db_settings):
    story_id = await author(client)
    page = (await client.get("/story/%d" % story_id)).body.decode()
    action = re.search(r'action="([^"]*attachments[^"]*)"', page).group(1).replace("&amp;", "&")
    assert "_xsrf=" in action
    ctype, body = multipart([("a.txt", b"hello")])
    response = await client.fetch(action, "POST", body, headers={"Content-Type": ctype})
    assert response.code == 302
    assert response.headers["Location"] == "/story/%d#attachments" % story_id
    page = (await client.get("/story/%d" % story_id)).body.decode()
    assert "1 file attached." in page and "a.txt" in page
    assert len(rows(db_settings)) == 1


@pytest.mark.gen_test(timeout=30)
async def test_form_without_a_file(client, db_settings, upload_dir):
    story_id = await author(client)
    # what a browser sends when no file was chosen: one part with an empty filename
    response = await upload(client, story_id, [("", b"")], json=False, xsrf="query")
    assert response.code == 302
    page = (await client.get("/story/%d" % story_id)).body.decode()
    assert "Choose at least one file to attach." in page
    response = await upload(client, story_id, [("", b"")])
    assert response.code == 400
    assert b"Choose at least one file." in response.body
    assert rows(db_settings) == () and stored_files(upload_dir) == []


@pytest.mark.gen_test(timeout=30)
async def test_bad_bodies_are_refused_and_leave_nothing(client, db_settings, upload_dir):
    story_id = await author(client)
    too_many = [("f%d.txt" % i, b"x") for i in range(21)]
    response = await upload(client, story_id, too_many)
    assert response.code == 400 and b"At most 20 files" in response.body
    response = await client.fetch(
        "/story/%d/attachments" % story_id,
        "POST",
        b"files=x",
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-XSRFToken": client.xsrf},
    )
    assert response.code == 400 and b"multipart/form-data" in response.body
    ctype, body = multipart([("cut.txt", b"y" * 5000)])
    response = await client.fetch(
        "/story/%d/attachments" % story_id,
        "POST",
        body[:-100],  # the closing boundary never comes
        headers={"Content-Type": ctype, "X-XSRFToken": client.xsrf, "Accept": "application/json"},
    )
    assert response.code == 400 and b"incomplete" in response.body
    assert await eventually(lambda: stored_files(upload_dir) == [])
    assert rows(db_settings) == ()


# --- hostile names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\x", "x"),
        (b"a\x00b", "ab"),
        ("CON", "_CON"),
        ("n" * 296 + ".txt", "n" * 196 + ".txt"),
        ("中文.txt", "中文.txt"),
        ("😀 party 🎉.txt", "😀 party 🎉.txt"),
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_hostile_names_never_reach_the_filesystem(client, db_settings, upload_dir, raw, expected):
    story_id = await author(client)
    response = await upload(client, story_id, [(raw, b"content")])
    assert response.code == 201, response.body
    (row,) = rows(db_settings)
    assert row["filename"] == expected
    files = stored_files(upload_dir)
    assert files == [os.path.join(row["storage_name"][:2], row["storage_name"][2:4], row["storage_name"])]
    # nothing was written outside upload_dir either
    assert not os.path.exists(os.path.join(os.path.dirname(upload_dir), "x"))
    download = await client.get("/attachments/%d" % row["id"])
    disposition = download.headers["Content-Disposition"]
    assert disposition.startswith("attachment; filename=")
    if not expected.isascii():
        assert "filename*=UTF-8''" + __import__("urllib.parse").parse.quote(expected, safe="") in disposition


# --- limits --------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_over_the_limit_by_header_is_413_before_the_body(client, db_settings, upload_dir, base_url):
    story_id = await author(client)
    raw = Raw(base_url)
    try:
        ctype, _ = multipart([])
        # Headers only: the answer must come without a byte of the body sent.
        await raw.send(request_head(client, story_id, {"Content-Type": ctype, "Content-Length": 500 * LIMIT}))
        response = await raw.response()
    finally:
        raw.close()
    assert status_of(response) == 413
    assert b"That upload is too large: the limit is 1.0 MB." in response
    assert stored_files(upload_dir) == [] and rows(db_settings) == ()


@pytest.mark.gen_test(timeout=30)
async def test_over_the_limit_by_stream_is_413_and_keeps_nothing(client, db_settings, upload_dir, base_url):
    story_id = await author(client)
    # Chunked: no Content-Length to refuse up front, so the count while streaming must catch it.
    ctype, body = multipart([("big.bin", binary(LIMIT + 200_000))])
    raw = Raw(base_url)
    try:
        await raw.send(
            request_head(client, story_id, {"Content-Type": ctype, "Transfer-Encoding": "chunked"})
        )
        sent = 0
        try:
            for i in range(0, len(body), 64 * 1024):
                piece = body[i : i + 64 * 1024]
                await raw.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: the rest is never read
        response = await raw.response()
    finally:
        raw.close()
    assert status_of(response) == 413, response[:200]
    assert b"That upload is too large" in response
    assert await eventually(lambda: stored_files(upload_dir) == [])
    assert rows(db_settings) == ()


@pytest.mark.gen_test(timeout=30)
async def test_files_over_the_limit_inside_an_allowed_body_are_413(client, db_settings, upload_dir):
    story_id = await author(client)
    # The body fits the limit plus the multipart envelope, but the files alone do not.
    files = [("a.bin", binary(LIMIT // 2)), ("b.bin", binary(LIMIT // 2 + 10_000))]
    response = await upload(client, story_id, files)
    assert response.code == 413
    assert b"That upload is too large: the limit is 1.0 MB." in response.body
    assert await eventually(lambda: stored_files(upload_dir) == [])
    assert rows(db_settings) == ()


@pytest.mark.gen_test(timeout=30)
async def test_a_client_that_vanishes_mid_body_leaves_nothing(client, db_settings, upload_dir, base_url):
    story_id = await author(client)
    ctype, body = multipart([("half.bin", binary(800_000))])
    raw = Raw(base_url)
    try:
        await raw.send(request_head(client, story_id, {"Content-Type": ctype, "Content-Length": len(body)}))
        await raw.send(body[:400_000])
        # the file is really being written...
        assert await eventually(lambda: any(p.endswith(".part") for p in stored_files(upload_dir)))
    finally:
        raw.close()  # ...and then the client is gone
    assert await eventually(lambda: stored_files(upload_dir) == [])
    assert rows(db_settings) == ()


@pytest.mark.gen_test(timeout=30)
async def test_a_story_deleted_during_its_upload_keeps_no_file(client, db_settings, upload_dir, base_url):
    story_id = await author(client)
    ctype, body = multipart([("late.bin", binary(300_000))])
    raw = Raw(base_url)
    try:
        await raw.send(request_head(client, story_id, {"Content-Type": ctype, "Content-Length": len(body)}))
        await raw.send(body[:100_000])
        assert await eventually(lambda: any(p.endswith(".part") for p in stored_files(upload_dir)))
        assert (await client.post("/story/%d/delete" % story_id)).code == 302  # meanwhile
        await raw.send(body[100_000:])
        response = await raw.response()
    finally:
        raw.close()
    assert status_of(response) == 404
    assert b"That story no longer exists." in response
    assert await eventually(lambda: stored_files(upload_dir) == [])
    assert rows(db_settings) == ()


# --- who may upload ---------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_anonymous_and_non_owner_get_403_before_a_byte_is_stored(
    client, make_client, db_settings, upload_dir, base_url
):
    story_id = await author(client)
    mallory = make_client()
    assert (await mallory.register("mallory")).code == 302
    anonymous = make_client()
    await anonymous.get("/login")  # has an XSRF token, but no session
    ctype, _ = multipart([])
    for who, message in ((anonymous, b"Log in to attach files."), (mallory, b"author can attach files")):
        raw = Raw(base_url)
        try:
            await raw.send(request_head(who, story_id, {"Content-Type": ctype, "Content-Length": 100_000}))
            response = await raw.response()  # the answer comes with no body sent at all
        finally:
            raw.close()
        assert status_of(response) == 403, response[:300]
        assert message in response
    # and with a body, as a client would send it
    response = await upload(mallory, story_id, [("x.txt", b"mine now")])
    assert response.code == 403
    assert stored_files(upload_dir) == [] and rows(db_settings) == ()
    response = await upload(client, 999999, [("x.txt", b"x")])
    assert response.code == 404


@pytest.mark.gen_test(timeout=30)
async def test_missing_or_foreign_xsrf_is_403(client, make_client, db_settings, upload_dir):
    story_id = await author(client)
    other = make_client()
    await other.get("/login")
    files = [("x.txt", b"data")]
    assert (await upload(client, story_id, files, xsrf=None)).code == 403
    assert (await upload(client, story_id, files, xsrf=None, headers={"X-XSRFToken": other.xsrf})).code == 403
    cross = {"Origin": "https://evil.example"}
    assert (await upload(client, story_id, files, headers=cross)).code == 403
    assert (await upload(client, story_id, files, headers={"Sec-Fetch-Site": "cross-site"})).code == 403
    assert stored_files(upload_dir) == [] and rows(db_settings) == ()
    # the token in the query string (the plain form's way) is accepted
    assert (await upload(client, story_id, files, xsrf="query")).code == 201


# --- downloads -----------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_html_and_svg_are_never_inline_images_may_be(client, db_settings, make_client):
    story_id = await author(client)
    files = [
        ("page.html", HTML),
        ("drawing.svg", SVG),
        ("photo.png", HTML),
        ("pixel.png", PNG),
        ("doc.pdf", b"%PDF-1.4\n"),
    ]
    response = await upload(client, story_id, files)
    assert response.code == 201
    reader = make_client()  # attachments are public, like the stories
    got = {}
    for row in rows(db_settings):
        r = await reader.get("/attachments/%d" % row["id"])
        assert r.code == 200
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in r.headers["Content-Security-Policy"]
        got[row["filename"]] = (r.headers["Content-Type"], r.headers["Content-Disposition"])
    assert got["page.html"] == ("text/html", 'attachment; filename="page.html"')
    assert got["drawing.svg"] == ("image/svg+xml", 'attachment; filename="drawing.svg"')
    # named like an image, but the bytes are HTML: recorded and served as what it is
    assert got["photo.png"] == ("text/html", 'attachment; filename="photo.png"')
    assert got["doc.pdf"] == ("application/pdf", 'attachment; filename="doc.pdf"')
    assert got["pixel.png"] == ("image/png", 'inline; filename="pixel.png"')
    page = (await reader.get("/story/%d" % story_id)).body.decode()
    assert page.count('<img class="thumb"') == 1
    assert 'id="upload-form"' not in page  # only the owner sees the form


@pytest.mark.gen_test(timeout=30)
async def test_range_etag_and_unknown_ids(client, db_settings):
    story_id = await author(client)
    data = binary(100_000)
    assert (await upload(client, story_id, [("r.bin", data)])).code == 201
    (row,) = rows(db_settings)
    url = "/attachments/%d" % row["id"]
    r = await client.get(url, headers={"Range": "bytes=1000-1999"})
    assert r.code == 206
    assert r.body == data[1000:2000]
    assert r.headers["Content-Range"] == "bytes 1000-1999/100000"
    r = await client.get(url, headers={"Range": "bytes=-10"})
    assert r.code == 206 and r.body == data[-10:]
    r = await client.get(url, headers={"Range": "bytes=200000-"})
    assert r.code == 416
    r = await client.get(url, headers={"If-None-Match": '"%s"' % row["sha256"]})
    assert r.code == 304
    r = await client.fetch(url, "HEAD")
    assert r.code == 200 and r.headers["Content-Length"] == "100000"
    for missing in ("/attachments/999999", "/attachments/99999999999", "/attachments/abc"):
        r = await client.get(missing)
        assert r.code == 404
        assert b"There is nothing here." in r.body  # the site's 404 page


@pytest.mark.gen_test(timeout=30)
async def test_attachments_are_cached_privately_as_immutable(client, db_settings):
    """Issue 14, item 11: a year in the browser without revalidating, never in a shared cache
    (which would go on serving a deleted story's file)."""
    story_id = await author(client)
    assert (await upload(client, story_id, [("a.txt", b"words"), ("b.png", PNG)])).code == 201
    for row in rows(db_settings):
        url = "/attachments/%d" % row["id"]
        for r in (
            await client.get(url),
            await client.fetch(url, "HEAD"),
            await client.get(url, headers={"Range": "bytes=0-1"}),
            await client.get(url, headers={"If-None-Match": '"%s"' % row["sha256"]}),
        ):
            assert r.code in (200, 206, 304)
            assert r.headers["Cache-Control"] == "private, max-age=31536000, immutable", r.code
            assert "Expires" not in r.headers  # HTTP/1.0 caches would read it and ignore "private"
            assert r.headers["ETag"] == '"%s"' % row["sha256"]
    assert (await client.post("/story/%d/delete" % story_id)).code == 302
    gone = await client.get("/attachments/%d" % row["id"])
    assert gone.code == 404 and "immutable" not in gone.headers.get("Cache-Control", "")


@pytest.mark.gen_test(timeout=30)
async def test_attachments_are_never_compressed(client, db_settings):
    """Issue 14, item 10: the app gzips text answers, but an uploaded file goes out byte for byte
    (its ETag is the SHA-256 of those bytes), text files included; images and archives above all."""
    import io
    import zipfile

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.txt", "x" * 5000)
    text = ("line of text\n" * 400).encode()
    files = [
        ("notes.txt", text),
        ("page.html", b"<html><body>" + text + b"</body></html>"),
        ("data.json", b'{"a": "' + text.replace(b"\n", b" ") + b'"}'),
        ("drawing.svg", SVG + b"<!--" + text + b"-->"),
        ("pic.png", PNG + b"\0" * 4000),
        ("bundle.zip", archive.getvalue()),
        ("pack.tar.gz", gzip.compress(text)),
    ]
    story_id = await author(client)
    assert (await upload(client, story_id, files)).code == 201
    sent = dict(files)
    for row in rows(db_settings):
        url = "/attachments/%d" % row["id"]
        for headers in ({"Accept-Encoding": "gzip"}, {"Accept-Encoding": "gzip", "Range": "bytes=0-99"}):
            r = await client.get(url, headers=headers, decompress_response=False)
            assert "Content-Encoding" not in r.headers, (row["filename"], row["content_type"])
            want = sent[row["filename"]] if "Range" not in headers else sent[row["filename"]][:100]
            assert r.body == want and int(r.headers["Content-Length"]) == len(want)


# --- deletion and clean-up --------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_deleting_the_story_removes_its_files(client, db_settings, upload_dir):
    story_id = await author(client)
    keep_id = await client.new_story(title="Another")
    assert (await upload(client, story_id, [("a.txt", b"a"), ("b.png", PNG)])).code == 201
    assert (await upload(client, keep_id, [("c.txt", b"c")])).code == 201
    assert len(stored_files(upload_dir)) == 3
    response = await client.post("/story/%d/delete" % story_id)
    assert response.code == 302
    (kept,) = rows(db_settings)
    assert kept["filename"] == "c.txt"
    assert [os.path.basename(p) for p in stored_files(upload_dir)] == [kept["storage_name"]]
    assert (await client.get("/attachments/%d" % (kept["id"] - 1))).code == 404


@pytest.mark.gen_test(timeout=30)
async def test_housekeeping_removes_crash_leftovers_and_files_without_a_row(
    app, client, db_settings, upload_dir
):
    story_id = await author(client)
    assert (await upload(client, story_id, [("kept.txt", b"kept")])).code == 201
    (row,) = rows(db_settings)
    old = time.time() - 2 * 3600

    def make(relative, mtime):
        path = os.path.join(upload_dir, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(b"leftover")
        os.utime(path, (mtime, mtime))
        return relative

    stale_tmp = make(os.path.join("tmp", "a" * 32 + ".part"), old)
    fresh_tmp = make(os.path.join("tmp", "b" * 32 + ".part"), time.time())  # an upload in progress
    orphan = make(os.path.join("cc", "cc", "c" * 32), old)
    fresh_orphan = make(os.path.join("dd", "dd", "d" * 32), time.time())  # about to get its row
    kept = os.path.join(row["storage_name"][:2], row["storage_name"][2:4], row["storage_name"])
    os.utime(os.path.join(upload_dir, kept), (old, old))  # old, but it has a row
    await housekeeping(app.models)
    left = stored_files(upload_dir)
    assert stale_tmp not in left and orphan not in left
    assert fresh_tmp in left and fresh_orphan in left and kept in left


@pytest.mark.parametrize("app_settings", [{"upload_dir": "/dev/null/uploads"}], indirect=True)
@pytest.mark.gen_test(timeout=30)
async def test_an_upload_dir_that_cannot_be_used_answers_clearly(app, client, db_settings):
    # /dev/null is a file: nothing can be made under it, whoever runs the tests (root included).
    story_id = await author(client)
    assert (await client.get("/story/%d" % story_id)).code == 200  # the site itself still works
    response = await upload(client, story_id, [("a.txt", b"words")])
    assert response.code == 500
    assert b"could not be saved on the server. Nothing was saved." in response.body
    assert rows(db_settings) == ()
    await housekeeping(app.models)  # and the sweep does not trip over it


# --- a disk write that really fails -----------------------------------------------------------


def test_a_failing_write_answers_clearly_and_keeps_nothing(tmp_path):
    """server.py with RLIMIT_FSIZE of 256 KB: writing past it fails with EFBIG (Python ignores
    SIGXFSZ), as a full disk would fail."""
    database = sp.database_name("uploads")
    upload_dir = str(tmp_path / "uploads")
    sp.drop_databases(database)
    port = sp.free_port()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, hard))  # inherited by the child only...
    try:
        server = sp.ServerProcess(sp.server_args(port, database, extra=["--upload_dir=" + upload_dir]))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # ...this process gets its own back
    try:
        sp.wait_until_healthy(server, port)
        user = sp.Browser(port)
        assert user.register("writer").status == 302
        story = user.post("/story/new", {"title": "T", "body": "B"})
        story_id = int(story.headers["Location"].rsplit("/", 1)[1])
        ctype, body = multipart([("small.txt", b"fits"), ("big.bin", binary(600_000))])
        response = user.fetch(
            "POST",
            "/story/%d/attachments" % story_id,
            body,
            {"Content-Type": ctype, "X-XSRFToken": user.cookies["_xsrf"], "Accept": "application/json"},
        )
        assert response.status == 507, response.text
        assert "no room for this file" in response.text
        assert wait_until(lambda: stored_files(upload_dir) == [])
        con = sp.mysql_connection(database)
        try:
            with con.cursor() as cur:
                cur.execute("SELECT COUNT(*) AS n FROM attachments")
                assert cur.fetchone()["n"] == 0
        finally:
            con.close()
        # the server is still fine, and a small file still goes through
        ctype, body = multipart([("small.txt", b"fits")])
        headers = {"Content-Type": ctype, "X-XSRFToken": user.cookies["_xsrf"], "Accept": "application/json"}
        assert user.fetch("POST", "/story/%d/attachments" % story_id, body, headers).status == 201
    finally:
        server.kill()
        sp.drop_databases(database)
