"""Security: response headers (SPEC §4, §8), XSRF and cross-origin checks on every form, the
allowed_hosts check, and that every rendered form carries its _xsrf token."""

import os
import re

import pytest
from tornado.escape import xhtml_escape
from tornado.testing import bind_unused_port
from tornado.web import RequestHandler

from serving.connections import make_http_server
from tests.conftest import Client
from tests.helpers import set_cookie

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
XSRF_MESSAGE = "This form has expired or came from another site"
TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "template")


def assert_security_headers(response, https=False):
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get_list(name) == [value], (name, response.code, response.effective_url)
    if https:
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    else:
        assert "Strict-Transport-Security" not in response.headers


def assert_error_page(response, status, text=None):
    """The site's HTML error template, not Tornado's bare page or a traceback."""
    body = response.body.decode()
    assert response.code == status, body[:300]
    assert response.headers["Content-Type"].startswith("text/html")
    assert body.lstrip().lower().startswith("<!doctype html>")
    assert 'class="brand"><strong>Storyhouse</strong>' in body  # the header of the layout
    assert "<h1>%d · " % status in body
    assert "Traceback" not in body
    if text:
        assert xhtml_escape(text) in body
    return body


COUNT_SQL = {
    "users": "SELECT COUNT(*) AS n FROM users",
    "sessions": "SELECT COUNT(*) AS n FROM sessions",
    "stories": "SELECT COUNT(*) AS n FROM stories",
}


async def count(app, table):
    """Rows in one of the app's tables (a fixed query per table)."""
    return (await app.models.db.fetch_one(COUNT_SQL[table]))["n"]


# --- security headers -------------------------------------------------------------------------


async def _forbidden(client):
    return await client.post("/register", {"username": "x"}, xsrf=False)


HEADER_CASES = {
    "page": (lambda c: c.get("/login"), 200),
    "static file": (lambda c: c.get("/static/css/site.css"), 200),
    "unknown path 404": (lambda c: c.get("/no/such/page"), 404),
    "story 404": (lambda c: c.get("/story/424242"), 404),
    "bad query 400": (lambda c: c.get("/?page=x"), 400),
    "xsrf 403": (_forbidden, 403),
    "method 405": (lambda c: c.get("/logout"), 405),
    "healthz": (lambda c: c.get("/healthz"), 200),
    "redirect 301": (lambda c: c.get("/story/1/"), 301),
    "login redirect 302": (lambda c: c.get("/story/new"), 302),
}


@pytest.mark.gen_test
@pytest.mark.parametrize("case", HEADER_CASES)
async def test_security_headers_on_every_kind_of_response(client, case):
    request, status = HEADER_CASES[case]
    response = await request(client)
    assert response.code == status
    assert_security_headers(response)


@pytest.mark.gen_test
async def test_csp_forbids_inline_script_and_style_in_pages(client):
    """The CSP has no 'unsafe-inline', so pages must not rely on inline script or style."""
    await client.register("alice", "correct horse")
    story_id = await client.new_story("T", "B")
    for path in ("/", "/login", "/account", "/story/%d" % story_id, "/story/new", "/nope"):
        body = (await client.get(path)).body.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", body), path
        assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=", body), path


@pytest.mark.gen_test
async def test_hsts_only_when_a_trusted_proxy_says_https(app, http_client):
    sock, port = bind_unused_port()
    srv = make_http_server(app, xheaders=True)
    srv.add_socket(sock)
    try:
        url = "http://127.0.0.1:%d/login" % port
        plain = await http_client.fetch(url)
        assert_security_headers(plain, https=False)
        proxied = await http_client.fetch(url, headers={"X-Forwarded-Proto": "https"})
        assert_security_headers(proxied, https=True)
    finally:
        srv.stop()
        await srv.close_all_connections()


@pytest.mark.gen_test
async def test_cookies_are_secure_behind_an_https_proxy(app, http_client):
    sock, port = bind_unused_port()
    srv = make_http_server(app, xheaders=True)
    srv.add_socket(sock)
    proxy = {"X-Forwarded-Proto": "https"}
    try:
        browser = Client(http_client, "http://127.0.0.1:%d" % port)
        r = await browser.get("/login", headers=proxy)
        assert set_cookie(r, "_xsrf")["secure"]
        form = {"username": "alice", "password": "correct horse", "confirm": "correct horse"}
        r = await browser.post("/register", form, headers=proxy)
        assert r.code == 302
        assert set_cookie(await browser.get("/", headers=proxy), "_xsrf") is None  # set already
        for name in ("session", "flash"):
            morsel = set_cookie(r, name)
            assert morsel is not None and morsel["secure"] and morsel["httponly"], name
        plain = Client(http_client, "http://127.0.0.1:%d" % port)
        r = await plain.register("bob", "correct horse")
        assert r.code == 302 and not set_cookie(r, "session")["secure"]
    finally:
        srv.stop()
        await srv.close_all_connections()


