"""Link previews against a local upstream Tornado app started by the test (on loopback only):
a normal page, GBK, a slow page (timeout, the app stays fast), a huge page (cap), a non-HTML
type, redirects, the cache and its refresh, the concurrency bound; and SSRF: with private
addresses not allowed, loopback is refused end to end and after a redirect, the address check
itself is tested on a table of addresses without any connection, and the resolver guard is driven
by a DNS of the test's own whose names mix public and private addresses.

Nothing here sends a packet anywhere but 127.0.0.1 and ::1: every URL is a loopback literal or a
name only the test's resolver knows (whose public addresses it routes to the loopback upstream),
and the table tests only call the check (and getaddrinfo on numeric addresses, which never sends)."""

import asyncio
import json
import socket
import time
from urllib.parse import urlencode

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
from tornado.httpclient import AsyncHTTPClient
from tornado.iostream import StreamClosedError

from models import links, ssrf
from models import previews as pv
from tests.helpers import eventually, query

GBK_TITLE = "中文标题：预览"


# --- the upstream ------------------------------------------------------------------------------


class Upstream:
    """Records every hit as (host header, path) and how many requests ran at once."""

    def __init__(self):
        self.hits = []
        self.ports = []  # the local port of every hit: which of the upstream's sockets was reached
        self.active = 0
        self.max_active = 0
        self.huge_sent = 0
        self.huge_done = False  # the huge page's handler has ended (its client went away)

    def count(self, host, path):
        return sum(1 for h, p in self.hits if p == path and (host is None or h == host))


class UpstreamHandler(tornado.web.RequestHandler):
    def initialize(self, upstream):
        self.upstream = upstream

    def prepare(self):
        self.upstream.hits.append((self.request.host, self.request.path))
        self.upstream.ports.append(self.request.connection.stream.socket.getsockname()[1])


class PageHandler(UpstreamHandler):
    def get(self):
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.write(
            "<!doctype html><html><head><title>Plain title</title>"
            '<meta property="og:title" content="OG &amp; title">'
            '<meta property="og:description" content="  A   description\nover lines  ">'
            "</head><body><p>Hello</p></body></html>"
        )


class TitleOnlyHandler(UpstreamHandler):
    def get(self):
        self.write(
            '<html><head><title> Only  a <b>title</b> </title><meta name="description" content="Meta d">'
        )


class GbkHandler(UpstreamHandler):
    def get(self):
        self.set_header("Content-Type", "text/html")  # no charset here: the <meta> says it
        page = '<html><head><meta charset="gbk"><title>%s</title></head><body>正文</body></html>' % GBK_TITLE
        self.write(page.encode("gbk"))


class EscapeHandler(UpstreamHandler):
    def get(self):
        self.write("<title>&lt;script&gt;alert(1)&lt;/script&gt;</title>")
        self.write('<meta name="description" content="<img src=x>">')


class SlowHandler(UpstreamHandler):
    async def get(self):
        for _ in range(100):  # 10 s unless the client gives up first
            if self.request.connection.stream.closed():
                return
            await asyncio.sleep(0.1)  # the behaviour under test: a page that takes its time
        self.write("<title>Too late</title>")


class HugeHandler(UpstreamHandler):
    async def get(self):
        self.set_header("Content-Type", "text/html")
        # A small send buffer, so what was sent is close to what the client chose to read.
        self.request.connection.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        try:
            self.write("<html><head><title>Huge page</title></head><body>")
            await self.flush()
            for _ in range(640):  # 40 MB if nobody stops reading
                self.write("x" * 65536)
                await self.flush()
                self.upstream.huge_sent += 65536
        except StreamClosedError:
            pass
        finally:
            self.upstream.huge_done = True


class DeclaredHugeHandler(UpstreamHandler):
    def get(self):
        self.write("<title>Declared huge</title>" + " " * (1024 * 1024))  # one Content-Length: 1 MB


class ImageHandler(UpstreamHandler):
    def get(self):
        self.set_header("Content-Type", "image/png")
        self.write(b"\x89PNG\r\n\x1a\n<title>not a page</title>")


class RedirectHandler(UpstreamHandler):
    def get(self):
        self.redirect(self.get_query_argument("to"))


