"""The handler hierarchy, as jupyter_server has it:

    BaseMixin           headers, argument decoding, logging, Secure cookies, the session,
                        typed XSRF/origin refusals, oversized bodies, HEAD wherever GET works
    ├── PageMixin       HTML: the template namespace, flash messages, the site's error pages
    │   ├── PageHandler         every page (views/*.py)
    │   └── StaticFileHandler   static/ (and attachments, views/uploads.py)
    ├── ApiHandler      JSON in and out, JSON errors, Bearer tokens (views/api.py)
    └── SocketHandler   WebSockets: the session at the handshake, frames (views/sockets.py)

An error is raised anywhere as an HTTPError or a views.errors.Refusal and worded in one place,
views.errors.error_message(); each kind only says how it is sent.
"""

import time
import traceback
import urllib.parse

import tornado.web
from tornado.log import app_log, gen_log

from models.cache import reading_fresh
from models.db import reading_may_be_stale
from models.validate import whole_number
from serving.tracking import loggable_path
from views import i18n
from views.errors import Refusal, XsrfRefusal, error_message, field_messages

SESSION_COOKIE = "session"
FLASH_COOKIE = "flash"
FRESH_COOKIE = "fresh"  # when this browser last wrote: its reads skip the page cache a moment
FRESH_SECONDS = 10  # longer than the bus takes to reach every machine, even a busy one
THEMES = ("light", "dark")

