"""Fixtures: a real MariaDB test database (created and migrated once, emptied before each test),
the Application on it, the HTTP server built as server.py builds it, a cookie-keeping client and
new members in browsers of their own; and for the browser tests, Chromium and its contexts."""

import datetime
import email.utils
import http.cookies
import os
import urllib.parse

import pytest
from tornado.httpclient import AsyncHTTPClient

import config
from application import Application
from models import migrate
from serving.connections import make_http_server
from tests.browser import CHROMIUM, CHROMIUM_ARGS, skip_or_fail
from tests.helpers import PASSWORD, cookie_header, raw_connection

# Separate names let several test runs share one server (the default is for CI and users).
TEST_DATABASE = os.environ.get("STORYHOUSE_TEST_DB", "storyhouse_test")
CHEAP_ARGON2 = dict(time_cost=1, memory_cost=1024, parallelism=1)  # fast tests, same code path


@pytest.fixture(scope="session")
def db_settings():
    """MySQL settings for the test database, created from scratch and migrated once a session."""
    config.parse(["pytest"])  # reads var/storyhouse.conf when scripts/setup made an account
    settings = dict(config.mysql_settings(), database=TEST_DATABASE)
    con = raw_connection(settings)
    with con.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS " + TEST_DATABASE)
    con.close()
    migrate.migrate(**settings)
    return settings


@pytest.fixture
def clean_db(db_settings):
    """Empty every table (but the migration record) so each test starts from nothing."""
    con = raw_connection(db_settings, TEST_DATABASE)
    with con.cursor() as cur:
        cur.execute(
            "SELECT table_name AS t FROM information_schema.tables"
            " WHERE table_schema = %s AND table_name <> 'schema_migrations'",
            (TEST_DATABASE,),
        )
        tables = [row["t"] for row in cur.fetchall()]
        cur.execute("SET FOREIGN_KEY_CHECKS = 0")
        for table in tables:
            cur.execute("TRUNCATE TABLE `" + table + "`")
        cur.execute("SET FOREIGN_KEY_CHECKS = 1")
    con.close()
    return db_settings


@pytest.fixture
def app_settings(request):
    """Settings overrides for the app fixture: a test module may override this fixture, one test
    may pass its own with @pytest.mark.parametrize("app_settings", [{...}], indirect=True)."""
    return dict(getattr(request, "param", {}))


@pytest.fixture
def app(clean_db, app_settings, io_loop):
    # link_previews off: stories in tests link to real hosts, and tests reach nothing but loopback
    # (tests/test_previews.py turns them on against its own upstream).
    settings = dict(cookie_secret="test-cookie-secret", argon2=CHEAP_ARGON2, link_previews=False)
    settings.update(app_settings)
    application = Application(db_settings=clean_db, pool_size=4, **settings)
    yield application
    application.close()


@pytest.fixture
def http_server(request, io_loop, _unused_port, app):
    """pytest-tornado's server, but built like server.py's (1 MB body limit)."""
    srv = make_http_server(app)
    srv.add_socket(_unused_port[0])
    yield srv
    srv.stop()
    io_loop.run_sync(srv.close_all_connections, timeout=5)


class Client:
    """A user's browser in a test: keeps cookies and sends the _xsrf token with every POST."""

    def __init__(self, http_client, base_url):
        self.http = http_client
        self.base_url = base_url
        self.cookies = {}

    def _remember(self, response):
        for header in response.headers.get_list("Set-Cookie"):
            jar = http.cookies.SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                expires = morsel["expires"] and email.utils.parsedate_to_datetime(morsel["expires"])
                if morsel["max-age"] == "0" or (expires and expires < datetime.datetime.now(datetime.UTC)):
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    async def fetch(self, path, method="GET", body=None, headers=None, **kwargs):
        headers = dict(headers or {})
        if self.cookies:
            headers.setdefault("Cookie", cookie_header(self.cookies))
        response = await self.http.fetch(
            path if path.startswith(("http://", "https://")) else self.base_url + path,
            method=method,
            body=body,
            headers=headers,
            follow_redirects=False,
            raise_error=False,
            **kwargs,
        )
        self._remember(response)
        return response

    async def get(self, path, **kwargs):
        return await self.fetch(path, **kwargs)

    @property
    def xsrf(self):
        return self.cookies.get("_xsrf", "")

    async def post(self, path, data=(), xsrf=True, headers=None):
        """POST a form; data is a dict or a list of pairs (for repeated fields)."""
        if xsrf and not self.xsrf:
            await self.get("/login")  # any page sets the _xsrf cookie
        pairs = list(data.items()) if isinstance(data, dict) else list(data)
        if xsrf:
            pairs.append(("_xsrf", self.xsrf))
        return await self.fetch(path, "POST", urllib.parse.urlencode(pairs), headers=headers)

    async def register(self, username="alice", password=PASSWORD, confirm=None):
        return await self.post(
            "/register",
            {"username": username, "password": password, "confirm": password if confirm is None else confirm},
        )

    async def login(self, username="alice", password=PASSWORD, next_url=None):
        data = {"username": username, "password": password}
        if next_url is not None:
            data["next"] = next_url
        return await self.post("/login", data)

    async def logout(self):
        return await self.post("/logout")

    async def new_story(self, title="A title", body="Once upon a time."):
        response = await self.post("/story/new", {"title": title, "body": body})
        assert response.code == 302, response.body
        return int(response.headers["Location"].rsplit("/", 1)[1])


@pytest.fixture
def client(http_client, base_url):
    return Client(http_client, base_url)


@pytest.fixture
def make_client(http_client, base_url):
    """More browsers, each with its own cookies."""
    return lambda: Client(http_client, base_url)


@pytest.fixture
def member(make_client):
    """A new browser in which a new member has registered (and so is logged in):
    `bob = await member("bob")`."""

    async def register(username="alice", password=PASSWORD):
        browser = make_client()
        r = await browser.register(username, password)
        assert r.code == 302, r.body
        return browser

    return register


@pytest.fixture
def own_http_client():
    """An HTTP client of its own, for many requests in flight (the shared one allows 10)."""
    clients = []

    def make(max_clients=100):
        c = AsyncHTTPClient(force_instance=True, max_clients=max_clients)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


# --- browser tests (tests/browser.py) ---------------------------------------------------------


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium through Playwright's sync API, one a test module (browser tests only)."""
    from playwright.sync_api import Error, sync_playwright

    if not os.path.exists(CHROMIUM):
        skip_or_fail(
            "Debian's Chromium (/usr/bin/chromium) is not installed, so the browser tests are "
            "skipped (scripts/test installs it as root)."
        )
    try:
        playwright = sync_playwright().start()
    except Exception as e:  # the driver is a Node binary; it needs libatomic1 on a minimal Debian
        skip_or_fail("Playwright's driver did not start (%s), so the browser tests are skipped." % e)
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    except Error as e:
        playwright.stop()
        skip_or_fail("Chromium did not start (%s), so the browser tests are skipped." % e)
    try:
        yield browser
    finally:
        browser.close()
        playwright.stop()


@pytest.fixture
def browser_context(chromium):
    """New browser contexts (each its own cookies), closed after the test:
    `browser_context(**Playwright context options)`, with 10 s timeouts."""
    contexts = []

    def make(**kwargs):
        context = chromium.new_context(**kwargs)
        context.set_default_timeout(10000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()
