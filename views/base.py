"""BaseHandler: security headers, the session behind `current_user`, flash messages, error pages."""

import traceback
import urllib.parse

import tornado.web
from tornado.log import app_log, gen_log

from views import i18n

SESSION_COOKIE = "session"
FLASH_COOKIE = "flash"
THEMES = ("light", "dark")

CSP = (
    "default-src 'self'; img-src 'self' https: data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

ERROR_MESSAGES = {
    400: "The request could not be understood.",
    403: "You are not allowed to do that.",
    404: "There is nothing here.",
    405: "That method is not allowed here.",
    413: "That is too large.",
    429: "Too many attempts. Please wait and try again.",
    500: "Something went wrong on our side. It has been logged.",
    503: "The site is briefly unavailable. Please try again in a moment.",
}


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


def loggable_path(request, limit=200):
    """The path for a log line: cut, so a 60 KB path does not fill the log."""
    path = request.path
    return path if len(path) <= limit else path[:limit] + "…[%d chars]" % len(path)


def refuse_oversized_body(handler):
    """413 for a body that application.RequestTracker dropped for being over the limit."""
    if getattr(handler.request, "body_too_large", False):
        raise tornado.web.HTTPError(413, "request body over the limit")


class SessionMixin:
    """Reads the signed session cookie into `current_user`; shared by pages and the chat socket."""

    def session_token(self):
        """The session token from the signed cookie, or None (missing, tampered, too old)."""
        token = self.get_signed_cookie(
            SESSION_COOKIE, max_age_days=self.settings["session_days"], min_version=2
        )
        return token.decode() if token else None

    async def load_session(self):
        token = self.session_token()
        if not token:
            return None
        user = await self.application.sessions.lookup(token)
        if user is None:
            return None
        if user["due_for_touch"]:
            await self.application.sessions.touch(user["session_id"], self.request.remote_ip)
            self.set_session_cookie(token)  # slide the browser's expiry too
        return user

    def set_session_cookie(self, token):
        self.set_signed_cookie(
            SESSION_COOKIE,
            token,
            expires_days=self.settings["session_days"],
            httponly=True,
            samesite="Lax",
        )


class PageMixin:
    """What every HTML response shares, static files and error pages included: security headers,
    the template namespace, the site's error pages, logs without query strings."""

    flash = None

    def set_default_headers(self):
        security_headers(self)

    def set_cookie(self, name, value, **kwargs):
        # Every cookie (session, flash, _xsrf, theme) is Secure when the page came over https,
        # directly or through a proxy that says so (xheaders).
        if self.request.protocol == "https":
            kwargs.setdefault("secure", True)
        super().set_cookie(name, value, **kwargs)

    def index_url(self, query="", page=1):
        """The index URL for a page of results, keeping the search."""
        params = [(k, v) for k, v in (("q", query), ("page", page if page > 1 else "")) if v]
        return self.reverse_url("index") + ("?" + urllib.parse.urlencode(params) if params else "")

    def get_login_url(self):
        return self.reverse_url("login")

    def get_user_locale(self):
        return i18n.user_locale(self)

    def get_browser_locale(self, default=i18n.DEFAULT):
        return i18n.browser_locale(self, default)

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

    # --- errors ---------------------------------------------------------------------------

    too_large_message = ERROR_MESSAGES[413]  # a form's handler says what is too large

    def check_xsrf_cookie(self):
        # Tornado checks XSRF before prepare(): a dropped body has no _xsrf, and deserves the 413.
        refuse_oversized_body(self)
        super().check_xsrf_cookie()

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
            if value.log_message:
                message = value.log_message % value.args if value.args else value.log_message
                gen_log.warning("%d %s: %s", value.status_code, summary, message)
        else:
            app_log.error("Uncaught exception %s", summary, exc_info=(typ, value, tb))

    def write_error(self, status_code, **kwargs):
        # May run before prepare(): Tornado checks XSRF first, so current_user/flash may be unset.
        exc = kwargs.get("exc_info")
        message = ERROR_MESSAGES.get(status_code, self._reason)
        if status_code == 413:
            message = self.too_large_message
        error = str(exc[1]).lower() if exc else ""
        if status_code == 403 and ("xsrf" in error or "origin" in error):
            message = "This form has expired or came from another site. Reload the page and try again."
        elif status_code == 400 and exc and isinstance(exc[1], tornado.web.HTTPError) and exc[1].reason:
            message = exc[1].reason + "."
        # The English messages are the catalogue's keys (a reason it lacks stays English).
        translate = self.locale.translate
        message = translate(message)
        trace = None
        if self.settings.get("serve_traceback") and exc:
            trace = "".join(traceback.format_exception(*exc))
        try:
            self.render(
                "error.html",
                status_code=status_code,
                title=translate(i18n.status_title(status_code)),
                message=message,
                trace=trace,
            )
        except Exception:
            self.finish("%d: %s" % (status_code, message))


class BaseHandler(PageMixin, SessionMixin, tornado.web.RequestHandler):
    needs_session = True  # False where a page never shows who is logged in (no query at all)

    async def prepare(self):
        refuse_oversized_body(self)
        if self.needs_session:
            self.current_user = await self.load_session()
        message = self.get_signed_cookie(FLASH_COOKIE, max_age_days=1, min_version=2)
        if message:
            self.flash = message.decode()
            self.clear_cookie(FLASH_COOKIE)

    def compute_etag(self):
        # Pages carry a fresh masked XSRF token each time, so a body hash never matches: hashing
        # every page would be work for nothing. Handlers with stable bodies set their own ETag.
        return None

    async def head(self, *args, **kwargs):
        # HEAD wherever GET works: the same handler, and Tornado sends the headers without a body.
        if type(self).get is tornado.web.RequestHandler.get:
            raise tornado.web.HTTPError(405)
        result = self.get(*args, **kwargs)
        if result is not None:
            await result

    # --- helpers for handlers -------------------------------------------------------------

    def set_flash(self, message):
        """A one-time message shown on the next page (signed, so nobody can plant one)."""
        self.set_signed_cookie(
            FLASH_COOKIE,
            message,
            expires_days=None,
            httponly=True,
            samesite="Lax",
        )

    async def log_in(self, user_id):
        """Start a new session; a session the browser already had ends (no fixation, no orphans)."""
        old = self.session_token()
        if old:
            await self.application.sessions.delete_token(old)
        token = await self.application.sessions.create(
            user_id, self.request.remote_ip, self.request.headers.get("User-Agent", "")
        )
        self.set_session_cookie(token)

    def next_url(self, default=None):
        target = self.get_argument("next", "")
        return target if is_local_path(target) else (default or self.reverse_url("index"))

    def render_form(self, template, values, errors, status=400, **kwargs):
        """Re-render a form with the user's values and a message per bad field."""
        self.set_status(status)
        errors = {field: self.locale.translate(message) for field, message in errors.items()}
        self.render(template, values=values, field_errors=errors, **kwargs)

    def int_argument(self, name, default, low=1, high=100000):
        """A whole-number query argument in [low, high], or a 400."""
        raw = self.get_query_argument(name, "")
        if raw == "":
            return default
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not low <= int(raw) <= high:
            raise tornado.web.HTTPError(400, "bad query argument", reason="Invalid %s" % name)
        return int(raw)


class NotFoundHandler(BaseHandler):
    """The site's 404 page for paths no route matches (the `default_handler_class`)."""

    async def prepare(self):
        await super().prepare()
        raise tornado.web.HTTPError(404)


class BadHostHandler(BaseHandler):
    """Requests whose Host is not in `allowed_hosts` (chosen in Application.find_handler)."""

    def check_xsrf_cookie(self):
        pass  # the Host is wrong whatever the method: answer 400, not 403

    def check_trusted_origin(self, origin):
        return True

    async def prepare(self):
        raise tornado.web.HTTPError(400, reason="Unknown host")


class StaticFileHandler(PageMixin, tornado.web.StaticFileHandler):
    """Static files with the security headers, and the site's 404 page for a missing one."""

    def parse_url_path(self, url_path):
        # A NUL (from %00) would reach os.stat and raise ValueError: a 500 with a traceback.
        if "\x00" in url_path:
            raise tornado.web.HTTPError(400, reason="Invalid path")
        return super().parse_url_path(url_path)