CSP = (
    "default-src 'self'; img-src 'self' https: data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def security_headers(handler):
    """Headers every response carries (Django's defaults and OWASP's advice)."""
    handler.set_header("Content-Security-Policy", CSP)
    handler.set_header("X-Frame-Options", "DENY")
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.set_header("Referrer-Policy", "same-origin")
    if handler.request.protocol == "https":
        handler.set_header("Strict-Transport-Security", "max-age=31536000; includeSubDomains")


def is_local_path(target):
    """Only same-site paths: refuses absolute URLs, //host and /\\host, and anything but printable
    ASCII (what we generate is percent-encoded; a raw DEL or newline would break the header)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return False
    if not all(0x21 <= ord(c) <= 0x7E for c in target):
        return False
    parts = urllib.parse.urlsplit(target)
    return not parts.scheme and not parts.netloc


class BaseMixin:
    """What every handler shares, pages, API, sockets and static files alike."""

    translate_errors = True  # error sentences in the reader's language (the API: English)
    xsrf_message = "This form has expired or came from another site. Reload the page and try again."
    too_large_message = "That is too large."  # a form's handler says what is too large

    def set_default_headers(self):
        security_headers(self)

    def set_cookie(self, name, value, **kwargs):
        # Every cookie (session, flash, _xsrf, theme) is Secure when the page came over https,
        # directly or through a proxy that says so (xheaders).
        if self.request.protocol == "https":
            kwargs.setdefault("secure", True)
        super().set_cookie(name, value, **kwargs)

    def decode_argument(self, value, name=None):
        # Tornado's own error quotes the undecodable bytes, which then reach the log: a password
        # with one bad byte would be written out. Name the argument, never its value.
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise tornado.web.HTTPError(400, "invalid UTF-8 in %s", name or "the URL") from None

    def log_exception(self, typ, value, tb):
        # Tornado's own summary includes the query string; ours keeps tokens out of the logs.
        summary = "%s %s (%s)" % (self.request.method, loggable_path(self.request), self.request.remote_ip)
        if isinstance(value, tornado.web.HTTPError):
            if value.get_message():
                gen_log.warning("%d %s: %s", value.status_code, summary, value.get_message())
        else:
            app_log.error("Uncaught exception %s", summary, exc_info=(typ, value, tb))

    # --- checks Tornado runs before prepare() ------------------------------------------------

    def refuse_oversized_body(self):
        """413 for a body that serving.tracking dropped for being over the limit."""
        if getattr(self.request, "body_too_large", False):
            raise tornado.web.HTTPError(413, "request body over the limit")

    def check_xsrf_cookie(self):
        self.refuse_oversized_body()  # a dropped body has no _xsrf, and deserves the 413
        site = self.request.headers.get("Sec-Fetch-Site")
        if site in ("cross-site", "same-site") and "Origin" not in self.request.headers:
            # Tornado refuses this too, but without asking check_trusted_origin: untyped.
            raise XsrfRefusal("Sec-Fetch-Site %s without an Origin" % site)
        try:
            super().check_xsrf_cookie()
        except tornado.web.HTTPError as e:
            if e.status_code != 403:
                raise  # an _xsrf that is not even UTF-8: a 400
            raise XsrfRefusal(e.get_message()) from None

    def check_trusted_origin(self, origin):
        # Tornado asks only for requests that look cross-origin; a False would be its own
        # untyped 403, so the refusal is raised here, typed.
        if origin in self.settings.get("trusted_origins", ()):
            return True
        raise XsrfRefusal("origin %r not trusted" % origin[:100])

    async def head(self, *args, **kwargs):
        # HEAD wherever GET works: the same handler, and Tornado sends the headers without a body.
        if type(self).get is tornado.web.RequestHandler.get:
            raise tornado.web.HTTPError(405)
        result = self.get(*args, **kwargs)
        if result is not None:
            await result

    # --- the session ----------------------------------------------------------------------

    def session_token(self):
        """The session token from the signed cookie, or None (missing, tampered, too old)."""
        token = self.get_signed_cookie(
            SESSION_COOKIE, max_age_days=self.settings["session_days"], min_version=2
        )
        return token.decode() if token else None

    async def load_session(self):
        """The member of this browser's live session, or None."""
        token = self.session_token()
        if not token:
            return None
        sessions = self.application.models.sessions
        user = await sessions.lookup(token)
        if user is None:
            return None
        if user["due_for_touch"]:
            await sessions.touch(user["session_id"], self.request.remote_ip, token)
            self.set_session_cookie(token)  # slide the browser's expiry too
        return user

    def set_session_cookie(self, token):
        self.set_signed_cookie(
            SESSION_COOKIE, token, expires_days=self.settings["session_days"], httponly=True, samesite="Lax"
        )

    def get_user_locale(self):
        return i18n.user_locale(self)

    def get_browser_locale(self, default=i18n.DEFAULT):
        return i18n.browser_locale(self, default)

    # --- input ----------------------------------------------------------------------------

    page_message = "Invalid page."
    strict_numbers = False  # an empty ?page= is page 1 on pages; the API's schema says integer

    def page_argument(self, high=100000):
        """The ?page= number: 1 when absent, a 400 unless it is a whole number in [1, high]."""
        given = self.get_query_arguments("page", strip=not self.strict_numbers)
        if not given:
            return 1
        raw = given[-1]
        if raw == "" and not self.strict_numbers:
            return 1
        value = whole_number(raw, 1, high)
        if value is None:
            raise Refusal(400, self.page_message, high=high)
        return value

    def wrote(self):
        """This member has just changed something: for FRESH_SECONDS their reads skip the page
        cache on every machine (the bus may not have emptied the others' caches yet)."""
        self.set_cookie(
            FRESH_COOKIE, str(int(time.time())), max_age=FRESH_SECONDS, httponly=True, samesite="Lax"
        )

    def read_fresh_if_wrote(self):
        """True (and reads around the page cache) when this browser wrote a moment ago."""
        stamp = whole_number(self.get_cookie(FRESH_COOKIE, ""))
        if stamp is not None and 0 <= time.time() - stamp <= FRESH_SECONDS:
            reading_fresh()
            return True
        return False

    def allow_stale_reads(self, fresh):
        """A GET of someone who has not just written may read from a replica (models/replicas.py).
        Called once the session is read: that lookup always asks the primary."""
        if not fresh and self.request.method in ("GET", "HEAD"):
            reading_may_be_stale()

    def error_headers(self, exc):
        if isinstance(exc, Refusal):
            for name, value in exc.headers.items():
                self.set_header(name, value)


class PageMixin(BaseMixin):
    """HTML responses: the template namespace and the site's error pages."""

    flash = None

    def index_url(self, query="", page=1):
        """The index URL for a page of results, keeping the search."""
        params = [(k, v) for k, v in (("q", query), ("page", page if page > 1 else "")) if v]
        return self.reverse_url("index") + ("?" + urllib.parse.urlencode(params) if params else "")

    def get_login_url(self):
        return self.reverse_url("login")

    def get_template_namespace(self):
        namespace = super().get_template_namespace()
        theme = self.get_cookie("theme")
        namespace.update(
            flash=self.flash,
            theme=theme if theme in THEMES else "",
            field_errors={},
            values={},
            index_url=self.index_url,
        )
        namespace.update(i18n.namespace(self))
        return namespace

    def render(self, template_name, **kwargs):
        if self.current_user:
            # A member's page shows their data (the header at least) and carries their XSRF
            # token: never kept by a shared cache or the back button's disk cache.
            self.set_header("Cache-Control", "no-store")
        return super().render(template_name, **kwargs)

    def write_error(self, status_code, **kwargs):
        # May run before prepare(): Tornado checks XSRF first, so current_user/flash may be unset.
        exc = kwargs.get("exc_info", (None, None, None))[1]
        self.error_headers(exc)
        message = error_message(self, status_code, exc)
        trace = None
        if self.settings.get("serve_traceback") and "exc_info" in kwargs:
            trace = "".join(traceback.format_exception(*kwargs["exc_info"]))
        try:
            self.render(
                "error.html",
                status_code=status_code,
                title=self.locale.translate(i18n.status_title(status_code)),
                message=message,
                trace=trace,
            )
        except Exception:
            self.finish("%d: %s" % (status_code, message))


class PageHandler(PageMixin, tornado.web.RequestHandler):
    """Every page. `current_user` is the member of the session (or None), read in prepare()."""

    needs_session = True  # False where a page never shows who is logged in (no query at all)

    async def prepare(self):
        self.refuse_oversized_body()
        fresh = self.read_fresh_if_wrote()
        if self.needs_session:
            self.current_user = await self.load_session()
        self.allow_stale_reads(fresh)
        message = self.get_signed_cookie(FLASH_COOKIE, max_age_days=1, min_version=2)
        if message:
            self.flash = message.decode()
            self.clear_cookie(FLASH_COOKIE)

    def compute_etag(self):
        # Pages carry a fresh masked XSRF token each time, so a body hash never matches: hashing
        # every page would be work for nothing. Handlers with stable bodies set their own ETag.
        return None

    def redirect(self, url, permanent=False, status=None):
        # A member's form that changed something ends in a redirect (POST/redirect/GET): the page
        # they land on, on whichever machine, must show their change.
        if self.request.method == "POST" and self.current_user:
            self.wrote()
        super().redirect(url, permanent=permanent, status=status)

    def set_flash(self, message):
        """A one-time message shown on the next page (signed, so nobody can plant one)."""
        self.set_signed_cookie(FLASH_COOKIE, message, expires_days=None, httponly=True, samesite="Lax")

    async def log_in(self, user_id):
        """Start a new session; a session the browser already had ends (no fixation, no orphans)."""
        sessions = self.application.models.sessions
        old = self.session_token()
        if old:
            await sessions.delete_token(old)
        token = await sessions.create(
            user_id, self.request.remote_ip, self.request.headers.get("User-Agent", "")
        )
        self.set_session_cookie(token)

    def next_url(self, default=None):
        target = self.get_argument("next", "")
        return target if is_local_path(target) else (default or self.reverse_url("index"))

    def render_form(self, template, values, errors, status=400, **kwargs):
        """Re-render a form with the user's values and a message per bad field: `errors` maps a
        field to a catalogue key, or is a Refusal whose fields say it."""
        self.set_status(status)
        if isinstance(errors, Refusal):
            errors = field_messages(self, errors)
        else:
            errors = {field: self.locale.translate(message) for field, message in errors.items()}
        self.render(template, values=values, field_errors=errors, **kwargs)


class NotFoundHandler(PageHandler):
    """The site's 404 page for paths no route matches (the `default_handler_class`)."""

    async def prepare(self):
        await super().prepare()
        raise tornado.web.HTTPError(404)


class BadHostHandler(PageHandler):
    """Requests whose Host is not in `allowed_hosts` (chosen in Application.find_handler)."""

    def check_xsrf_cookie(self):
        pass  # the Host is wrong whatever the method: answer 400, not 403

    def check_trusted_origin(self, origin):
        return True

    async def prepare(self):
        raise Refusal(400, "Unknown host.")


class StaticFileHandler(PageMixin, tornado.web.StaticFileHandler):
    """Static files with the security headers, and the site's 404 page for a missing one."""

    def parse_url_path(self, url_path):
        # A NUL (from %00) would reach os.stat and raise ValueError: a 500 with a traceback.
        if "\x00" in url_path:
            raise Refusal(400, "Invalid path.")
        return super().parse_url_path(url_path)

    def head(self, path):
        # Tornado's own HEAD for files (no body read from disk), not the pages' HEAD → GET.
        return tornado.web.StaticFileHandler.head(self, path)