class LoopHandler(UpstreamHandler):
    def get(self):
        self.redirect("/loop")


class ConcurrentHandler(UpstreamHandler):
    async def get(self):
        self.upstream.active += 1
        self.upstream.max_active = max(self.upstream.max_active, self.upstream.active)
        await asyncio.sleep(0.3)  # the behaviour under test: slow answers, so fetches overlap
        self.upstream.active -= 1
        self.write("<title>Concurrent %s</title>" % self.get_query_argument("n"))


@pytest.fixture
def upstream(io_loop):
    """The upstream app on three loopback sockets: a (127.0.0.1), b (127.0.0.1, another port), v6 (::1)."""
    up = Upstream()
    args = dict(upstream=up)
    app = tornado.web.Application(
        [
            ("/page", PageHandler, args),
            ("/title-only", TitleOnlyHandler, args),
            ("/gbk", GbkHandler, args),
            ("/escape", EscapeHandler, args),
            ("/slow", SlowHandler, args),
            ("/huge", HugeHandler, args),
            ("/image", ImageHandler, args),
            ("/declared-huge", DeclaredHugeHandler, args),
            ("/redirect", RedirectHandler, args),
            ("/loop", LoopHandler, args),
            ("/concurrent", ConcurrentHandler, args),
        ]
    )
    server = tornado.httpserver.HTTPServer(app)
    sockets = {}
    for name, host in (("a", "127.0.0.1"), ("b", "127.0.0.1"), ("v6", "::1")):
        [sock] = tornado.netutil.bind_sockets(
            0, host, family=socket.AF_INET6 if ":" in host else socket.AF_INET
        )
        server.add_socket(sock)
        sockets[name] = sock.getsockname()[1]
    up.port = sockets
    up.a = "http://127.0.0.1:%d" % sockets["a"]
    up.b = "http://127.0.0.1:%d" % sockets["b"]
    up.v6 = "http://[::1]:%d" % sockets["v6"]
    yield up
    server.stop()
    io_loop.run_sync(server.close_all_connections, timeout=5)


@pytest.fixture
def app_settings(request, upstream):
    """Previews on; private addresses allowed unless a test asks for "private_off", where only the
    upstream's first socket is exempt (so a redirect to another loopback socket must be refused)."""
    mode = getattr(request, "param", "private_on")
    settings = dict(link_previews=True, link_preview_allow_private=(mode == "private_on"))
    if mode == "private_off":
        settings["link_preview_test_options"] = dict(exempt=frozenset({("127.0.0.1", upstream.port["a"])}))
    return settings


PRIVATE_OFF = pytest.mark.parametrize("app_settings", ["private_off"], indirect=True)


# --- helpers -----------------------------------------------------------------------------------


async def publish_links(app, client, *urls, title="Links"):
    """Publish a story through the page (the form), wait for its previews; returns its id."""
    if not client.cookies.get("session"):
        await client.register("alice")
    story_id = await client.new_story(title, "\n\n".join("<%s>" % u for u in urls))
    await app.models.previews.idle()
    return story_id


async def cards(client, story_id):
    r = await client.get("/api/stories/%d" % story_id)
    assert r.code == 200
    return json.loads(r.body)["previews"]


# --- the links are extracted once, when the story is saved (issue 14, item 1) ----------------------


def stored_links(db_settings, story_id):
    row = query(db_settings, "SELECT links FROM stories WHERE id = %s", (story_id,))[0]
    return None if row["links"] is None else json.loads(row["links"])


