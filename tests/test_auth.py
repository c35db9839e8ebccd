"""Accounts over real HTTP and a real MariaDB: register (and its limit per address), log in (with
`next`), throttling of failed logins, log out, the signed session cookie (Secure behind an https
proxy), and what anonymous visitors may do."""

import asyncio
import datetime
import email.utils
import hashlib
import re
import urllib.parse

import pytest
import tornado.escape
import tornado.web
from tornado import gen
from tornado.testing import bind_unused_port

from models.throttle import PER_ACCOUNT_IP, PER_IP, WINDOW_MINUTES
from serving.connections import make_http_server
from tests.conftest import Client
from tests.helpers import (
    OTHER_IP,
    PASSWORD,
    assert_error_page,
    count,
    field_errors,
    flash,
    input_value,
    is_logged_in,
    login_from,
    post_from,
    query,
    set_cookie,
    text,
    utcnow,
)
from views.forms import MESSAGES

# --- helpers ------------------------------------------------------------------------------------


def form_error(page):
    m = re.search(r'<p class="form-error" role="alert">(.*?)</p>', page, re.S)
    return m and m.group(1)


def session_morsel(response, name="session"):
    return set_cookie(response, name)


def cookie_expires(morsel):
    return email.utils.parsedate_to_datetime(morsel["expires"])


# --- register -----------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_register_logs_in_and_redirects_home(client, db_settings):
    r = await client.register("alice", PASSWORD)
    assert r.code == 302 and r.headers["Location"] == "/"
    assert client.cookies.get("session")
    assert await is_logged_in(client)
    r = await client.get("/")
    assert '<a href="/account">alice</a>' in text(r)
    (user,) = query(db_settings, "SELECT username, password_hash FROM users")
    assert user["username"] == "alice"
    assert user["password_hash"].startswith("$argon2id$") and PASSWORD not in user["password_hash"]


@pytest.mark.gen_test
async def test_register_page_redirects_a_member_home(client):
    await client.register()
    r = await client.get("/register")
    assert r.code == 302 and r.headers["Location"] == "/"


@pytest.mark.parametrize("second", ["Alice", "ALICE", "alice"])
@pytest.mark.gen_test
async def test_username_is_unique_case_insensitively(make_client, db_settings, second, member):
    await member("alice")
    other = make_client()
    r = await other.register(second, "another password")
    assert r.code == 400
    assert field_errors(text(r)) == {"username": "That username is taken."}
    assert input_value(text(r), "username") == second
    assert not other.cookies.get("session")
    assert [u["username"] for u in query(db_settings, "SELECT username FROM users")] == ["alice"]


METACHARS_33 = ("'\"\\%_--" * 5)[:33]

BAD_REGISTRATIONS = [
    # (username, password, confirm, field, message key)
    ("", PASSWORD, PASSWORD, "username", "username_empty"),
    ("   ", PASSWORD, PASSWORD, "username", "username_empty"),
    ("\x00\x00\x00", PASSWORD, PASSWORD, "username", "username_empty"),
    ("ab", PASSWORD, PASSWORD, "username", "username_invalid"),
    ("a" * 33, PASSWORD, PASSWORD, "username", "username_invalid"),
    ("o'neil", PASSWORD, PASSWORD, "username", "username_invalid"),
    ('say"hi"', PASSWORD, PASSWORD, "username", "username_invalid"),
    ("back\\slash", PASSWORD, PASSWORD, "username", "username_invalid"),
    ("100%", PASSWORD, PASSWORD, "username", "username_invalid"),
    ("%_%", PASSWORD, PASSWORD, "username", "username_invalid"),
    ("alice--", PASSWORD, PASSWORD, "username", "username_invalid"),
    ("x' OR '1'='1", PASSWORD, PASSWORD, "username", "username_invalid"),
    (METACHARS_33, PASSWORD, PASSWORD, "username", "username_invalid"),
    ("<b>bold</b>", PASSWORD, PASSWORD, "username", "username_invalid"),
    ("中文名", PASSWORD, PASSWORD, "username", "username_invalid"),
    ("😀😀😀", PASSWORD, PASSWORD, "username", "username_invalid"),
    ("ab\x00cd", PASSWORD, PASSWORD, "username", "username_invalid"),
    ("bob", "", "", "password", "password_short"),
    ("bob", "7chars!", "7chars!", "password", "password_short"),
    ("bob", "x" * 1025, "x" * 1025, "password", "password_long"),
    ("bob", PASSWORD, PASSWORD + "!", "confirm", "confirm_mismatch"),
    ("bob", PASSWORD, "", "confirm", "confirm_mismatch"),
    ("bob", PASSWORD, " " + PASSWORD, "confirm", "confirm_mismatch"),
]


