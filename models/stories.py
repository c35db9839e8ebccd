"""Stories: list, search, read, write. The author's name always comes from a JOIN on users."""

import asyncio
import json

from models import markdown, reading, search
from models.links import extract_links
from models.validate import valid_id

PAGE_SIZE = 20
_COLUMNS = (
    "SELECT s.id, s.user_id, s.title, s.body, s.body_html, s.excerpt, s.reading_minutes, s.links,"
    " s.created_at, s.updated_at, u.username AS author FROM stories s JOIN users u ON u.id = s.user_id"
)
# The index needs no bodies (20 of them could weigh 2 MB). STRAIGHT_JOIN: stories first, newest
# first by primary key, so LIMIT stops after the page; left to itself, MariaDB read users first
# and sorted every story (360 ms with 10,000 stories instead of 1 ms; checked with EXPLAIN).
_LIST_COLUMNS = (
    "SELECT s.id, s.user_id, s.title, s.excerpt, s.reading_minutes, s.created_at, u.username AS author"
    " FROM stories s STRAIGHT_JOIN users u ON u.id = s.user_id"
)


DUPLICATE_SECONDS = 30  # the same title and body again within this long is a double submit


def links_json(body_html):
    """The story's preview links as stored in stories.links: parsing 1 MB of HTML takes 0.3 s, so
    it is done once, when the story is saved (or backfilled), never when it is read."""
    return json.dumps(extract_links(body_html), ensure_ascii=False)


def _render(title, body):
    body_html = markdown.render(body)
    minutes = reading.minutes(markdown.plain_text(body_html))
    return (
        body_html,
        markdown.excerpt(body_html),
        search.document(title, body),
        minutes,
        links_json(body_html),
    )


TooLarge = markdown.TooLarge
TooMuchMarkup = markdown.TooMuchMarkup


class AlreadyPublished(Exception):
    """The member posted this very story moments ago (a double click, a resent form)."""

    def __init__(self, story_id):
        super().__init__(story_id)
        self.story_id = story_id


class TooManyStories(Exception):
    """The member's stories-per-hour limit is used up; `retry_after` in seconds."""

    def __init__(self, retry_after):
        super().__init__(retry_after)
        self.retry_after = retry_after