@pytest.mark.gen_test
async def test_links_are_stored_at_save_and_reads_use_them(http_server, app, client, upstream, db_settings):
    urls = [upstream.a + "/page", upstream.b + "/title-only"]
    story_id = await publish_links(app, client, *urls)
    assert stored_links(db_settings, story_id) == urls
    # A read takes the stored list and never parses body_html: changed behind the app's back,
    # body_html no longer links anywhere, and the cards are still the stored links' cards.
    query(db_settings, "UPDATE stories SET body_html = '<p>no links</p>' WHERE id = %s", (story_id,))
    app.models.page_cache.bump()
    assert [c["url"] for c in await cards(client, story_id)] == urls
    page = (await client.get("/story/%d" % story_id)).body.decode()
    assert page.count('class="link-preview"') == 2
    # An edit (the form, then the API) stores the new list.
    r = await client.post("/story/%d/edit" % story_id, {"title": "Links", "body": "<%s/gbk>" % upstream.a})
    assert r.code == 302
    assert stored_links(db_settings, story_id) == [upstream.a + "/gbk"]
    r = await client.fetch(
        "/api/stories/%d" % story_id,
        "PATCH",
        json.dumps({"body": "[x](%s/escape) <mailto:a@b.c>" % upstream.b}),
        headers={"Content-Type": "application/json", "X-XSRFToken": client.xsrf},
    )
    assert r.code == 200, r.body
    assert stored_links(db_settings, story_id) == [upstream.b + "/escape"]
    await app.models.previews.idle()
    assert [c["url"] for c in await cards(client, story_id)] == [upstream.b + "/escape"]


@pytest.mark.gen_test
async def test_a_row_without_links_gets_them_once(http_server, app, client, upstream, db_settings):
    """Rows saved before migration 010 are backfilled at start; one written without them later
    (by an older process in a rolling update) gets them on its first read, off the loop."""
    from models import migrate
    from tests.conftest import raw_connection

    first = await publish_links(app, client, upstream.a + "/page")
    second = await publish_links(app, client, upstream.b + "/page", title="Second")
    query(db_settings, "UPDATE stories SET links = NULL")
    con = raw_connection(db_settings, db_settings["database"])
    try:
        with con.cursor() as cur:
            migrate.backfill_links(cur, batch=1)  # batches: every row, not just the first
    finally:
        con.close()
    assert stored_links(db_settings, first) == [upstream.a + "/page"]
    assert stored_links(db_settings, second) == [upstream.b + "/page"]
    query(db_settings, "UPDATE stories SET links = NULL WHERE id = %s", (first,))
    app.models.page_cache.bump()
    assert [c["url"] for c in await cards(client, first)] == [upstream.a + "/page"]
    assert stored_links(db_settings, first) == [upstream.a + "/page"]


# --- fetching ----------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_normal_page_gives_a_card_on_the_page_and_in_the_api(http_server, app, client, upstream):
    url = upstream.a + "/page"
    story_id = await publish_links(app, client, url)
    assert await cards(client, story_id) == [
        {"url": url, "title": "OG & title", "description": "A description over lines"}
    ]
    page = (await client.get("/story/%d" % story_id)).body.decode()
    assert 'class="link-preview" href="%s"' % url in page
    assert "OG &amp; title" in page and "A description over lines" in page


@pytest.mark.gen_test
async def test_title_tag_and_meta_description(http_server, app, client, upstream):
    story_id = await publish_links(app, client, upstream.a + "/title-only")
    [card] = await cards(client, story_id)
    assert card["title"] == "Only a title" and card["description"] == "Meta d"


@pytest.mark.gen_test
async def test_gbk_page_with_meta_charset(http_server, app, client, upstream):
    story_id = await publish_links(app, client, upstream.a + "/gbk")
    [card] = await cards(client, story_id)
    assert card["title"] == GBK_TITLE


@pytest.mark.gen_test
async def test_card_text_is_escaped_on_the_page(http_server, app, client, upstream):
    story_id = await publish_links(app, client, upstream.a + "/escape")
    [card] = await cards(client, story_id)
    assert card["title"] == "<script>alert(1)</script>" and card["description"] == "<img src=x>"
    page = (await client.get("/story/%d" % story_id)).body.decode()
    section = page.split('<section class="link-previews"', 1)[1].split("</section>", 1)[0]
    assert "<script>" not in section and "<img" not in section
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section and "&lt;img src=x&gt;" in section