@pytest.mark.parametrize("username,password,confirm,field,key", BAD_REGISTRATIONS)
@pytest.mark.gen_test
async def test_bad_registration_is_refused_with_its_message(
    client, db_settings, username, password, confirm, field, key
):
    r = await client.register(username, password, confirm)
    assert r.code == 400
    page = text(r)
    assert field_errors(page) == {field: MESSAGES[key]}
    # The username is kept, control characters turned into spaces and surrounding space stripped
    # (Tornado's get_argument), and HTML-escaped; passwords are never echoed back.
    kept = username.replace("\x00", " ").strip()
    assert input_value(page, "username") == tornado.escape.xhtml_escape(kept)
    assert input_value(page, "password") == "" and input_value(page, "confirm") == ""
    assert not client.cookies.get("session")
    assert count(db_settings, "users") == 0


@pytest.mark.parametrize(
    "username,password",
    [
        ("abc", "8 chars!"),
        ("a" * 32, "x" * 1024),
        ("Under_Score_99", PASSWORD),
    ],
)
@pytest.mark.gen_test
async def test_registration_limits_are_inclusive(client, db_settings, username, password):
    r = await client.register(username, password)
    assert r.code == 302
    assert [u["username"] for u in query(db_settings, "SELECT username FROM users")] == [username]


@pytest.mark.gen_test
async def test_underscore_is_not_a_wildcard_in_usernames(db_settings, member):
    await member("a_c")
    await member("abc")
    assert count(db_settings, "users") == 2


@pytest.mark.gen_test
async def test_registrations_are_limited_per_ip(make_client, app, db_settings):
    """Each registration costs an argon2 hash: an address gets 20 an hour, then a 429."""
    limit = app.settings["registrations_per_ip_hour"]
    for i in range(limit):
        assert (await make_client().register("member_%d" % i)).code == 302
    r = await make_client().register("one_too_many")
    assert r.code == 429 and r.headers["Retry-After"] == "3600"
    assert form_error(text(r)) == "Too many accounts were made from your address. Try again in an hour."
    assert input_value(text(r), "username") == "one_too_many"
    assert count(db_settings, "users", "username = 'one_too_many'") == 0
    other = make_client()
    r = await post_from(
        other, "/register", {"username": "elsewhere", "password": PASSWORD, "confirm": PASSWORD}, ip=OTHER_IP
    )
    assert r.code == 302  # another address is not affected
    query(db_settings, "UPDATE users SET created_at = NOW() - INTERVAL 61 MINUTE")
    assert (await make_client().register("an_hour_later")).code == 302


@pytest.mark.gen_test(timeout=60)
async def test_parallel_registrations_cannot_pass_the_limit(
    app, http_server, own_http_client, base_url, db_settings
):
    limit = app.settings["registrations_per_ip_hour"]
    http_client = own_http_client()  # all of them in flight at once (the shared client allows 10)
    clients = [Client(http_client, base_url) for _ in range(limit + 5)]
    await gen.multi([c.get("/register") for c in clients])
    responses = await gen.multi([c.register("racer%02d" % i) for i, c in enumerate(clients)])
    codes = sorted(r.code for r in responses)
    assert codes == [302] * limit + [429] * 5, codes
    assert count(db_settings, "users") == limit


# --- log in -------------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_login_returns_to_a_local_next(member):
    c = await member()
    await c.logout()
    r = await c.get("/account")
    assert r.code == 302 and r.headers["Location"] == "/login?next=%2Faccount"
    r = await c.get(r.headers["Location"])
    assert input_value(text(r), "next") == "/account"  # the form carries it through the POST
    r = await c.login(next_url="/account")
    assert r.code == 302 and r.headers["Location"] == "/account"
    assert await is_logged_in(c)


@pytest.mark.parametrize("target", ["/story/new", "/?q=a%20b&page=2", "/account#top"])
@pytest.mark.gen_test
async def test_login_next_keeps_any_local_path(target, member):
    c = await member()
    await c.logout()
    r = await c.login(next_url=target)
    assert r.code == 302 and r.headers["Location"] == target


