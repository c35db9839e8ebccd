"""Stories: list, search, read, write. The author's name always comes from a JOIN on users."""

import asyncio

from models import markdown

PAGE_SIZE = 20
_COLUMNS = (
    "SELECT s.id, s.user_id, s.title, s.body, s.body_html, s.created_at, s.updated_at,"
    " u.username AS author FROM stories s JOIN users u ON u.id = s.user_id"
)
_LIST_COLUMNS = (  # the index needs no bodies: 20 of them could weigh 2 MB
    "SELECT s.id, s.user_id, s.title, s.excerpt, s.created_at, u.username AS author"
    " FROM stories s JOIN users u ON u.id = s.user_id"
)


def like_pattern(text):
    """A LIKE pattern that matches text literally (%, _ and \\ escaped), anywhere in the column."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return "%" + escaped + "%"


def _render(body):
    body_html = markdown.render(body)
    return body_html, markdown.excerpt(body_html)


TooLarge = markdown.TooLarge


class Stories:
    def __init__(self, db, render_executor, attachments=None):
        self.db = db
        self.attachments = attachments  # models.attachments.Attachments: files go with the story
        # Markdown is CPU work: off the IOLoop, on a small executor of its own (one thread, so
        # renders queue instead of contending with the loop for the GIL).
        self._render_executor = render_executor

    async def render(self, body):
        """(body_html, excerpt) for a Markdown body, made on the render executor; raises TooLarge."""
        return await asyncio.get_running_loop().run_in_executor(self._render_executor, _render, body)

    async def page(self, page=1, query="", page_size=PAGE_SIZE):
        """Newest first; returns (rows, has_next). With query, title or body contains it literally."""
        offset = (page - 1) * page_size
        if query:
            pattern = like_pattern(query)
            rows = await self.db.fetch_all(
                _LIST_COLUMNS
                + " WHERE s.title LIKE %s OR s.body LIKE %s ORDER BY s.id DESC LIMIT %s OFFSET %s",
                (pattern, pattern, page_size + 1, offset),
            )
        else:
            rows = await self.db.fetch_all(
                _LIST_COLUMNS + " ORDER BY s.id DESC LIMIT %s OFFSET %s", (page_size + 1, offset)
            )
        return rows[:page_size], len(rows) > page_size

    async def get(self, story_id):
        return await self.db.fetch_one(_COLUMNS + " WHERE s.id = %s", (story_id,))

    async def create(self, user_id, title, body):
        """Insert a story; returns its id (lastrowid)."""
        body_html, excerpt = await self.render(body)
        result = await self.db.execute(
            "INSERT INTO stories (user_id, title, body, body_html, excerpt) VALUES (%s, %s, %s, %s, %s)",
            (user_id, title, body, body_html, excerpt),
        )
        return result.lastrowid

    async def update(self, story_id, user_id, title, body):
        """Rewrite the story if user_id owns it; returns True when it did."""
        body_html, excerpt = await self.render(body)
        result = await self.db.execute(
            "UPDATE stories SET title = %s, body = %s, body_html = %s, excerpt = %s, updated_at = NOW()"
            " WHERE id = %s AND user_id = %s",
            (title, body, body_html, excerpt, story_id, user_id),
        )
        return result.rowcount > 0

    async def delete(self, story_id, user_id):
        """Delete the story if user_id owns it; returns True when it did. Its attachments' rows
        go with it (ON DELETE CASCADE), their files once that has committed."""

        def delete(cur):
            names = self.attachments.lock_story_files(cur, story_id) if self.attachments else []
            cur.execute("DELETE FROM stories WHERE id = %s AND user_id = %s", (story_id, user_id))
            return cur.rowcount > 0, names

        deleted, names = await self.db.transaction(delete)
        if deleted and names:
            await self.attachments.remove_files(names)
        return deleted
