"""The index (newest stories, paging, search) and the theme preference cookie."""

from views.base import THEMES, PageHandler, is_local_path
from views.forms import MESSAGES

SEARCH_MAX = 200


class IndexHandler(PageHandler):
    def initialize(self, stories):
        self.stories = stories

    async def get(self):
        page = self.page_argument()
        query = self.get_query_argument("q", "")
        if len(query) > SEARCH_MAX:
            self.set_status(400)
            return self.render(
                "index.html",
                stories=[],
                page=1,
                query=query[:SEARCH_MAX],
                has_next=False,
                search_error=self.locale.translate(MESSAGES["search_long"]) % SEARCH_MAX,
            )
        rows, has_next = await self.stories.page(page, query)
        self.render("index.html", stories=rows, page=page, query=query, has_next=has_next, search_error=None)


class ThemeHandler(PageHandler):
    """POST /theme: a plain preference cookie (set_cookie/get_cookie), nothing secret in it."""

    needs_session = False  # works even while the database is down

    def post(self):
        theme = self.get_body_argument("theme", "")
        if theme in THEMES:
            self.set_cookie("theme", theme, expires_days=365, samesite="Lax")
        else:
            self.clear_cookie("theme")
        back = self.get_body_argument("next", "")
        self.redirect(back if is_local_path(back) else self.reverse_url("index"))
