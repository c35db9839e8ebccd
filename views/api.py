"""The JSON API's handler kind (ApiHandler), the current member, the OpenAPI document, and JSON
errors for every path under /api/, unknown ones included. The stories are views/api_stories.py.

Two ways in: the browser's session cookie (writes also need the X-XSRFToken header, as the
pages' own JavaScript would send it), or `Authorization: Bearer <token>` with a personal token from
/account. A request that carries an Authorization header is judged by it alone: a bad or revoked
token is a 401 even when a session cookie rides along, which is what makes skipping the XSRF
checks for such requests safe (a cross-site page can send neither the header nor the token).
"""

import json

from tornado.web import RequestHandler

from views import openapi
from views.base import BaseMixin
from views.errors import Refusal, error_message, field_messages

BODY_MAX = 768 * 1024  # JSON escapes can triple a 100 KB story; the server itself stops at 1 MB
PAGE_MAX = 100000


class ApiHandler(BaseMixin, RequestHandler):
    """JSON in, JSON out, JSON errors (in English: clients read them); the member from a Bearer
    token or the session cookie."""

    translate_errors = False
    strict_numbers = True
    xsrf_message = (
        "Missing or wrong XSRF token: send the X-XSRFToken header with the _xsrf cookie's value,"
        " or use an API token."
    )
    too_large_message = "The body is too large: at most %d KB." % (BODY_MAX // 1024)
    page_message = "page must be a whole number from 1 to %(high)d."

    def __init_subclass__(cls, **kwargs):
        # A method the class does not implement is a 405 (with Allow) before any XSRF check.
        super().__init_subclass__(**kwargs)
        if "SUPPORTED_METHODS" not in cls.__dict__:
            implemented = {
                m
                for m in RequestHandler.SUPPORTED_METHODS
                if getattr(cls, m.lower()) is not getattr(RequestHandler, m.lower())
            }
            if "GET" in implemented:
                implemented.add("HEAD")  # HEAD wherever GET works, as on the pages
            cls.SUPPORTED_METHODS = tuple(m for m in RequestHandler.SUPPORTED_METHODS if m in implemented)

    def set_default_headers(self):
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")

    # --- authentication ---

    def credential(self):
        """The Authorization header's Bearer token; "" for any other or malformed header; None without one."""
        header = self.request.headers.get("Authorization")
        if header is None:
            return None
        scheme, _, token = header.strip().partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

    def check_xsrf_cookie(self):
        if self.credential() is None:  # the cookie is the credential: the XSRF token must match
            super().check_xsrf_cookie()
        else:
            self.refuse_oversized_body()

    def check_trusted_origin(self, origin):
        return self.credential() is not None or super().check_trusted_origin(origin)

    async def prepare(self):
        self.refuse_oversized_body()
        fresh = self.read_fresh_if_wrote()
        token = self.credential()
        if token is None:
            user = await self.load_session()
            self.current_user = user and dict(user, auth="session")
            self.allow_stale_reads(fresh)
            return
        # A token's client keeps no cookie that would say it just wrote: it reads the primary.
        user = await self.application.models.tokens.lookup(token) if token else None
        if user is None:
            raise Refusal(401, "The API token is missing, malformed or revoked.")
        self.current_user = dict(user, auth="token")

    def member(self):
        """The current member, or a 401."""
        if not self.current_user:
            raise Refusal(401, "Log in, or send an API token (Authorization: Bearer ...).")
        return self.current_user

    # --- input ---

    def json_body(self, fields):
        """The body as a JSON object whose keys are among `fields` and whose values are strings."""
        mime, _, params = self.request.headers.get("Content-Type", "").partition(";")
        charset = params.strip().lower().replace(" ", "")
        if mime.strip().lower() != "application/json" or charset not in ("", "charset=utf-8"):
            raise Refusal(415, "Send the body as application/json (UTF-8).")
        if len(self.request.body) > BODY_MAX:
            raise Refusal(413, self.too_large_message)
        try:
            data = json.loads(self.request.body.decode("utf-8"))
        except UnicodeDecodeError:
            raise Refusal(400, "The body is not valid UTF-8.") from None
        except (ValueError, RecursionError):
            raise Refusal(400, "The body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise Refusal(400, "The body must be a JSON object.")
        unknown = sorted(k for k in data if k not in fields)
        if unknown:
            names = ", ".join(json.dumps(k[:40]) for k in unknown[:5])
            raise Refusal(
                400,
                "Unknown field: %(names)s. Send only %(allowed)s.",
                names=names,
                allowed=", ".join(fields),
            )
        for name, value in data.items():
            if not isinstance(value, str):
                raise Refusal(
                    400, "%(name)s must be a string.", fields={name: "Must be a string."}, name=name
                )
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate (\\ud800) cannot be stored
                raise Refusal(400, "%(name)s contains an invalid character.", name=name) from None
        return data

    # --- output ---

    def absolute(self, path):
        return "%s://%s%s" % (self.request.protocol, self.request.host, path)

    def write_error(self, status_code, **kwargs):
        # May run before prepare() (XSRF, 405): nothing here may rely on current_user.
        exc = kwargs.get("exc_info", (None, None, None))[1]
        self.error_headers(exc)
        error = {"status": status_code, "message": error_message(self, status_code, exc)}
        if isinstance(exc, Refusal) and exc.fields:
            error["fields"] = field_messages(self, exc)
        if status_code == 405:
            self.set_header("Allow", ", ".join(self.SUPPORTED_METHODS))
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="storyhouse"')
        self.finish({"error": error})


class ApiNotFoundHandler(ApiHandler):
    """Every /api/ path no route serves: a JSON 404 whatever the method (no XSRF check to fail)."""

    SUPPORTED_METHODS = RequestHandler.SUPPORTED_METHODS

    def check_xsrf_cookie(self):
        pass

    def check_trusted_origin(self, origin):
        return True

    async def prepare(self):
        raise Refusal(404, "No such API route. The routes are described at /api/openapi.json.")


class OpenApiHandler(ApiHandler):
    def get(self):
        self.write(openapi.document())


class MeHandler(ApiHandler):
    def get(self):
        user = self.member()
        self.write({"id": user["id"], "username": user["username"], "auth": user["auth"]})
