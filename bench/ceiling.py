"""The ceiling: a bare Tornado app rendering the app's own templates from in-memory data.

It is built from the project's modules so it stays true when they change: the same template
directory, the same ui_modules (views.modules), the same page mixin (views.base.PageMixin: headers,
template namespace), and every named route of application.Application, so reverse_url() answers
exactly as in the app. The rows come once, at start, from the app's own models.stories.Stories
against the benchmark database; after that no request touches the database, the session table or
the access log. The difference between the app and this is what the app's own per-request work
(queries, the session, logging) costs.

    .venv/bin/python bench/ceiling.py --port=18813 --mysql_database=storyhouse_bench_pages \
        --story_id=5000 --query=lighthouse --username=writer0001 [--api_json=FILE]
"""

import asyncio
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tornado.web  # noqa: E402
from tornado.httpserver import HTTPServer  # noqa: E402
from tornado.options import define, options  # noqa: E402
from tornado.web import url  # noqa: E402

import config  # noqa: E402
from views import modules  # noqa: E402
from views.base import SESSION_COOKIE, PageMixin  # noqa: E402
from views.index import PAGE_SIZE, page_numbers  # noqa: E402

define("story_id", type=int, default=1, help="the story /story/<id> shows")
define("query", type=str, default="", help="the search /?q= benchmarks")
define("pages", type=int, multiple=True, default=[1, 50], help="index pages to hold in memory")
define("username", type=str, default="", help="who a request with a session cookie is")
define("api_json", type=str, default="", help="the app's own /api/stories answer, served re-encoded")

DATA = {}


class CeilingHandler(PageMixin, tornado.web.RequestHandler):
    def get_current_user(self):
        # A session cookie (any value) stands for the benchmark member: no lookup.
        return DATA["user"] if self.get_cookie(SESSION_COOKIE) else None


class IndexHandler(CeilingHandler):
    def get(self):
        page = int(self.get_query_argument("page", "1"))
        query = self.get_query_argument("q", "")
        rows, has_next = DATA["pages"].get((page, query)) or DATA["pages"][(1, "")]
        total = DATA["totals"].get(query, 0)
        pages = max(1, math.ceil(total / PAGE_SIZE))
        self.render(
            "index.html",
            stories=rows,
            page=page,
            query=query,
            has_next=has_next,
            total=total,
            pages=pages,
            numbers=page_numbers(page, pages) if pages > 1 else [],
            search_error=None,
        )


class StoryHandler(CeilingHandler):
    def get(self, story_id):
        # The arguments views/stories.py StoryHandler passes, read once (DATA).
        self.render(
            "story.html", story=DATA["story"], attachments=DATA["attachments"], previews=DATA["previews"]
        )


class LoginHandler(CeilingHandler):
    def get(self):
        self.render("login.html", values={"next": self.get_query_argument("next", "")})


class ApiStoriesHandler(tornado.web.RequestHandler):
    def get(self):
        if DATA.get("api") is None:
            raise tornado.web.HTTPError(404)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.write(json.dumps(DATA["api"]))


class Elsewhere(CeilingHandler):
    def get(self, *args):
        raise tornado.web.HTTPError(404)


def make_app(real):
    """The ceiling's Application: every named route of the real one (same patterns, same names),
    the three measured pages on the handlers above, the rest answering 404."""
    handlers = {
        "index": IndexHandler,
        "story": StoryHandler,
        "login": LoginHandler,
        "api_stories": ApiStoriesHandler,
    }
    routes = []
    for name, rule in real.wildcard_router.named_rules.items():
        routes.append(url(rule.matcher.regex.pattern, handlers.get(name, Elsewhere), name=name))
    settings = config.settings(cookie_secret="ceiling", debug=False)
    for key in ("allowed_hosts", "max_upload_mb", "upload_dir", "redis_url", "argon2"):
        settings.pop(key, None)
    return tornado.web.Application(
        routes,
        ui_modules=modules,
        default_handler_class=Elsewhere,
        log_function=lambda handler: None,
        **settings,
    )


async def load(real):
    """The rows the app would show, read once through the app's own models (real.models)."""
    stories = real.models.stories
    DATA["pages"] = {(page, ""): await stories.page(page, "") for page in options.pages}
    DATA["totals"] = {"": await stories.count("")}
    if options.query:
        DATA["pages"][(1, options.query)] = await stories.page(1, options.query)
        DATA["totals"][options.query] = await stories.count(options.query)
    DATA["story"] = await stories.get(options.story_id)
    DATA["attachments"] = await real.models.attachments.for_story(options.story_id)
    DATA["previews"] = await real.models.previews.cards_for(DATA["story"]["links"])  # no fetch: disabled
    user = await real.models.db.fetch_one(
        "SELECT id, username FROM users WHERE username = %s", (options.username,)
    )
    DATA["user"] = user or {"id": 0, "username": options.username or "member"}
    if options.api_json:
        with open(options.api_json, encoding="utf-8") as f:
            DATA["api"] = json.load(f)


async def main():
    from application import Application

    config.parse()
    real = Application(cookie_secret="ceiling")  # built for its routes and models, then closed
    try:
        await load(real)
        app = make_app(real)
    finally:
        real.close()
    app.models = real.models  # what templates reach (application.models.attachments)
    server = HTTPServer(app)
    server.listen(options.port, "127.0.0.1")
    print("ceiling listening on http://127.0.0.1:%d/" % options.port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
