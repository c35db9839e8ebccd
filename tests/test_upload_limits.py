"""The upload route's limits on what is not a file (views/uploads.py): a cap on parts and on the bytes
of part headers and fields, refused at once with a 400 whatever the body's size, so a body of a
million empty parts cannot hold the loop; early refusals announce that the connection closes."""

import socket
import statistics
import threading
import time
import uuid

import pytest

from tests import serverproc as sp
from tests.helpers import author, multipart, stored_files

LIMIT_MB = 1

TOO_MANY_PARTS = "This upload has too many parts: send only the files."
TOO_MUCH_ENVELOPE = "This upload has too much besides its files: send only the files."


@pytest.fixture
def upload_dir(tmp_path):
    return str(tmp_path / "uploads")


@pytest.fixture
def app_settings(upload_dir):
    return {"upload_dir": upload_dir, "max_upload_mb": LIMIT_MB}


def empty_parts(count, boundary="----storyhouse-parts"):
    """A multipart body of `count` empty fields and no file."""
    part = ('--%s\r\nContent-Disposition: form-data; name="x"\r\n\r\n\r\n' % boundary).encode()
    return "multipart/form-data; boundary=" + boundary, part * count + ("--%s--\r\n" % boundary).encode()


async def post_upload(client, story_id, ctype, body, headers=None):
    h = {"Content-Type": ctype, "Accept": "application/json", "X-XSRFToken": client.xsrf}
    h.update(headers or {})
    return await client.fetch("/story/%d/attachments" % story_id, "POST", body, headers=h, request_timeout=30)


@pytest.mark.gen_test(timeout=30)
async def test_an_upload_of_many_empty_parts_is_refused(client, upload_dir):
    story_id = await author(client)
    ctype, body = empty_parts(500)
    r = await post_upload(client, story_id, ctype, body)
    assert r.code == 400, r.body[:300]
    assert TOO_MANY_PARTS.encode() in r.body
    assert r.headers.get("Connection") == "close"  # the rest of the body is not read
    assert not [f for f in stored_files(upload_dir) if not f.startswith("tmp")]


@pytest.mark.gen_test(timeout=30)
async def test_files_with_a_few_fields_beside_them_still_go_through(client):
    story_id = await author(client)
    ctype, body = multipart([("a.txt", b"hello")], extra=[("note", "x")] * 5)
    r = await post_upload(client, story_id, ctype, body)
    assert r.code == 201, r.body[:300]


@pytest.mark.gen_test(timeout=30)
async def test_large_part_headers_or_fields_are_refused(client):
    story_id = await author(client)
    boundary = "----storyhouse" + uuid.uuid4().hex
    ctype, end = "multipart/form-data; boundary=" + boundary, ("--%s--\r\n" % boundary).encode()
    # 20 parts (within the cap) with 4 KB of headers each: 80 KB of envelope, no file.
    part = '--%s\r\nContent-Disposition: form-data; name="x"\r\nX-Padding: %s\r\n\r\n\r\n' % (
        boundary,
        "a" * 4000,
    )
    r = await post_upload(client, story_id, ctype, part.encode() * 20 + end)
    assert r.code == 400 and TOO_MUCH_ENVELOPE.encode() in r.body, r.body[:300]
    field = '--%s\r\nContent-Disposition: form-data; name="x"\r\n\r\n%s\r\n' % (boundary, "b" * 70_000)
    r = await post_upload(client, story_id, ctype, field.encode() + end)
    assert r.code == 400 and TOO_MUCH_ENVELOPE.encode() in r.body, r.body[:300]


# --- against a server process: the connection itself, and the loop under the attack --------------


def raw_request(sock, head, body=b""):
    sock.sendall(head + body)
    return read_response(sock)


def read_response(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "closed before the headers: %r" % data[:200]
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(
        [h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")][0]
    )
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed mid-body"
        rest += chunk
    return head.decode("latin-1"), rest[:length]


@pytest.fixture(scope="module")
def upload_server(tmp_path_factory):
    extra = ["--upload_dir=%s" % tmp_path_factory.mktemp("uploads")]
    with sp.running_server(sp.database_name("uplimits"), extra=extra) as (server, port):
        owner, stranger = sp.Browser(port), sp.Browser(port)
        owner.register("owner_%s" % uuid.uuid4().hex[:6])
        stranger.register("stranger_%s" % uuid.uuid4().hex[:6])
        r = owner.post("/story/new", {"title": "Files", "body": "Here."})
        story_id = int(r.headers["Location"].rsplit("/", 1)[1])
        yield port, owner, stranger, story_id


def upload_head(browser, story_id, ctype, length):
    cookies = "; ".join("%s=%s" % kv for kv in browser.cookies.items())
    return (
        "POST /story/%d/attachments HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: %s\r\nX-XSRFToken: %s\r\n"
        "Accept: application/json\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
        % (story_id, cookies, browser.cookies["_xsrf"], ctype, length)
    ).encode()


def head_of_answer(port, head, body):
    """Send a request on a keep-alive connection; the status line and headers of the answer
    (the client may be reset once the answer is in: it is read as it comes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        try:
            s.sendall(body)
        except OSError:
            pass
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            assert chunk, "closed before the headers"
            data += chunk
        return data.partition(b"\r\n\r\n")[0].decode("latin-1")


def test_early_refusals_announce_that_the_connection_closes(upload_server):
    port, owner, stranger, story_id = upload_server
    ctype, body = multipart([("big.bin", b"z" * 300_000)])  # more than is read before answering
    head = head_of_answer(port, upload_head(stranger, story_id, ctype, len(body)), body)
    assert head.startswith("HTTP/1.1 403 ") and "\r\nConnection: close" in head, head
    forged = upload_head(owner, story_id, ctype, len(body)).replace(b"X-XSRFToken: ", b"X-XSRFToken: x")
    head = head_of_answer(port, forged, body)
    assert head.startswith("HTTP/1.1 403 ") and "\r\nConnection: close" in head, head
    head = head_of_answer(port, upload_head(owner, story_id, ctype, 80 * 1024 * 1024), body)
    assert head.startswith("HTTP/1.1 413 ") and "\r\nConnection: close" in head, head


def test_a_body_of_tiny_parts_is_refused_at_once_and_the_loop_stays_free(upload_server):
    """Issue 14 item 2: 20 MB of empty parts (before the fix: about 3 s of parsing on the loop,
    /healthz near a second meanwhile)."""
    port, owner, stranger, story_id = upload_server
    ctype, body = empty_parts(400_000)  # about 20 MB
    answers = []

    def attack():
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(upload_head(owner, story_id, ctype, len(body)))
            started = time.monotonic()
            try:
                s.sendall(body)
            except OSError:
                pass  # refused and closed while we were still sending: what we want
            try:
                answers.append((read_response(s), time.monotonic() - started))
            except (OSError, AssertionError) as e:
                answers.append((e, time.monotonic() - started))

    thread = threading.Thread(target=attack)
    thread.start()
    probes = []
    while thread.is_alive() and len(probes) < 200:
        started = time.monotonic()
        assert sp.request(port, "GET", "/healthz").status == 200
        probes.append(time.monotonic() - started)
    thread.join(30)
    ((answer, elapsed),) = answers
    assert elapsed < 5, elapsed
    if isinstance(answer, tuple):  # the answer can be lost to the reset of a client still sending
        head, payload = answer
        assert head.startswith("HTTP/1.1 400 ") and TOO_MANY_PARTS.encode() in payload
    assert probes and max(probes) < 0.5, (statistics.median(probes), max(probes))
