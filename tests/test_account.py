"""The account page over real HTTP and a real MariaDB: your sessions (device, IP, last seen, this
device; the page is never stored by a cache), revoking one or all of them, and changing the
password (which signs out the others)."""

import datetime
import re

import pytest

from tests.helpers import (
    OTHER_IP,
    PASSWORD,
    assert_error_page,
    count,
    field_errors,
    flash,
    is_logged_in,
    login_from,
    post_from,
    query,
    text,
    utcnow,
)
from views.forms import MESSAGES

NEW_PASSWORD = "a brand new password"


def session_rows(page):
    """The sessions table of /account: one dict per row."""
    rows = re.findall(
        r'<tr>\s*<td>(.*?)</td>\s*<td>(.*?)</td>\s*<td><time datetime="([^"]*)">[^<]*</time></td>'
        r'.*?<input type="hidden" name="session" value="(\d+)">.*?</tr>',
        page,
        re.S,
    )
    return [
        {
            "device": device.replace(" <mark>this device</mark>", ""),
            "this": "<mark>this device</mark>" in device,
            "ip": ip,
            "last_seen": datetime.datetime.fromisoformat(seen.replace("Z", "+00:00")),
            "id": int(sid),
        }
        for device, ip, seen, sid in rows
    ]


async def sessions_seen_by(client):
    r = await client.get("/account")
    assert r.code == 200
    return session_rows(text(r))


async def this_session_id(client):
    (row,) = [s for s in await sessions_seen_by(client) if s["this"]]
    return row["id"]


async def browser(make_client, username="alice", ip=None, user_agent=None):
    """A browser logged in as `username` (who must be registered)."""
    c = make_client()
    r = await login_from(c, username, PASSWORD, ip=ip, user_agent=user_agent)
    assert r.code == 302, text(r)
    return c


@pytest.fixture
def members(make_client, member):
    """alice (two browsers: `a` and `b`) and bob (one browser), all logged in."""

    async def setup():
        a = make_client()
        r = await post_from(
            a,
            "/register",
            {"username": "alice", "password": PASSWORD, "confirm": PASSWORD},
            user_agent="Laptop Firefox/128",
        )
        assert r.code == 302
        b = await browser(make_client, "alice", ip=OTHER_IP, user_agent="Phone <b>App</b>")
        bob = await member("bob")
        return a, b, bob

    return setup


async def revoke(client, **data):
    return await client.post("/account/sessions/revoke", {k: str(v) for k, v in data.items()})


async def change_password(client, current=PASSWORD, password=NEW_PASSWORD, confirm=None):
    return await client.post(
        "/account/password",
        {"current": current, "password": password, "confirm": password if confirm is None else confirm},
    )


# --- the sessions list --------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_account_lists_your_sessions_and_marks_this_one(members):
    a, b, bob = await members()
    rows = await sessions_seen_by(a)
    assert sorted((s["device"], s["ip"], s["this"]) for s in rows) == [
        ("Laptop Firefox/128", "127.0.0.1", True),
        ("Phone &lt;b&gt;App&lt;/b&gt;", OTHER_IP, False),  # the User-Agent is escaped, never HTML
    ]
    for s in rows:
        assert abs(s["last_seen"] - utcnow()) < datetime.timedelta(minutes=2)
    # From the other browser, the mark moves to its own row; bob sees only his own session.
    assert [s["device"] for s in await sessions_seen_by(b) if s["this"]] == ["Phone &lt;b&gt;App&lt;/b&gt;"]
    assert [s["this"] for s in await sessions_seen_by(bob)] == [True]


@pytest.mark.gen_test
async def test_a_browser_without_user_agent_is_an_unknown_device(make_client, members):
    a, _, _ = await members()
    await browser(make_client, "alice", user_agent="")
    assert "Unknown device" in [s["device"] for s in await sessions_seen_by(a)]


@pytest.mark.gen_test
async def test_expired_sessions_are_not_listed(members, db_settings):
    a, b, _ = await members()
    b_id = await this_session_id(b)
    query(db_settings, "UPDATE sessions SET expires_at = NOW() - INTERVAL 1 SECOND WHERE id = %s", (b_id,))
    assert [s["device"] for s in await sessions_seen_by(a)] == ["Laptop Firefox/128"]


@pytest.mark.gen_test
async def test_the_account_page_is_never_stored(client):
    await client.register("alice")
    r = await client.get("/account")
    assert r.code == 200 and r.headers["Cache-Control"] == "no-store"


# --- revoking sessions --------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_revoke_another_session(members):
    a, b, bob = await members()
    b_id = await this_session_id(b)
    r = await revoke(a, session=b_id)
    assert r.code == 302 and r.headers["Location"] == "/account"
    r = await a.get("/account")
    assert flash(text(r)) == "Session signed out."
    assert [s["id"] for s in session_rows(text(r))] == [await this_session_id(a)]
    assert not await is_logged_in(b)
    assert await is_logged_in(a) and await is_logged_in(bob)


@pytest.mark.gen_test
async def test_revoke_this_session_by_its_id(members):
    a, b, _ = await members()
    r = await revoke(a, session=await this_session_id(a))
    assert r.code == 302 and r.headers["Location"] == "/login"
    assert not a.cookies.get("session")
    r = await a.get("/login")
    assert flash(text(r)) == "This session is signed out."
    assert not await is_logged_in(a)
    assert await is_logged_in(b)


BOGUS_IDS = ["", "abc", "0", "-1", "1.5", " ", "1e3", "99999999999999999999", "1" * 5000, "١", "bob's"]


