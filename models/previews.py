"""Link preview cards: the http/https links of a story, fetched with AsyncHTTPClient and cached in MySQL.

A save schedules `refresh_story(id)` and does not wait for it. Each fetch: connect and request
timeouts, a size cap (the streaming callback keeps at most `cap` bytes and the client's own
`max_body_size` ends the connection just past it), at most 3 redirects followed by hand so each
hop is checked again, only text/html parsed (html.parser, charset honoured). SSRF: the client's
resolver drops every address that is not public (models/ssrf.py). What a link and a page are:
models/links.py.
"""

import asyncio
import json
import logging
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.httputil import HTTPHeaders

from models.db import DatabaseUnavailable
from models.links import MAX_LINKS, fetchable, parse_page, url_hash
from models.ssrf import PublicOnlyResolver, RefusedAddress

log = logging.getLogger("storyhouse.previews")

TIMEOUT = 3.0  # seconds, connect and whole request
SIZE_CAP = 512 * 1024
MAX_REDIRECTS = 3
CONCURRENCY = 4  # fetches at once per process
FRESH_OK = 24 * 3600  # seconds before a card is fetched again
FRESH_FAILED = 3600  # a failure is retried sooner
USER_AGENT = "StoryhousePreview/1.0 (+link previews)"
REDIRECT_CODES = (301, 302, 303, 307, 308)


# --- fetching ----------------------------------------------------------------------------------


class _Download:
    """What one response delivered: status, headers (kept by the header callback, so they are
    there even when the connection is cut at the cap) and at most `cap` bytes of body."""

    def __init__(self, cap):
        self.cap = cap
        self.code = None
        self.headers = HTTPHeaders()
        self.chunks = []
        self.size = 0

    def on_header(self, line):
        if line.startswith("HTTP/"):  # a status line: a new response (after a 1xx) starts over
            self.code = int(line.split(" ", 2)[1]) if len(line.split(" ")) > 1 else None
            self.headers = HTTPHeaders()
        elif line.strip():
            self.headers.parse_line(line)

    def on_chunk(self, chunk):
        room = self.cap - self.size
        if room > 0:
            self.chunks.append(chunk[:room])
            self.size += min(room, len(chunk))

    @property
    def body(self):
        return b"".join(self.chunks)


class Failure(Exception):
    """A link that gives no card, with a short reason kept in the cache."""