UNSAFE_NEXT = [
    "//evil.com",
    "/\\evil.com",
    "http://evil.com",
    "https://evil.com/account",
    "javascript:x",
    "evil.com",
    "///evil.com",
    "/\t/evil.com",
    "\\\\evil.com",
    "",
    "/\r\nSet-Cookie: a=b",
    "/\x7f",  # DEL: Tornado refuses it in a Location header (it once gave a 500)
    "/é",  # raw non-ASCII: what the site generates is percent-encoded
]


@pytest.mark.parametrize("target", UNSAFE_NEXT)
@pytest.mark.gen_test
async def test_login_refuses_a_next_that_leaves_the_site(target, member):
    c = await member()
    await c.logout()
    r = await c.login(next_url=target)
    assert r.code == 302 and r.headers["Location"] == "/"
    # A member who opens /login?next=... is sent on at once, with the same rule.
    r = await c.get("/login?" + urllib.parse.urlencode({"next": target}))
    assert r.code == 302 and r.headers["Location"] == "/"


@pytest.mark.gen_test
async def test_login_page_sends_a_member_to_next(client):
    await client.register()
    r = await client.get("/login?next=%2Fstory%2Fnew")
    assert r.code == 302 and r.headers["Location"] == "/story/new"


@pytest.mark.gen_test
async def test_login_form_escapes_next(client):
    r = await client.get("/login?next=%22%3E%3Cscript%3Ex()%3C%2Fscript%3E")
    assert r.code == 200
    assert input_value(text(r), "next") == "&quot;&gt;&lt;script&gt;x()&lt;/script&gt;"
    assert "<script>x()" not in text(r)


@pytest.mark.gen_test
async def test_unknown_user_and_wrong_password_get_the_same_answer(make_client, member):
    await member()
    answers = []
    for username, password in [("nobody", PASSWORD), ("alice", "wrong password")]:
        c = make_client()
        r = await c.login(username, password, next_url="/account")
        assert r.code == 400
        page = text(r)
        assert form_error(page) == "Unknown username or wrong password."
        assert input_value(page, "username") == username
        assert input_value(page, "password") == ""
        assert input_value(page, "next") == "/account"
        assert not c.cookies.get("session")
        answers.append(re.sub(r'name="_xsrf" value="[^"]*"', "", page.replace(username, "NAME")))
    assert answers[0] == answers[1]


@pytest.mark.parametrize(
    "username,password,errors",
    [
        ("", PASSWORD, {"username": "Enter your username."}),
        ("alice", "", {"password": "Enter your password."}),
        ("", "", {"username": "Enter your username.", "password": "Enter your password."}),
        ("\x00 ", PASSWORD, {"username": "Enter your username."}),
    ],
)
@pytest.mark.gen_test
async def test_login_with_empty_fields(make_client, username, password, errors, member):
    await member()
    c = make_client()
    r = await c.login(username, password)
    assert r.code == 400
    assert field_errors(text(r)) == errors
    assert not c.cookies.get("session")


@pytest.mark.parametrize(
    "username",
    [
        METACHARS_33,
        "x' OR '1'='1' -- ",
        "a%",
        "a_c",
        "中文😀",
        "n" * 2000,
    ],
)
@pytest.mark.gen_test
async def test_odd_login_names_are_just_unknown(make_client, username, member):
    await member("abc")  # what "a%" or "a_c" would find if they were LIKE patterns
    c = make_client()
    r = await c.login(username, PASSWORD)
    assert r.code == 400
    assert form_error(text(r)) == MESSAGES["login_failed"]
    assert input_value(text(r), "username") == tornado.escape.xhtml_escape(username.strip())


@pytest.mark.gen_test
async def test_login_username_is_case_insensitive(make_client, member):
    await member("alice")
    c = make_client()
    r = await c.login("ALICE", PASSWORD)
    assert r.code == 302
    r = await c.get("/")
    assert flash(text(r)) == "Signed in as alice."


@pytest.mark.gen_test
async def test_password_is_read_without_stripping(member):
    spaced = "  spaced out  "
    c = await member("alice", spaced)
    await c.logout()
    for wrong in ["spaced out", "  spaced out", "spaced out  "]:
        r = await c.login("alice", wrong)
        assert r.code == 400, wrong
    r = await c.login("alice", spaced)
    assert r.code == 302
    assert await is_logged_in(c)


# --- throttling of failed logins ----------------------------------------------------------------


def assert_throttled(response):
    assert response.code == 429
    wait = int(response.headers["Retry-After"])
    assert 0 < wait <= WINDOW_MINUTES * 60
    minutes = (wait + 59) // 60
    assert form_error(text(response)) == "Too many failed attempts. Try again in %d minute%s." % (
        minutes,
        "" if minutes == 1 else "s",
    )