@pytest.mark.parametrize("bogus", BOGUS_IDS)
@pytest.mark.gen_test
async def test_revoke_with_a_bogus_id_is_400(members, db_settings, bogus):
    a, b, bob = await members()
    if bogus == "bob's":
        bogus = await this_session_id(bob)  # another member's session is not yours to end
    r = await revoke(a, session=bogus)
    assert r.code == 400
    assert "No such session." in text(r)
    assert count(db_settings, "sessions") == 3
    assert await is_logged_in(a) and await is_logged_in(b) and await is_logged_in(bob)


@pytest.mark.gen_test
async def test_revoke_all_signs_out_every_session_of_yours(members, db_settings):
    a, b, bob = await members()
    r = await revoke(a, all=1)
    assert r.code == 302 and r.headers["Location"] == "/login"
    assert not a.cookies.get("session")
    r = await a.get("/login")
    assert flash(text(r)) == "You are signed out everywhere."
    assert not await is_logged_in(a)
    assert not await is_logged_in(b)
    assert await is_logged_in(bob)  # only your own sessions
    assert count(db_settings, "sessions", "user_id = (SELECT id FROM users WHERE username = 'alice')") == 0


@pytest.mark.parametrize(
    "headers", [{}, {"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}]
)
@pytest.mark.gen_test
async def test_revoke_refuses_forged_requests(members, headers):
    a, _, _ = await members()
    r = await a.post("/account/sessions/revoke", {"all": "1"}, xsrf=bool(headers), headers=headers)
    assert r.code == 403
    assert await is_logged_in(a)


# --- changing the password ----------------------------------------------------------------------


async def assert_password_is(make_client, password, old):
    """`password` opens the account and `old` no longer does (from fresh browsers)."""
    assert (await make_client().login("alice", old)).code == 400
    assert (await make_client().login("alice", password)).code == 302


@pytest.mark.parametrize("current", ["wrong password", "", PASSWORD.upper(), " " + PASSWORD])
@pytest.mark.gen_test
async def test_password_change_needs_the_current_password(members, make_client, current):
    a, b, _ = await members()
    r = await change_password(a, current=current)
    assert r.code == 400
    page = text(r)
    assert field_errors(page) == {"current": MESSAGES["current_wrong"]}
    assert len(session_rows(page)) == 2  # the account page is shown again, whole
    assert await is_logged_in(b)
    await assert_password_is(make_client, PASSWORD, old=NEW_PASSWORD)


@pytest.mark.parametrize(
    "password,confirm,errors",
    [
        ("short", "short", {"password": MESSAGES["password_short"]}),
        ("", "", {"password": MESSAGES["password_short"]}),
        ("y" * 1025, "y" * 1025, {"password": MESSAGES["password_long"]}),
        (NEW_PASSWORD, NEW_PASSWORD + ".", {"confirm": MESSAGES["confirm_mismatch"]}),
        (NEW_PASSWORD, "", {"confirm": MESSAGES["confirm_mismatch"]}),
    ],
)
@pytest.mark.gen_test
async def test_password_change_checks_the_new_password(members, make_client, password, confirm, errors):
    a, b, _ = await members()
    r = await change_password(a, password=password, confirm=confirm)
    assert r.code == 400
    assert field_errors(text(r)) == errors
    assert await is_logged_in(b)
    await assert_password_is(make_client, PASSWORD, old=password or "nothing")


@pytest.mark.gen_test
async def test_password_change_reports_every_bad_field(members):
    a, _, _ = await members()
    r = await change_password(a, current="wrong password", password="short")
    assert r.code == 400
    assert field_errors(text(r)) == {
        "current": MESSAGES["current_wrong"],
        "password": MESSAGES["password_short"],
    }


@pytest.mark.parametrize(
    "others,message",
    [
        (0, "Password changed. 0 other sessions signed out."),
        (1, "Password changed. 1 other session signed out."),
        (2, "Password changed. 2 other sessions signed out."),
    ],
)
@pytest.mark.gen_test
async def test_password_change_keeps_this_session_and_ends_the_others(
    make_client, db_settings, others, message, member
):
    a = await member("alice")
    bob = await member("bob")
    other_browsers = [await browser(make_client) for _ in range(others)]
    old_hash = query(db_settings, "SELECT password_hash FROM users WHERE username = 'alice'")[0]
    r = await change_password(a)
    assert r.code == 302 and r.headers["Location"] == "/account"
    r = await a.get("/account")
    assert r.code == 200 and flash(text(r)) == message
    assert [s["this"] for s in session_rows(text(r))] == [True]
    for b in other_browsers:
        assert not await is_logged_in(b)
    assert await is_logged_in(bob)
    assert query(db_settings, "SELECT password_hash FROM users WHERE username = 'alice'")[0] != old_hash
    await assert_password_is(make_client, NEW_PASSWORD, old=PASSWORD)


@pytest.mark.gen_test
async def test_new_password_is_read_without_stripping(members, make_client):
    a, _, _ = await members()
    spaced = "  " + NEW_PASSWORD + "  "
    assert (await change_password(a, password=spaced)).code == 302
    await assert_password_is(make_client, spaced, old=NEW_PASSWORD)


# --- routes that only take POST -----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/account/sessions/revoke",
        "/account/password",
    ],
)
@pytest.mark.gen_test
async def test_post_only_account_routes_refuse_get(members, path):
    a, _, _ = await members()
    r = await a.get(path)
    assert_error_page(r, 405, "That method is not allowed here.")


@pytest.mark.gen_test
async def test_password_change_gives_this_browser_a_new_session_token(make_client, db_settings, member):
    a = await member("alice")
    stale = make_client()
    stale.cookies = dict(a.cookies)
    assert (await change_password(a)).code == 302
    assert a.cookies["session"] != stale.cookies["session"]
    assert await is_logged_in(a)
    assert not await is_logged_in(stale)  # a copy of the old cookie is worthless
    assert count(db_settings, "sessions") == 1