@pytest.mark.gen_test(timeout=30)
async def test_slow_page_times_out_and_the_app_stays_fast(http_server, app, client, upstream):
    await client.register("alice")
    started = time.monotonic()
    r = await client.post("/story/new", {"title": "Slow", "body": "<%s/slow>" % upstream.a})
    assert r.code == 302 and time.monotonic() - started < 1.0  # the save does not wait
    story_id = int(r.headers["Location"].rsplit("/", 1)[1])
    assert app.models.previews.tasks
    slowest = 0.0
    for _ in range(10):  # the app answers promptly while the fetch waits
        t = time.monotonic()
        assert (await client.get("/api/stories")).code == 200
        assert (await client.get("/story/%d" % story_id)).code == 200
        slowest = max(slowest, time.monotonic() - t)
        await asyncio.sleep(0.1)  # the probes spread over the fetch's wait: a second, not a burst
    assert slowest < 0.5
    await app.models.previews.idle()
    elapsed = time.monotonic() - started
    assert 2.5 < elapsed < 6, elapsed  # the 3 s request timeout, not the page's 10 s
    assert await cards(client, story_id) == []
    row = await app.models.previews.cached(upstream.a + "/slow")
    assert not row["ok"] and "Timeout" in row["error"]


@pytest.mark.gen_test(timeout=30)
async def test_huge_page_is_cut_at_the_cap(http_server, app, client, upstream):
    story_id = await publish_links(app, client, upstream.a + "/huge")
    [card] = await cards(client, story_id)
    assert card["title"] == "Huge page"  # the head arrived before the cap
    assert await eventually(lambda: upstream.huge_done)  # the client closed and the upstream saw it
    # Of 40 MB, the client read 576 KB at most and closed; kernel buffers on loopback hold a few MB.
    assert upstream.huge_sent < 8 * 1024 * 1024, upstream.huge_sent


@pytest.mark.gen_test
async def test_declared_length_over_the_cap_is_not_read(http_server, app, client, upstream):
    story_id = await publish_links(app, client, upstream.a + "/declared-huge")
    assert await cards(client, story_id) == []
    assert (await app.models.previews.cached(upstream.a + "/declared-huge"))["error"] == "larger than the cap"


@pytest.mark.gen_test
async def test_non_html_is_not_parsed(http_server, app, client, upstream):
    story_id = await publish_links(app, client, upstream.a + "/image")
    assert await cards(client, story_id) == []
    row = await app.models.previews.cached(upstream.a + "/image")
    assert not row["ok"] and row["error"] == "not HTML: image/png"


@pytest.mark.gen_test
async def test_redirects_are_followed_up_to_three(http_server, app, client, upstream):
    ok = upstream.a + "/redirect?" + urlencode({"to": upstream.b + "/page"})
    story_id = await publish_links(app, client, ok, upstream.a + "/loop")
    assert [c["title"] for c in await cards(client, story_id)] == ["OG & title"]
    assert upstream.count(None, "/loop") == 4  # the first request and three redirects
    row = await app.models.previews.cached(upstream.a + "/loop")
    assert row["error"] == "too many redirects"


@pytest.mark.gen_test
async def test_at_most_five_links_and_a_few_at_once(http_server, app, client, upstream):
    urls = [upstream.a + "/concurrent?n=%d" % n for n in range(7)]
    story_id = await publish_links(app, client, *urls)
    assert [c["title"] for c in await cards(client, story_id)] == ["Concurrent %d" % n for n in range(5)]
    assert upstream.count(None, "/concurrent") == 5
    assert 2 <= upstream.max_active <= pv.CONCURRENCY  # concurrently, but bounded


@pytest.mark.gen_test
async def test_cache_is_used_then_refreshed_when_stale(http_server, app, client, upstream, db_settings):
    url = upstream.a + "/page"
    first = await publish_links(app, client, url)
    await publish_links(app, client, url, title="Same link again")
    assert upstream.count(None, "/page") == 1  # fresh in the cache: not fetched again
    query(db_settings, "UPDATE link_previews SET fetched_at = NOW() - INTERVAL 2 DAY")
    assert len(await cards(client, first)) == 1  # the stale card still shows...
    await app.models.previews.idle()
    assert upstream.count(None, "/page") == 2  # ...and is fetched again in the background
    row = query(db_settings, "SELECT fetched_at > NOW() - INTERVAL 1 MINUTE AS fresh FROM link_previews")
    assert row[0]["fresh"]