class Stories:
    """Rows are plain dicts; those from page() and get() may come from the cache and are shared:
    read them, never change them."""

    def __init__(self, db, render_executor, cache, attachments=None, previews=None):
        self.db = db
        self.previews = previews  # models.previews.LinkPreviews: cards for the links, fetched later
        self.cache = cache  # models.cache.PageCache: page() and get(), emptied by every write
        self.attachments = attachments  # models.attachments.Attachments: files go with the story
        self._render_executor = render_executor

    async def render(self, title, body):
        """(body_html, excerpt, search_text, reading_minutes, links), made on the render executor;
        raises TooLarge or TooMuchMarkup."""
        return await asyncio.get_running_loop().run_in_executor(self._render_executor, _render, title, body)

    async def page(self, page=1, query="", page_size=PAGE_SIZE):
        """Newest first; returns (rows, has_next). With query, stories holding every word of it
        (models/search.py), through the FULLTEXT index."""
        terms = search.query(query) if query else None
        if query and terms is None:  # nothing searchable in it (only punctuation, say)
            return [], False

        async def load():
            offset = (page - 1) * page_size
            if terms:
                rows = await self.db.fetch_all(
                    _LIST_COLUMNS + " WHERE MATCH (s.search_text) AGAINST (%s IN BOOLEAN MODE)"
                    " ORDER BY s.id DESC LIMIT %s OFFSET %s",
                    (terms, page_size + 1, offset),
                )
            else:
                rows = await self.db.fetch_all(
                    _LIST_COLUMNS + " ORDER BY s.id DESC LIMIT %s OFFSET %s", (page_size + 1, offset)
                )
            return rows[:page_size], len(rows) > page_size

        return await self.cache.get_or_load(("page", page, terms, page_size), load)

    async def count(self, query=""):
        """How many stories page() pages through: one COUNT(*), cached like the pages."""
        terms = search.query(query) if query else None
        if query and terms is None:
            return 0

        async def load():
            if terms:
                row = await self.db.fetch_one(
                    "SELECT COUNT(*) AS n FROM stories"
                    " WHERE MATCH (search_text) AGAINST (%s IN BOOLEAN MODE)",
                    (terms,),
                )
            else:
                row = await self.db.fetch_one("SELECT COUNT(*) AS n FROM stories")
            return row["n"]

        return await self.cache.get_or_load(("count", terms), load)

    async def get(self, story_id):
        """The story with `links` as a list (its preview links, made when it was saved), or None."""
        if not valid_id(story_id):
            return None

        async def load():
            row = await self.db.fetch_one(_COLUMNS + " WHERE s.id = %s", (story_id,))
            if row is not None:
                stored = row["links"] if row["links"] is not None else await self._links(row)
                row["links"] = json.loads(stored)
            return row

        return await self.cache.get_or_load(("story", story_id), load)

    async def _links(self, row):
        # A row written without them (by SQL, or by an older process during a rolling update):
        # made once on the render executor, off the loop, and kept.
        links = await asyncio.get_running_loop().run_in_executor(
            self._render_executor, links_json, row["body_html"]
        )
        await self.db.execute(
            "UPDATE stories SET links = %s WHERE id = %s AND links IS NULL", (links, row["id"])
        )
        return links

    async def create(self, user_id, title, body, per_hour=30):
        """Insert a story; returns its id. Raises AlreadyPublished for the same story again within
        DUPLICATE_SECONDS and TooManyStories past `per_hour` creations in the last hour (deleted
        stories count); both checks and the inserts are one transaction holding the member's row,
        so parallel posts cannot slip between them."""
        body_html, excerpt, terms, minutes, links = await self.render(title, body)

        def insert(cur):
            cur.execute("SELECT id FROM users WHERE id = %s FOR UPDATE", (user_id,))
            cur.execute(
                "SELECT id, title, body FROM stories"
                " WHERE user_id = %s AND created_at > NOW() - INTERVAL %s SECOND ORDER BY id DESC",
                (user_id, DUPLICATE_SECONDS),
            )
            for row in cur.fetchall():
                if row["title"] == title and row["body"] == body:  # exactly, not by collation
                    raise AlreadyPublished(row["id"])
            # Creations, not survivors: a story deleted at once still counts (story_creations).
            cur.execute(
                "SELECT COUNT(*) AS n, TIMESTAMPDIFF(SECOND, NOW(), MIN(created_at) + INTERVAL 1 HOUR)"
                " AS wait FROM story_creations WHERE user_id = %s AND created_at > NOW() - INTERVAL 1 HOUR",
                (user_id,),
            )
            recent = cur.fetchone()
            if recent["n"] >= per_hour:
                raise TooManyStories(max(1, recent["wait"] or 1))
            cur.execute(
                "INSERT INTO stories (user_id, title, body, body_html, excerpt, reading_minutes, search_text,"
                " links) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (user_id, title, body, body_html, excerpt, minutes, terms, links),
            )
            story_id = cur.lastrowid
            cur.execute(
                "INSERT INTO story_creations (story_id, user_id) VALUES (%s, %s)", (story_id, user_id)
            )
            return story_id

        story_id = await self.db.transaction(insert)
        self.cache.bump()
        self._schedule_previews(story_id)
        return story_id

    async def update(self, story_id, user_id, title, body):
        """Rewrite the story if user_id owns it; returns True when it did."""
        body_html, excerpt, terms, minutes, links = await self.render(title, body)
        result = await self.db.execute(
            "UPDATE stories SET title = %s, body = %s, body_html = %s, excerpt = %s, reading_minutes = %s,"
            " search_text = %s, links = %s, updated_at = NOW() WHERE id = %s AND user_id = %s",
            (title, body, body_html, excerpt, minutes, terms, links, story_id, user_id),
        )
        self.cache.bump()
        self._schedule_previews(story_id)
        return result.rowcount > 0

    def _schedule_previews(self, story_id):
        if self.previews is not None:
            self.previews.schedule(story_id)  # in the background: the writer does not wait

    async def delete_old_creations(self):
        """Housekeeping: forget creations older than the stories-per-hour window; returns how many."""
        result = await self.db.execute(
            "DELETE FROM story_creations WHERE created_at < NOW() - INTERVAL 1 HOUR"
        )
        return result.rowcount

    async def delete(self, story_id, user_id):
        """Delete the story if user_id owns it; returns True when it did. Its attachments' rows
        go with it (ON DELETE CASCADE), their files once that has committed."""

        def delete(cur):
            names = self.attachments.lock_story_files(cur, story_id) if self.attachments else []
            cur.execute("DELETE FROM stories WHERE id = %s AND user_id = %s", (story_id, user_id))
            return cur.rowcount > 0, names

        deleted, names = await self.db.transaction(delete)
        self.cache.bump()
        if deleted and names:
            await self.attachments.remove_files(names)
        return deleted
