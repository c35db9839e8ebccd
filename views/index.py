"""The index (newest stories, paging, search) and the theme preference cookie."""

import asyncio
import math

from models.stories import PAGE_SIZE
from views.base import THEMES, PageHandler, is_local_path
from views.forms import MESSAGES

SEARCH_MAX = 200


def page_numbers(page, pages, around=2):
    """The pager's numbers: the first, the last and `around` either side of `page`, with None
    where a run of numbers is left out (1 … 4 5 [6] 7 8 … 20)."""
    shown = sorted({1, pages, *range(max(1, page - around), min(pages, page + around) + 1)})
    numbers = []
    for n in shown:
        if numbers and n - numbers[-1] == 2:
            numbers.append(n - 1)  # a gap of one number: show it rather than "…"
        elif numbers and n - numbers[-1] > 2:
            numbers.append(None)
        numbers.append(n)
    return numbers


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
                total=0,
                pages=1,
                numbers=[],
                search_error=self.locale.translate(MESSAGES["search_long"]) % SEARCH_MAX,
            )
        (rows, has_next), total = await asyncio.gather(
            self.stories.page(page, query), self.stories.count(query)
        )
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