async def fail_logins(client, username, times, ip=None):
    for _ in range(times):
        r = await login_from(client, username, "wrong password", ip=ip)
        assert r.code == 400 and form_error(text(r)) == MESSAGES["login_failed"]


@pytest.mark.gen_test
async def test_sixth_attempt_is_refused_even_with_the_right_password(make_client, app, member):
    await member("alice")
    c = make_client()
    # Failures count per account whatever the case the name is typed in.
    for name in ["alice", "ALICE", "Alice", "alice", "aLiCe"][:PER_ACCOUNT_IP]:
        await fail_logins(c, name, 1)
    r = await c.login("alice", PASSWORD)
    assert_throttled(r)
    assert not c.cookies.get("session")
    assert await app.models.throttle.retry_after("alice", "127.0.0.1") > 0


@pytest.mark.gen_test
async def test_unknown_names_are_throttled_alike(make_client, member):
    """The throttle does not tell which names exist either."""
    await member("alice")
    c = make_client()
    await fail_logins(c, "alice", PER_ACCOUNT_IP)
    await fail_logins(c, "nobody", PER_ACCOUNT_IP)
    known, unknown = await c.login("alice", "guess"), await c.login("nobody", "guess")
    assert_throttled(known)
    assert_throttled(unknown)
    assert form_error(text(known)) == form_error(text(unknown))


@pytest.mark.parametrize("minutes_ago,allowed", [(10, False), (WINDOW_MINUTES + 1, True)])
@pytest.mark.gen_test
async def test_failures_count_only_inside_the_window(make_client, db_settings, minutes_ago, allowed, member):
    await member("alice")
    c = make_client()
    await fail_logins(c, "alice", PER_ACCOUNT_IP)
    query(db_settings, "UPDATE login_failures SET failed_at = NOW() - INTERVAL %s MINUTE", (minutes_ago,))
    r = await c.login("alice", PASSWORD)
    if allowed:
        assert r.code == 302
    else:
        assert_throttled(r)
        left = (WINDOW_MINUTES - minutes_ago) * 60  # until the oldest failure leaves the window
        assert left - 10 <= int(r.headers["Retry-After"]) <= left


@pytest.mark.gen_test
async def test_throttle_is_per_account_and_per_ip(make_client, member):
    await member("alice")
    await member("bob")
    c = make_client()
    await fail_logins(c, "alice", PER_ACCOUNT_IP)
    assert_throttled(await c.login("alice", PASSWORD))
    # Another account from the same address is not affected...
    r = await c.login("bob", PASSWORD)
    assert r.code == 302
    # ...nor the same account from another address: a stranger cannot lock a member out.
    other = make_client()
    r = await login_from(other, "alice", PASSWORD, ip=OTHER_IP)
    assert r.code == 302
    assert await is_logged_in(other)


@pytest.mark.gen_test
async def test_successful_login_clears_the_accounts_failures(make_client, db_settings, member):
    await member("alice")
    c = make_client()
    await fail_logins(c, "alice", PER_ACCOUNT_IP - 1)
    assert (await c.login("alice", PASSWORD)).code == 302
    assert count(db_settings, "login_failures", "username = %s", ("alice",)) == 0
    await fail_logins(c, "alice", PER_ACCOUNT_IP - 1)
    assert (await c.login("alice", PASSWORD)).code == 302


@pytest.mark.gen_test(timeout=60)
async def test_per_ip_limit_across_many_usernames(make_client, app, db_settings, member):
    await member("alice")
    c = make_client()
    for i in range(PER_IP):  # one failure each: the per-account limit never trips
        await fail_logins(c, "nobody%d" % i, 1)
    assert count(db_settings, "login_failures") == PER_IP
    assert_throttled(await c.login("alice", PASSWORD))
    assert_throttled(await c.login("someone_new", "whatever"))
    assert await app.models.throttle.retry_after("anyone", "127.0.0.1") > 0
    # Another address still gets in.
    r = await login_from(make_client(), "alice", PASSWORD, ip=OTHER_IP)
    assert r.code == 302


@pytest.mark.gen_test(timeout=30)
async def test_throttle_holds_under_concurrent_guesses(make_client, own_http_client, db_settings, member):
    await member("alice")
    c = make_client()
    c.http = own_http_client()
    await c.get("/login")  # the _xsrf cookie, before the burst
    answers = await asyncio.gather(*[c.login("alice", "guess %d" % i) for i in range(30)])
    guesses_checked = sum(r.code == 400 for r in answers)
    assert guesses_checked <= PER_ACCOUNT_IP, [r.code for r in answers]