class LinkPreviews:
    def __init__(
        self,
        db,
        cache,
        enabled=True,
        allow_private=False,
        timeout=TIMEOUT,
        cap=SIZE_CAP,
        concurrency=CONCURRENCY,
        exempt=frozenset(),
    ):
        self.db = db
        self.cache = cache  # models.cache.PageCache: story pages show the cards
        self.enabled = enabled
        self.allow_private = allow_private
        self.timeout = timeout
        self.cap = cap
        self.exempt = exempt
        self._semaphore = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._client = None  # made on first use, on the loop that uses it
        self._parse_executor = ThreadPoolExecutor(1, thread_name_prefix="previews")
        self._in_flight = {}  # url -> task, so one URL is fetched once at a time
        self.tasks = set()  # background refreshes, kept referenced until done

    @property
    def client(self):
        if self._client is None:
            self._client = AsyncHTTPClient(
                force_instance=True,
                max_clients=self._concurrency,
                resolver=PublicOnlyResolver(allow_private=self.allow_private, exempt=self.exempt),
                # Past the cap the client ends the connection by itself (quietly), gzip included.
                max_body_size=self.cap,
            )
        return self._client

    # --- scheduling ---

    def schedule(self, story_id):
        """Refresh a story's cards in the background; the caller does not wait."""
        if self.enabled:
            self._spawn(self.refresh_story(story_id))

    def _spawn(self, coro):
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def idle(self):
        """Wait until no background refresh is running (tests, and a graceful stop)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    async def refresh_story(self, story_id):
        try:
            # The links were extracted when the story was saved: no HTML is parsed on the loop.
            row = await self.db.fetch_one("SELECT links FROM stories WHERE id = %s", (story_id,))
            if row is not None and row["links"] is not None:
                await self.refresh_links(json.loads(row["links"]))
        except DatabaseUnavailable:
            pass  # the next view of the story schedules it again
        except Exception:
            log.exception("link previews for story %s", story_id)

    async def refresh_links(self, urls):
        stale = [u for u in urls if u not in await self._fresh(urls)]
        await asyncio.gather(*(self._refresh_once(u) for u in stale))

    def _refresh_once(self, url):
        if url not in self._in_flight:
            task = asyncio.get_running_loop().create_task(self._refresh(url))
            self._in_flight[url] = task
            task.add_done_callback(lambda _: self._in_flight.pop(url, None))
        return self._in_flight[url]

    async def _refresh(self, url):
        async with self._semaphore:
            try:
                title, description = await self.fetch(url)
                ok, error = True, ""
            except Failure as e:
                title, description, ok, error = "", "", False, str(e)[:200]
            except Exception:  # a bug shows in the log; the link just gets no card
                log.exception("link preview of %s", url[:200])
                title, description, ok, error = "", "", False, "internal error"
        await self.db.execute(
            "INSERT INTO link_previews (url_hash, url, ok, title, description, error)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE ok = VALUES(ok),"
            " title = VALUES(title), description = VALUES(description), error = VALUES(error),"
            " fetched_at = NOW()",
            (url_hash(url), url, ok, title, description, error),
        )
        self.cache.bump()  # the story pages that show this card

    # --- the cache ---

    async def _rows(self, urls):
        if not urls:
            return {}
        hashes = [url_hash(u) for u in urls[:MAX_LINKS]]
        hashes += [""] * (MAX_LINKS - len(hashes))  # a fixed statement: five placeholders
        rows = await self.db.fetch_all(
            "SELECT url, ok, title, description, error,"
            " fetched_at > NOW() - INTERVAL IF(ok, %s, %s) SECOND AS fresh"
            " FROM link_previews WHERE url_hash IN (%s, %s, %s, %s, %s)",
            (FRESH_OK, FRESH_FAILED, *hashes),
        )
        return {row["url"]: row for row in rows}

    async def _fresh(self, urls):
        return {url for url, row in (await self._rows(urls)).items() if row["fresh"]}

    async def cards_for(self, links):
        """The cards that exist for a story's links (its `links`, extracted when it was saved), in
        link order: [{url, title, description}]. Missing or stale ones are refreshed in the
        background."""
        urls = list(links)[:MAX_LINKS]
        rows = await self._rows(urls)
        if self.enabled and any(u not in rows or not rows[u]["fresh"] for u in urls):
            self._spawn(self.refresh_links(urls))
        return [
            {"url": u, "title": rows[u]["title"], "description": rows[u]["description"]}
            for u in urls
            if u in rows and rows[u]["ok"]
        ]

    async def cached(self, url):
        """The cache row of one URL (tests and diagnostics), or None."""
        return await self.db.fetch_one(
            "SELECT url, ok, title, description, error, fetched_at FROM link_previews WHERE url_hash = %s",
            (url_hash(url),),
        )

    # --- one link ---

    async def fetch(self, url):
        """(title, description) of the page at url, following at most MAX_REDIRECTS redirects, each
        checked again; raises Failure."""
        for _hop in range(MAX_REDIRECTS + 1):
            if not fetchable(url):
                raise Failure("not an http(s) URL")
            download = _Download(self.cap)
            request = HTTPRequest(
                url,
                follow_redirects=False,  # followed below, so every hop goes through the checks
                connect_timeout=self.timeout,
                request_timeout=self.timeout,
                header_callback=download.on_header,
                streaming_callback=download.on_chunk,
                headers={"User-Agent": USER_AGENT, "Accept": "text/html"},
            )
            try:
                await self.client.fetch(request, raise_error=False)
            except RefusedAddress:
                raise Failure("refused address") from None
            except HTTPClientError as e:
                # A body cut short (the client ends the connection at the cap; or a timeout) still
                # has its head, which is all a card needs. With nothing received, it is a failure.
                if not (download.code == 200 and download.size):
                    length = download.headers.get("Content-Length", "").strip()
                    too_large = length.isdigit() and int(length) > self.cap
                    raise Failure(
                        "larger than the cap" if too_large else "HTTP error: %s" % e.message
                    ) from None
            except (OSError, ValueError) as e:
                raise Failure("%s: %s" % (type(e).__name__, e)) from None
            if download.code in REDIRECT_CODES and download.headers.get("Location"):
                url = urllib.parse.urljoin(url, download.headers["Location"].strip())
                continue
            if download.code != 200:
                raise Failure("HTTP %s" % download.code)
            content_type = download.headers.get("Content-Type", "")
            if content_type.split(";")[0].strip().lower() != "text/html":
                raise Failure("not HTML: %s" % content_type[:60])
            loop = asyncio.get_running_loop()
            title, description = await loop.run_in_executor(
                self._parse_executor, parse_page, download.body, content_type
            )
            if not title and not description:
                raise Failure("no title")
            return title, description
        raise Failure("too many redirects")

    def close(self):
        for task in list(self.tasks):
            task.cancel()
        if self._client is not None:
            self._client.close()
        self._parse_executor.shutdown(wait=False, cancel_futures=True)
