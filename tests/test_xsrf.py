"""XSRF and cross-origin protection (SPEC §4 Forms, §8 Checks that run before prepare()): forged
posts to every kind of form are refused with the site's 403 page and change nothing, genuine ones
pass, the check comes before anything else, and every rendered form carries its _xsrf token (every
template is rendered once on the way)."""

import os
import re

import pytest
from tornado.web import RequestHandler

from tests.helpers import XSRF_MESSAGE, assert_error_page, assert_security_headers, count

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "template")


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
async def test_forged_form_posts_are_refused(db_settings, client, make_client, route, attack):
    _, data, table, _ = FORM_ROUTES[route]
    other = await _set_up(client, make_client, route)
    before = count(db_settings, table)
    token_pairs, headers = REJECTED[attack](client.xsrf, other.xsrf)
    response = await client.post(route, list(data.items()) + token_pairs, xsrf=False, headers=headers)
    assert_error_page(response, 403, XSRF_MESSAGE)
    assert_security_headers(response)
    assert count(db_settings, table) == before  # nothing happened


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "headers",
    [{"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}, {}],
    ids=["same-origin", "direct navigation", "non-browser client"],
)
@pytest.mark.parametrize("route", FORM_ROUTES)
async def test_genuine_form_posts_are_accepted(db_settings, client, make_client, route, headers):
    _, data, table, change = FORM_ROUTES[route]
    await _set_up(client, make_client, route)
    before = count(db_settings, table)
    response = await client.post(route, data, headers=headers)
    assert response.code == 302, response.body[:300]
    assert count(db_settings, table) == before + change


@pytest.mark.gen_test
async def test_origin_equal_to_host_is_accepted(db_settings, client, base_url):
    await client.get("/register")
    response = await client.post(
        "/register",
        {"username": "bob", "password": "correct horse", "confirm": "correct horse"},
        headers={"Origin": base_url},
    )
    assert response.code == 302
    assert count(db_settings, "users") == 1


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