# --- XSRF and cross-origin protection ---------------------------------------------------------


async def _as_new_member(client, make_client):
    await client.register("alice", "correct horse")


async def _member_exists(client, make_client):
    await make_client().register("alice", "correct horse")
    await client.get("/login")


async def _anonymous(client, make_client):
    await client.get("/register")


# route: (setup, form data, table whose row count shows the effect, change when accepted)
FORM_ROUTES = {
    "/register": (
        _anonymous,
        {"username": "mallory", "password": "correct horse", "confirm": "correct horse"},
        "users",
        1,
    ),
    "/login": (_member_exists, {"username": "alice", "password": "correct horse"}, "sessions", 1),
    "/logout": (_as_new_member, {}, "sessions", -1),
    "/story/new": (_as_new_member, {"title": "Forged", "body": "forged body"}, "stories", 1),
}
REJECTED = {
    "missing token": lambda own, foreign: ([], {}),
    "foreign token": lambda own, foreign: ([("_xsrf", foreign)], {}),
    "cross-site Origin": lambda own, foreign: ([("_xsrf", own)], {"Origin": "http://evil.example"}),
    "Sec-Fetch-Site cross-site": lambda own, foreign: ([("_xsrf", own)], {"Sec-Fetch-Site": "cross-site"}),
    "Sec-Fetch-Site same-site": lambda own, foreign: ([("_xsrf", own)], {"Sec-Fetch-Site": "same-site"}),
}


async def _set_up(client, make_client, route):
    """The route's precondition; returns another browser whose token counts as foreign."""
    await FORM_ROUTES[route][0](client, make_client)
    other = make_client()
    await other.get("/login")
    assert client.xsrf and other.xsrf and client.xsrf != other.xsrf
    return other


@pytest.mark.gen_test
@pytest.mark.parametrize("attack", REJECTED)
@pytest.mark.parametrize("route", FORM_ROUTES)
async def test_forged_form_posts_are_refused(app, client, make_client, route, attack):
    _, data, table, _ = FORM_ROUTES[route]
    other = await _set_up(client, make_client, route)
    before = await count(app, table)
    token_pairs, headers = REJECTED[attack](client.xsrf, other.xsrf)
    response = await client.post(route, list(data.items()) + token_pairs, xsrf=False, headers=headers)
    assert_error_page(response, 403, XSRF_MESSAGE)
    assert_security_headers(response)
    assert await count(app, table) == before  # nothing happened


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "headers",
    [{"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}, {}],
    ids=["same-origin", "direct navigation", "non-browser client"],
)
@pytest.mark.parametrize("route", FORM_ROUTES)
async def test_genuine_form_posts_are_accepted(app, client, make_client, route, headers):
    _, data, table, change = FORM_ROUTES[route]
    await _set_up(client, make_client, route)
    before = await count(app, table)
    response = await client.post(route, data, headers=headers)
    assert response.code == 302, response.body[:300]
    assert await count(app, table) == before + change


@pytest.mark.gen_test
async def test_origin_equal_to_host_is_accepted(app, client, base_url):
    await client.get("/register")
    response = await client.post(
        "/register",
        {"username": "bob", "password": "correct horse", "confirm": "correct horse"},
        headers={"Origin": base_url},
    )
    assert response.code == 302
    assert await count(app, "users") == 1


@pytest.mark.gen_test
async def test_token_from_a_rendered_form_is_accepted(client, make_client):
    await make_client().register("alice", "correct horse")
    page = (await client.get("/login")).body.decode()
    token = re.search(r'<input type="hidden" name="_xsrf" value="([^"]+)"', page).group(1)
    response = await client.post(
        "/login", {"username": "alice", "password": "correct horse", "_xsrf": token}, xsrf=False
    )
    assert response.code == 302


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "path",
    [
        "/account",
        "/account/password",
        "/account/sessions/revoke",
        "/story/1/edit",
        "/story/1/delete",
        "/story/new",
        "/theme",
    ],
)
@pytest.mark.parametrize("logged_in", [False, True], ids=["anonymous", "member"])
async def test_tokenless_post_is_403_before_anything_else(client, path, logged_in):
    """Tornado checks XSRF before prepare(): no 401, 404 or 405 can be decided first, and the
    error page renders without what prepare() sets."""
    if logged_in:
        await client.register("alice", "correct horse")
    response = await client.post(path, {}, xsrf=False)
    assert_error_page(response, 403, XSRF_MESSAGE)


@pytest.mark.gen_test
async def test_with_a_token_the_real_status_is_decided(client):
    """The control for the test above: the same requests with a token get their own answers."""
    assert_error_page(await client.post("/account/password", {}), 403)  # anonymous POST
    await client.register("alice", "correct horse")
    assert_error_page(await client.post("/account", {}), 405)  # no post() on that route
    assert_error_page(await client.post("/story/1/edit", {}), 404)


# --- every form carries the token, every template is rendered ----------------------------------

