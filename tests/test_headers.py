"""Headers (SPEC §4 Security headers, §8 Headers): the security headers on every kind of response,
a CSP that pages keep to, HSTS only behind an https proxy, and the Host check (allowed_hosts)."""

import re

import pytest
from tornado.testing import bind_unused_port

from serving.connections import make_http_server
from tests.helpers import assert_error_page, assert_security_headers, count

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


# --- allowed_hosts: the Host header -----------------------------------------------------------


class TestAllowedHosts:
    @pytest.fixture
    def app_settings(self):
        return {"allowed_hosts": ["example.com"]}

    @pytest.mark.gen_test
    @pytest.mark.parametrize("host", ["evil.com", "example.com.evil.com", "10.0.0.1"])
    async def test_unknown_host_is_400(self, client, host):
        response = await client.get("/login", headers={"Host": host})
        assert_error_page(response, 400, "Unknown host.")
        assert_security_headers(response)

    @pytest.mark.gen_test
    async def test_unknown_host_post_without_token_is_400_not_403(self, client):
        response = await client.post("/register", {"username": "x"}, xsrf=False, headers={"Host": "evil.com"})
        assert_error_page(response, 400, "Unknown host.")

    @pytest.mark.gen_test
    @pytest.mark.parametrize("host", ["example.com", "EXAMPLE.com", "example.com:8080"])
    async def test_allowed_host_is_served(self, client, host):
        response = await client.get("/login", headers={"Host": host})
        assert response.code == 200
        assert "<h1>Log in</h1>" in response.body.decode()

    @pytest.mark.gen_test
    async def test_allowed_host_post_works(self, client, db_settings):
        await client.get("/register", headers={"Host": "example.com"})
        response = await client.post(
            "/register",
            {"username": "alice", "password": "correct horse", "confirm": "correct horse"},
            headers={"Host": "example.com"},
        )
        assert response.code == 302
        assert count(db_settings, "users") == 1

    @pytest.mark.gen_test
    async def test_healthz_is_exempt(self, client):
        response = await client.get("/healthz", headers={"Host": "10.0.0.1"})
        assert response.code == 200
        assert_security_headers(response)
