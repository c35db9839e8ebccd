"""The JSON API (/api/...): stories, the current member, the OpenAPI document, and JSON errors for
every path under /api/, unknown ones included.

Two ways in: the browser's session cookie (writes also need the X-XSRFToken header, as the
pages' own JavaScript would send it), or `Authorization: Bearer <token>` with a personal token from
/account. A request that carries an Authorization header is judged by it alone: a bad or revoked
token is a 401 even when a session cookie rides along, which is what makes skipping the XSRF
checks for such requests safe (a cross-site page can send neither the header nor the token).
"""

import datetime
import json
import math

import tornado.httputil
import tornado.web
from tornado.web import HTTPError, RequestHandler

from models.stories import AlreadyPublished, TooLarge, TooManyStories, TooMuchMarkup
from views import openapi
from views.base import ERROR_MESSAGES, PageMixin, SessionMixin, security_headers
from views.forms import MESSAGES, story_errors, story_values
from views.index import SEARCH_MAX

MAX_ID = 2**32 - 1
BODY_MAX = 768 * 1024  # JSON escapes can triple a 100 KB story; the server itself stops at 1 MB
PAGE_MAX = 100000
XSRF_MESSAGE = (
    "Missing or wrong XSRF token: send the X-XSRFToken header with the _xsrf cookie's value,"
    " or use an API token."
)


class ApiError(HTTPError):
    """An error whose message the client may read; `fields` maps a field to its message."""

    def __init__(self, status, message, fields=None, headers=None):
        super().__init__(status)
        self.message = message
        self.fields = fields
        self.headers = headers or {}


def iso(moment):
    """ISO 8601 with the time zone: MySQL keeps UTC (the pool sets time_zone = '+00:00')."""
    return moment.replace(tzinfo=datetime.UTC).isoformat()