# --- log out ------------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_logout_is_post_only(client):
    await client.register()
    r = await client.get("/logout")
    assert r.code == 405
    assert await is_logged_in(client)


@pytest.mark.gen_test
async def test_logout_needs_the_xsrf_token(client):
    await client.register()
    r = await client.post("/logout", xsrf=False)
    assert r.code == 403
    assert await is_logged_in(client)


@pytest.mark.gen_test
async def test_logout_clears_the_cookie_and_ends_the_session(client, make_client, db_settings):
    await client.register()
    old_copy = make_client()
    old_copy.cookies = dict(client.cookies)
    assert count(db_settings, "sessions") == 1
    r = await client.logout()
    assert r.code == 302 and r.headers["Location"] == "/"
    morsel = session_morsel(r)
    assert morsel is not None and morsel.value == "" and cookie_expires(morsel) < utcnow()
    assert not client.cookies.get("session")
    assert count(db_settings, "sessions") == 0
    assert not await is_logged_in(client)
    assert not await is_logged_in(old_copy)  # a copy of the cookie is worthless now


@pytest.mark.gen_test
async def test_logging_in_again_replaces_the_browsers_session(make_client, db_settings, member):
    """A new session at every login; the one the browser already held ends (no fixation)."""
    await member("bob")
    browser = await member("alice")
    before = browser.cookies["session"]
    stale = make_client()
    stale.cookies = dict(browser.cookies)
    r = await browser.login("bob", PASSWORD)
    assert r.code == 302
    assert browser.cookies["session"] != before
    assert count(db_settings, "sessions s JOIN users u ON u.id = s.user_id", "u.username = 'alice'") == 0
    assert not await is_logged_in(stale)
    assert await is_logged_in(browser)


# --- the session cookie -------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["register", "login"])
@pytest.mark.gen_test
async def test_session_cookie_flags_and_expiry(make_client, action, member):
    c = await member() if action == "login" else make_client()
    r = await (c.login() if action == "login" else c.register())
    assert r.code == 302
    morsel = session_morsel(r)
    assert morsel is not None
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert not morsel["secure"]  # plain http here
    assert morsel["path"] == "/"
    assert morsel.value.startswith("2|")  # signed, version 2
    ahead = cookie_expires(morsel) - utcnow()
    assert datetime.timedelta(days=30, minutes=-2) < ahead <= datetime.timedelta(days=30, minutes=1)


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


@pytest.mark.gen_test
async def test_database_keeps_only_a_hash_of_the_token(client, app, db_settings):
    await client.register()
    token = tornado.web.decode_signed_value(
        app.settings["cookie_secret"], "session", client.cookies["session"]
    ).decode()
    (row,) = query(
        db_settings, "SELECT token_hash, TIMESTAMPDIFF(HOUR, NOW(), expires_at) AS hours FROM sessions"
    )
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in row["token_hash"]
    assert 30 * 24 - 1 <= row["hours"] <= 30 * 24


def flip(value, index):
    """The same string with one character changed."""
    ch = value[index]
    return value[:index] + ("1" if ch == "0" else "0") + value[index + 1 :]


@pytest.mark.parametrize("where", ["signature", "token", "timestamp", "name"])
@pytest.mark.gen_test
async def test_tampered_cookie_means_logged_out(client, where):
    await client.register()
    assert await is_logged_in(client)
    value = client.cookies["session"]
    # version 2 layout: 2|1:0|10:<timestamp>|7:session|<n>:<token base64>|<hex signature>
    fields = value.split("|")
    positions = {
        "signature": len(value) - 1,
        "token": len("|".join(fields[:4])) + 1 + fields[4].index(":") + 5,
        "timestamp": len("2|1:0|10:") + 9,
        "name": value.index("session") + 2,
    }
    client.cookies["session"] = flip(value, positions[where])
    assert client.cookies["session"] != value
    r = await client.get("/account")
    assert r.code == 302 and r.headers["Location"] == "/login?next=%2Faccount"