FORM_RE = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.S)
XSRF_INPUT_RE = re.compile(r'<input type="hidden" name="_xsrf" value="2\|[0-9a-f]+\|[0-9a-f]+\|\d+"/>')


def assert_post_forms_have_xsrf(body, where):
    forms = FORM_RE.findall(body)
    posts = [inner for attrs, inner in forms if re.search(r'method="post"', attrs, re.I)]
    assert posts, "no POST form on %s" % where  # every page has at least the theme form
    for inner in posts:
        assert len(XSRF_INPUT_RE.findall(inner)) == 1, (where, inner)
    return len(posts)


def template_files():
    names = {n for n in os.listdir(TEMPLATE_DIR) if n.endswith(".html")}
    names |= {
        "modules/" + n for n in os.listdir(os.path.join(TEMPLATE_DIR, "modules")) if n.endswith(".html")
    }
    return names


@pytest.mark.gen_test
async def test_every_template_rendered_and_every_form_has_xsrf(app, client, make_client):
    loader = RequestHandler._template_loaders.get(TEMPLATE_DIR)
    if loader is not None:
        loader.reset()  # count only what this test renders
    anonymous = make_client()
    pages = []

    async def visit(who, label, path, status=200, method="GET", data=None):
        if method == "GET":
            response = await who.get(path)
        else:
            response = await who.post(path, data)
        assert response.code == status, (label, response.body[:300])
        pages.append((label, response.body.decode()))

    await visit(anonymous, "index, empty, anonymous", "/")
    await visit(anonymous, "register", "/register")
    await visit(
        anonymous,
        "register with errors",
        "/register",
        400,
        "POST",
        {"username": "a", "password": "short", "confirm": ""},
    )
    await visit(anonymous, "login", "/login")
    await visit(anonymous, "login failed", "/login", 400, "POST", {"username": "x", "password": "y" * 8})
    await client.register("alice", "correct horse")
    story_id = await client.new_story("A story", "Some *words*")
    await visit(client, "index, logged in", "/")
    await visit(anonymous, "index, anonymous", "/")
    await visit(client, "account", "/account")
    await visit(client, "story (owner)", "/story/%d" % story_id)
    await visit(anonymous, "story (anonymous)", "/story/%d" % story_id)
    await visit(client, "new story", "/story/new")
    await visit(client, "new story with errors", "/story/new", 400, "POST", {"title": "", "body": ""})
    await visit(client, "edit story", "/story/%d/edit" % story_id)
    await visit(client, "chat", "/chat")
    await visit(client, "error page", "/nothing-here", 404)

    counts = {label: assert_post_forms_have_xsrf(body, label) for label, body in pages}
    assert counts["edit story"] == 5  # edit, delete, logout, theme, language
    assert counts["index, logged in"] == 3  # logout, theme, language
    assert counts["account"] >= 4  # revoke one, revoke all, password, theme, logout
    assert "story-card" in dict(pages)["index, anonymous"]

    loader = RequestHandler._template_loaders[TEMPLATE_DIR]
    assert set(loader.templates) == template_files()


# --- allowed_hosts ----------------------------------------------------------------------------


class TestAllowedHosts:
    @pytest.fixture
    def app_settings(self):
        return {"allowed_hosts": ["example.com"]}

    @pytest.mark.gen_test
    @pytest.mark.parametrize("host", ["evil.com", "example.com.evil.com", "10.0.0.1"])
    async def test_unknown_host_is_400(self, client, host):
        response = await client.get("/login", headers={"Host": host})
        assert_error_page(response, 400, "Unknown host")
        assert_security_headers(response)

    @pytest.mark.gen_test
    async def test_unknown_host_post_without_token_is_400_not_403(self, client):
        response = await client.post("/register", {"username": "x"}, xsrf=False, headers={"Host": "evil.com"})
        assert_error_page(response, 400, "Unknown host")

    @pytest.mark.gen_test
    @pytest.mark.parametrize("host", ["example.com", "EXAMPLE.com", "example.com:8080"])
    async def test_allowed_host_is_served(self, client, host):
        response = await client.get("/login", headers={"Host": host})
        assert response.code == 200
        assert "<h1>Log in</h1>" in response.body.decode()

    @pytest.mark.gen_test
    async def test_allowed_host_post_works(self, app, client):
        await client.get("/register", headers={"Host": "example.com"})
        response = await client.post(
            "/register",
            {"username": "alice", "password": "correct horse", "confirm": "correct horse"},
            headers={"Host": "example.com"},
        )
        assert response.code == 302
        assert await count(app, "users") == 1

    @pytest.mark.gen_test
    async def test_healthz_is_exempt(self, client):
        response = await client.get("/healthz", headers={"Host": "10.0.0.1"})
        assert response.code == 200
        assert_security_headers(response)


@pytest.mark.gen_test
async def test_healthz_answers_head_for_load_balancers(client):
    r = await client.fetch("/healthz", method="HEAD")
    assert r.code == 200 and r.body == b""
    assert_security_headers(r)