class ApiHandler(SessionMixin, RequestHandler):
    """JSON in, JSON out, JSON errors; the member from a Bearer token or the session cookie."""

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

    async def head(self, *args):
        result = self.get(*args)
        if result is not None:
            await result

    def set_default_headers(self):
        security_headers(self)
        self.set_header("Cache-Control", "no-store")

    decode_argument = PageMixin.decode_argument  # a 400 that names the argument, never its bytes
    log_exception = PageMixin.log_exception  # no query strings (or tokens) in the log

    # --- authentication ---

    def credential(self):
        """The Authorization header's Bearer token; "" for any other or malformed header; None without one."""
        header = self.request.headers.get("Authorization")
        if header is None:
            return None
        scheme, _, token = header.strip().partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

    def refuse_oversized_body(self):
        # application.RequestTracker read a body over 1 MB to its end and dropped it.
        if getattr(self.request, "body_too_large", False):
            raise ApiError(413, "The body is too large: at most %d KB." % (BODY_MAX // 1024))

    def check_xsrf_cookie(self):
        self.refuse_oversized_body()  # runs before prepare(): a dropped body deserves the 413
        if self.credential() is None:  # the cookie is the credential: the XSRF token must match
            super().check_xsrf_cookie()

    def check_trusted_origin(self, origin):
        return self.credential() is not None or super().check_trusted_origin(origin)

    async def prepare(self):
        self.refuse_oversized_body()
        token = self.credential()
        if token is None:
            user = await self.load_session()
            self.current_user = user and dict(user, auth="session")
            return
        user = await self.application.tokens.lookup(token) if token else None
        if user is None:
            raise ApiError(401, "The API token is missing, malformed or revoked.")
        self.current_user = dict(user, auth="token")

    def member(self):
        """The current member, or a 401."""
        if not self.current_user:
            raise ApiError(401, "Log in, or send an API token (Authorization: Bearer ...).")
        return self.current_user

    # --- input ---

    def json_body(self, fields):
        """The body as a JSON object whose keys are among `fields` and whose values are strings."""
        mime, _, params = self.request.headers.get("Content-Type", "").partition(";")
        charset = params.strip().lower().replace(" ", "")
        if mime.strip().lower() != "application/json" or charset not in ("", "charset=utf-8"):
            raise ApiError(415, "Send the body as application/json (UTF-8).")
        if len(self.request.body) > BODY_MAX:
            raise ApiError(413, "The body is too large: at most %d KB." % (BODY_MAX // 1024))
        try:
            data = json.loads(self.request.body.decode("utf-8"))
        except UnicodeDecodeError:
            raise ApiError(400, "The body is not valid UTF-8.") from None
        except (ValueError, RecursionError):
            raise ApiError(400, "The body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise ApiError(400, "The body must be a JSON object.")
        unknown = sorted(k for k in data if k not in fields)
        if unknown:
            names = ", ".join(json.dumps(k[:40]) for k in unknown[:5])
            raise ApiError(400, "Unknown field: %s. Send only %s." % (names, ", ".join(fields)))
        for name, value in data.items():
            if not isinstance(value, str):
                raise ApiError(400, "%s must be a string." % name, {name: "Must be a string."})
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate (\\ud800) cannot be stored
                raise ApiError(400, "%s contains an invalid character." % name) from None
        return data

    def page_argument(self):
        # Absent is page 1; present, it is an integer as the schema says ("page=" is a 400).
        given = self.get_query_arguments("page", strip=False)
        if not given:
            return 1
        raw = given[-1]
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not 1 <= int(raw) <= PAGE_MAX:
            raise ApiError(400, "page must be a whole number from 1 to %d." % PAGE_MAX)
        return int(raw)

    # --- output ---

    def absolute(self, path):
        return "%s://%s%s" % (self.request.protocol, self.request.host, path)

    def write_error(self, status_code, **kwargs):
        # May run before prepare() (XSRF, 405): nothing here may rely on current_user.
        exc = kwargs.get("exc_info", (None, None, None))[1]
        error = {"status": status_code, "message": ERROR_MESSAGES.get(status_code, self._reason)}
        if isinstance(exc, ApiError):
            error["message"] = exc.message
            if exc.fields:
                error["fields"] = exc.fields
            for name, value in exc.headers.items():
                self.set_header(name, value)
        elif isinstance(exc, HTTPError):
            text = str(exc).lower()
            if status_code == 403 and ("xsrf" in text or "origin" in text):
                error["message"] = XSRF_MESSAGE
            elif status_code == 400 and exc.log_message:  # Tornado's own 400s: missing argument, bad UTF-8
                error["message"] = (exc.log_message % exc.args if exc.args else exc.log_message) + "."
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
        raise ApiError(404, "No such API route. The routes are described at /api/openapi.json.")


class OpenApiHandler(ApiHandler):
    def get(self):
        self.write(openapi.document())


class MeHandler(ApiHandler):
    def get(self):
        user = self.member()
        self.write({"id": user["id"], "username": user["username"], "auth": user["auth"]})


class StoryApiMixin:
    def initialize(self, stories, previews, attachments):
        self.stories = stories
        self.previews = previews
        self.attachments = attachments

    def attachment(self, row):
        return {
            "id": row["id"],
            "filename": row["filename"],
            "content_type": row["content_type"],
            "size": row["size"],
            "created_at": iso(row["created_at"]),
            "url": self.absolute(self.reverse_url("attachment", row["id"])),
        }

    def summary(self, row):
        return {
            "id": row["id"],
            "title": row["title"],
            "excerpt": row["excerpt"],
            "author": row["author"],
            "created_at": iso(row["created_at"]),
            "url": self.absolute(self.reverse_url("story", row["id"])),
        }

    async def detail(self, row):
        return {
            "id": row["id"],
            "title": row["title"],
            "body": row["body"],
            "body_html": row["body_html"],
            "author": row["author"],
            "created_at": iso(row["created_at"]),
            "updated_at": iso(row["updated_at"]),
            "url": self.absolute(self.reverse_url("story", row["id"])),
            "previews": await self.previews.cards_for(row["links"]),
            "attachments": [self.attachment(a) for a in await self.attachments.for_story(row["id"])],
        }

    async def validated(self, title, body):
        title, body = story_values(title, body)
        errors = story_errors(title, body)
        if errors:
            raise ApiError(400, " ".join(errors.values()), errors)
        return title, body

    async def saved(self, write):
        """Run a create/update with the model's own limits, as the form does, with its messages."""
        try:
            return await write()
        except (TooLarge, TooMuchMarkup) as e:
            message = MESSAGES["body_expands" if isinstance(e, TooLarge) else "body_markup"]
            raise ApiError(400, message, {"body": message}) from None
        except TooManyStories as e:
            limit = self.settings["stories_per_hour"]
            message = MESSAGES["stories_per_hour"] % {
                "limit": limit,
                "minutes": math.ceil(e.retry_after / 60),
            }
            raise ApiError(429, message, headers={"Retry-After": str(e.retry_after)}) from None


class StoriesApiHandler(StoryApiMixin, ApiHandler):
    async def get(self):
        page = self.page_argument()
        query = self.get_query_argument("q", "")
        if len(query) > SEARCH_MAX:
            message = MESSAGES["search_long"] % SEARCH_MAX
            raise ApiError(400, message, {"q": message})
        rows, has_next = await self.stories.page(page, query)
        following = None
        if has_next:
            args = {"page": page + 1, **({"q": query} if query else {})}
            following = self.absolute(tornado.httputil.url_concat(self.reverse_url("api_stories"), args))
        self.write({"items": [self.summary(r) for r in rows], "page": page, "next": following})

    async def post(self):
        user = self.member()
        data = self.json_body(("title", "body"))
        title, body = await self.validated(data.get("title", ""), data.get("body", ""))
        per_hour = self.settings["stories_per_hour"]
        try:
            story_id = await self.saved(
                lambda: self.stories.create(user["id"], title, body, per_hour=per_hour)
            )
        except AlreadyPublished as e:  # the same story moments ago (a retried request): that one
            story = await self.stories.get(e.story_id)
            self.set_header("Location", self.reverse_url("api_story", e.story_id))
            return self.write(await self.detail(story))
        self.previews.schedule(story_id)
        story = await self.stories.get(story_id)
        self.set_status(201)
        self.set_header("Location", self.reverse_url("api_story", story_id))
        self.write(await self.detail(story))


class StoryApiHandler(StoryApiMixin, ApiHandler):
    async def get_story(self, story_id, check_owner=False):
        story = await self.stories.get(int(story_id)) if int(story_id) <= MAX_ID else None
        if story is None:
            raise ApiError(404, "No story has that id.")
        if check_owner and story["user_id"] != self.member()["id"]:
            raise ApiError(403, "Only the story's author may change it.")
        return story

    async def get(self, story_id):
        self.write(await self.detail(await self.get_story(story_id)))

    async def patch(self, story_id):
        self.member()
        data = self.json_body(("title", "body"))
        if not data:
            raise ApiError(400, "Send title, body or both.")
        story = await self.get_story(story_id, check_owner=True)
        title, body = await self.validated(data.get("title", story["title"]), data.get("body", story["body"]))
        await self.saved(lambda: self.stories.update(story["id"], story["user_id"], title, body))
        self.previews.schedule(story["id"])
        self.write(await self.detail(await self.get_story(story_id)))

    async def delete(self, story_id):
        self.member()
        story = await self.get_story(story_id, check_owner=True)
        await self.stories.delete(story["id"], story["user_id"])
        self.set_status(204)