@pytest.mark.parametrize("forge", ["version1", "other_secret", "other_name", "bare_token"])
@pytest.mark.gen_test
async def test_a_cookie_not_signed_by_us_for_this_purpose_is_refused(client, app, forge):
    await client.register()
    secret = app.settings["cookie_secret"]
    token = tornado.web.decode_signed_value(secret, "session", client.cookies["session"])
    assert token  # the real cookie opens the session
    client.cookies["session"] = {
        "version1": lambda: tornado.web.create_signed_value(secret, "session", token, version=1),
        "other_secret": lambda: tornado.web.create_signed_value("not-" + secret, "session", token),
        "other_name": lambda: tornado.web.create_signed_value(secret, "flash", token),
        "bare_token": lambda: token,
    }[forge]().decode()
    assert not await is_logged_in(client)


# Rows changed behind the app's back (no announcement): only seen with the session cache off.
@pytest.mark.parametrize("app_settings", [{"session_cache_seconds": 0}], indirect=True)
@pytest.mark.gen_test
async def test_revoked_or_expired_session_means_logged_out(make_client, db_settings, member):
    revoked = await member()
    expired = make_client()
    assert (await expired.login()).code == 302
    ids = [row["id"] for row in query(db_settings, "SELECT id FROM sessions ORDER BY id")]
    query(db_settings, "DELETE FROM sessions WHERE id = %s", (ids[0],))
    query(db_settings, "UPDATE sessions SET expires_at = NOW() - INTERVAL 1 SECOND WHERE id = %s", (ids[1],))
    assert not await is_logged_in(revoked)
    assert not await is_logged_in(expired)


@pytest.mark.parametrize("app_settings", [{"session_cache_seconds": 0}], indirect=True)
@pytest.mark.gen_test
async def test_last_seen_is_written_at_most_once_a_minute(client, db_settings):
    await client.register()
    r = await client.get("/")
    assert session_morsel(r) is None  # fresh: neither the row nor the cookie is rewritten
    query(
        db_settings,
        "UPDATE sessions SET last_seen = NOW() - INTERVAL 2 MINUTE, expires_at = NOW() + INTERVAL 1 DAY",
    )
    r = await client.get("/")
    morsel = session_morsel(r)
    assert morsel is not None and morsel["httponly"] and morsel["samesite"] == "Lax"
    assert cookie_expires(morsel) - utcnow() > datetime.timedelta(days=29)
    (row,) = query(
        db_settings,
        "SELECT TIMESTAMPDIFF(SECOND, last_seen, NOW()) AS idle,"
        " TIMESTAMPDIFF(HOUR, NOW(), expires_at) AS hours FROM sessions",
    )
    assert row["idle"] < 10 and row["hours"] >= 30 * 24 - 1  # slid 30 days from now
    assert await is_logged_in(client)


# --- anonymous visitors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path,location",
    [
        ("/account", "/login?next=%2Faccount"),
        ("/story/new", "/login?next=%2Fstory%2Fnew"),
    ],
)
@pytest.mark.gen_test
async def test_anonymous_get_of_a_member_page_redirects_to_login(client, path, location):
    r = await client.get(path)
    assert r.code == 302 and r.headers["Location"] == location


@pytest.mark.parametrize(
    "path,data",
    [
        ("/account/password", {"current": PASSWORD, "password": "new password", "confirm": "new password"}),
        ("/account/sessions/revoke", {"all": "1"}),
        ("/story/new", {"title": "T", "body": "B"}),
    ],
)
@pytest.mark.gen_test
async def test_anonymous_post_to_a_member_route_is_forbidden(client, path, data):
    await client.get("/login")
    assert client.xsrf  # a valid token: the refusal is for the missing login, not the token
    r = await client.post(path, data)
    assert_error_page(r, 403, "You are not allowed to do that.")


# --- flash messages -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "action,message",
    [
        ("register", "Welcome, alice! Your account is ready."),
        ("login", "Signed in as alice."),
        ("logout", "You are signed out."),
    ],
)
@pytest.mark.gen_test
async def test_flash_message_shows_once(make_client, action, message):
    c = make_client()
    if action != "register":
        await c.register()
        await c.get("/")  # use up the welcome message
        if action == "login":
            await c.logout()
            await c.get("/")
    r = await getattr(c, action)()
    assert r.code == 302 and r.headers["Location"] == "/"
    r = await c.get("/")
    assert flash(text(r)) == message
    r = await c.get("/")
    assert flash(text(r)) is None


@pytest.mark.gen_test
async def test_flash_cookie_cannot_be_planted(client):
    await client.get("/")
    client.cookies["flash"] = "Your account is locked, call 555-0100"
    r = await client.get("/")
    assert flash(text(r)) is None and "555-0100" not in text(r)