@pytest.mark.gen_test
async def test_api_saves_fetch_previews_too(http_server, app, client, upstream):
    await client.register("alice")
    await client.get("/login")
    r = await client.fetch(
        "/api/stories",
        "POST",
        '{"title": "API", "body": "<%s/page>"}' % upstream.a,
        headers={"Content-Type": "application/json", "X-XSRFToken": client.xsrf},
    )
    assert r.code == 201
    await app.models.previews.idle()
    story_id = int(r.headers["Location"].rsplit("/", 1)[1])
    assert [c["title"] for c in await cards(client, story_id)] == ["OG & title"]


# --- SSRF --------------------------------------------------------------------------------------


@PRIVATE_OFF
@pytest.mark.gen_test
async def test_loopback_refused_end_to_end(http_server, app, client, upstream):
    urls = [upstream.b + "/page", upstream.v6 + "/page", "http://127.0.0.2:%d/page" % upstream.port["b"]]
    story_id = await publish_links(app, client, *urls)
    assert await cards(client, story_id) == []
    assert upstream.hits == []  # not one connection
    for url in urls:
        row = await app.models.previews.cached(url)
        assert not row["ok"] and row["error"] == "refused address", url


@PRIVATE_OFF
@pytest.mark.gen_test
async def test_redirect_to_loopback_refused(http_server, app, client, upstream):
    # The first hop is exempt (the test's stand-in for a public site); where it redirects is not.
    urls = [
        upstream.a + "/redirect?" + urlencode({"to": target + "/page"})
        for target in (upstream.b, upstream.v6)
    ]
    story_id = await publish_links(app, client, *urls)
    assert await cards(client, story_id) == []
    assert upstream.count(None, "/redirect") == 2
    assert upstream.count(None, "/page") == 0
    for url in urls:
        assert (await app.models.previews.cached(url))["error"] == "refused address"


@PRIVATE_OFF
@pytest.mark.gen_test
async def test_exempt_upstream_itself_works(http_server, app, client, upstream):
    """The control for the two tests above: the same app does fetch the one exempt socket."""
    story_id = await publish_links(app, client, upstream.a + "/page")
    assert len(await cards(client, story_id)) == 1


BLOCKED = [
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "127.0.0.1",
    "127.1.2.3",
    "0.0.0.0",
    "100.64.0.1",  # shared address space (CGNAT)
    "192.0.0.8",
    "192.0.2.1",  # documentation
    "198.18.0.1",  # benchmarking
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fe80::1%eth0",
    "fc00::1",
    "fd12:3456::1",
    "fec0::1",
    "ff02::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "not an address",
    "",
]
ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "2606:4700:4700::1111",
    "2a00:1450:4001::200e",
    "64:ff9b::808:808",
]


@pytest.mark.parametrize("address", BLOCKED)
def test_address_check_refuses(address):
    assert not ssrf.is_public_address(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_address_check_allows_public(address):
    assert ssrf.is_public_address(address)


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "address", ["10.0.0.1", "169.254.169.254", "127.0.0.1", "::1", "fd00::1", "::ffff:127.0.0.1"]
)
async def test_resolver_drops_private_addresses(address):
    """Numeric hosts only (getaddrinfo answers them without the network), so nothing is sent."""
    resolver = ssrf.PublicOnlyResolver()
    try:
        with pytest.raises(ssrf.RefusedAddress):
            await resolver.resolve(address, 80)
        assert await resolver.resolve("8.8.8.8", 80) == [(socket.AF_INET, ("8.8.8.8", 80))]
    finally:
        resolver.close()


@pytest.mark.gen_test
async def test_a_name_that_resolves_to_loopback_is_refused_at_connect(upstream):
    """DNS rebinding: the check is on what the client connects to, whatever the name said before.
    OverrideResolver stands in for DNS here (it maps the name to 127.0.0.1, no lookup leaves)."""
    inner = tornado.netutil.OverrideResolver(
        resolver=tornado.netutil.DefaultLoopResolver(),
        mapping={("rebind.example", upstream.port["b"]): ("127.0.0.1", upstream.port["b"])},
    )
    client = AsyncHTTPClient(force_instance=True, resolver=ssrf.PublicOnlyResolver(resolver=inner))
    try:
        with pytest.raises(ssrf.RefusedAddress):
            await client.fetch("http://rebind.example:%d/page" % upstream.port["b"])
    finally:
        client.close()
    assert upstream.hits == []


# The guard under the model's own code, with DNS answers of the test's choosing. Public addresses
# here are real ones (so is_public_address keeps them), but no packet goes to them: the StandIn
# between the guard and the client routes whatever the guard lets through to a loopback socket.
PUBLIC_V4, PUBLIC_V6 = "93.184.216.34", "2606:4700:4700::1111"
PRIVATE = ["10.0.0.1", "127.0.0.1", "169.254.169.254", "fd00::1", "::ffff:10.0.0.1"]
ANSWERS = {
    "public.test": [PUBLIC_V4],
    "mixed.test": PRIVATE[:3] + [PUBLIC_V4] + PRIVATE[3:] + [PUBLIC_V6],  # a private one first
    "private.test": PRIVATE,
}


def addrinfo(ip, port):
    return (socket.AF_INET6, (ip, port, 0, 0)) if ":" in ip else (socket.AF_INET, (ip, port))


class FixedResolver(tornado.netutil.Resolver):
    """The test's DNS: fixed answers, every question recorded, nothing sent anywhere."""

    def initialize(self, answers=ANSWERS):
        self.answers = answers
        self.asked = []

    async def resolve(self, host, port, family=socket.AF_UNSPEC):
        self.asked.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "unknown to the test's resolver: %s" % host)
        return [addrinfo(ip, port) for ip in self.answers[host]]


class StandIn(tornado.netutil.Resolver):
    """Between the guard and the HTTP client: records each address the guard lets through (what
    the client would connect to), then hands the client a loopback socket of the upstream in its
    place: PUBLIC_V4 or PUBLIC_V6 becomes `public_port`, anything else `private_port`."""

    def initialize(self, resolver, public_port, private_port):
        self.resolver = resolver
        self.public_port, self.private_port = public_port, private_port
        self.passed = []

    async def resolve(self, host, port, family=socket.AF_UNSPEC):
        addresses = await self.resolver.resolve(host, port, family)
        self.passed += [sockaddr[0] for _family, sockaddr in addresses]
        public = (PUBLIC_V4, PUBLIC_V6)
        ports = [self.public_port if a[0] in public else self.private_port for _family, a in addresses]
        return [(socket.AF_INET, ("127.0.0.1", port)) for port in ports]

    def close(self):
        self.resolver.close()


def guarded(upstream):
    """(test DNS, the real PublicOnlyResolver on it, the StandIn above it) for the upstream."""
    dns = FixedResolver()
    guard = ssrf.PublicOnlyResolver(resolver=dns)  # as LinkPreviews makes it: private not allowed
    stand_in = StandIn(resolver=guard, public_port=upstream.port["a"], private_port=upstream.port["b"])
    return dns, guard, stand_in


class RoutedPreviews(pv.LinkPreviews):
    """The model's fetch (each redirect hop through the client again) over the StandIn chain."""

    def __init__(self, resolver):
        super().__init__(db=None, cache=None)
        self.resolver = resolver

    @property
    def client(self):
        if self._client is None:
            self._client = AsyncHTTPClient(
                force_instance=True, resolver=self.resolver, max_body_size=self.cap
            )
        return self._client


@pytest.mark.gen_test
async def test_a_name_with_public_and_private_addresses_keeps_only_the_public_ones():
    dns = FixedResolver()
    guard = ssrf.PublicOnlyResolver(resolver=dns)
    try:
        assert await guard.resolve("mixed.test", 443) == [addrinfo(PUBLIC_V4, 443), addrinfo(PUBLIC_V6, 443)]
        with pytest.raises(ssrf.RefusedAddress):
            await guard.resolve("private.test", 443)
    finally:
        guard.close()
    assert dns.asked == ["mixed.test", "private.test"]


@pytest.mark.gen_test
async def test_only_the_public_address_of_a_mixed_name_is_connected_to(upstream):
    dns, _guard, stand_in = guarded(upstream)
    client = AsyncHTTPClient(force_instance=True, resolver=stand_in)
    try:
        response = await client.fetch("http://mixed.test/page")
    finally:
        client.close()
    assert response.code == 200 and b"OG &amp; title" in response.body
    # The private addresses came first in the answer; the client never saw them.
    assert stand_in.passed == [PUBLIC_V4, PUBLIC_V6]
    assert upstream.ports == [upstream.port["a"]]  # one connection, to the public stand-in
    assert dns.asked == ["mixed.test"]


@pytest.mark.gen_test
async def test_a_name_with_only_private_addresses_is_refused_before_any_connection(upstream):
    _dns, _guard, stand_in = guarded(upstream)
    client = AsyncHTTPClient(force_instance=True, resolver=stand_in)
    try:
        with pytest.raises(ssrf.RefusedAddress):
            await client.fetch("http://private.test/page")
    finally:
        client.close()
    assert stand_in.passed == [] and upstream.hits == []


@pytest.mark.gen_test
async def test_each_redirect_hop_is_filtered_the_same_way(upstream):
    dns, _guard, stand_in = guarded(upstream)
    previews = RoutedPreviews(stand_in)
    try:
        to_mixed = "http://public.test/redirect?" + urlencode({"to": "http://mixed.test/page"})
        assert await previews.fetch(to_mixed) == ("OG & title", "A description over lines")
        assert dns.asked == ["public.test", "mixed.test"]
        assert stand_in.passed == [PUBLIC_V4, PUBLIC_V4, PUBLIC_V6]  # the second hop was filtered too
        assert upstream.ports == [upstream.port["a"]] * 2

        to_private = "http://public.test/redirect?" + urlencode({"to": "http://private.test/page"})
        with pytest.raises(pv.Failure, match="refused address"):
            await previews.fetch(to_private)
        assert dns.asked[2:] == ["public.test", "private.test"]
        assert upstream.ports == [upstream.port["a"]] * 3  # the first hop only; never the private socket
        assert upstream.count(None, "/page") == 1
    finally:
        previews.close()


@pytest.mark.parametrize(
    "url, ok",
    [
        ("http://127.0.0.1/", True),
        ("https://[::1]:8443/x", True),
        ("ftp://127.0.0.1/", False),
        ("javascript:alert(1)", False),
        ("http:///nohost", False),
        ("http://[::1/", False),
        ("http://127.0.0.1:99999/", False),
        ("http://127.0.0.1/" + "x" * 2100, False),
    ],
)
def test_only_http_urls_are_fetched(url, ok):
    assert links.fetchable(url) == ok


def test_links_come_from_the_rendered_html_in_order_without_duplicates():
    html = (
        '<p><a href="http://127.0.0.1/a">a</a> <a href="mailto:x@y">m</a> <a href="#">#</a>'
        '<a href="http://127.0.0.1/a">again</a> <a href="https://[::1]/b">b</a></p>'
    )
    assert links.extract_links(html) == ["http://127.0.0.1/a", "https://[::1]/b"]


@pytest.mark.parametrize(
    "data, content_type, title",
    [
        ("<title>Ünïcode</title>".encode(), "text/html; charset=utf-8", "Ünïcode"),
        ("<title>Ünïcode</title>".encode("latin-1"), "text/html; charset=ISO-8859-1", "Ünïcode"),
        (
            '<meta http-equiv="Content-Type" content="text/html; charset=gb2312"><title>中文</title>'.encode(
                "gbk"
            ),
            "text/html",
            "中文",
        ),
        ("<title>Ünïcode</title>".encode(), "text/html; charset=no-such-charset", "Ünïcode"),
        (b"\xef\xbb\xbf<title>BOM</title>", "text/html; charset=latin-1", "BOM"),
        (b"<title>cut off inside the ti", "text/html", "cut off inside the ti"),
        (b"<title>rot13</title>", "text/html; charset=rot13", "rot13"),  # not a text encoding
        (b"<title>zlib</title>", "text/html; charset=zlib", "zlib"),
        ("<title>UTF-16</title>".encode("utf-16"), "text/html; charset=utf-16", "UTF-16"),
        (b"<title>\xff\xfe bad bytes</title>", "text/html; charset=utf-8", "\ufffd\ufffd bad bytes"),
    ],
)
def test_charsets_are_honoured(data, content_type, title):
    assert links.parse_page(data, content_type)[0] == title
