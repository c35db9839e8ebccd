"""PageCache: a short-lived cache for what the pages read most (the index's pages, a story and
its extras), emptied by every write they could show.

The models that write (stories, attachments, previews) are given the cache and call `bump()`
after each commit. An entry is served only while the version it was made under is still current,
and for at most `ttl` seconds. The version lives:
- in this process, for one process (and the tests);
- in shared memory made before the fork (`share_across_forks`), with `--processes=N`, so a write in
  one process empties the cache of all of them at once: an author sees their story on the next
  page whichever process answers it;
- on other machines, through the bus's "cache" channel (Redis, when `redis_url` is set); without
  Redis (or while it is away), `ttl` bounds how stale another machine can be.

The bus takes a moment to reach another machine, so the member who wrote must not wait for it:
a request run under `reading_fresh()` (views/base.py: for a few seconds after that member's own
write, on whichever machine) reads around the cache.
"""

import asyncio
import collections
import contextlib
import contextvars
import multiprocessing
import time

_shared = {}  # name -> multiprocessing.Value, made before the server forks
_fresh = contextvars.ContextVar("storyhouse_fresh_reads", default=False)  # per request (its Task)


def reading_fresh():
    """From here on in this request (the asyncio Task and what it awaits), every get_or_load
    reads around the cache: the request of a member who has just written."""
    _fresh.set(True)


@contextlib.contextmanager
def fresh_reads():
    """The same for a block (tests, scripts)."""
    token = _fresh.set(True)
    try:
        yield
    finally:
        _fresh.reset(token)


def share_across_forks():
    """Call once before fork_processes: the children then share each version counter."""
    for name in ("pages", "sessions"):
        _shared[name] = multiprocessing.Value("Q", 0)


class Version:
    """A number that only grows, bumped when a cache must empty: this process's own, or one in
    shared memory when the server forked (so every child sees a sibling's bump at once)."""

    def __init__(self, name):
        self.name = name
        self._local = 0

    def value(self):
        shared = _shared.get(self.name)
        return shared.value if shared is not None else self._local

    def bump(self):
        shared = _shared.get(self.name)
        if shared is None:
            self._local += 1
            return
        with shared.get_lock():
            shared.value += 1


class PageCache:
    def __init__(self, ttl=5.0, bus=None, size=512):
        self.ttl = ttl
        self.size = size
        self._version = Version("pages")
        self._entries = collections.OrderedDict()  # key -> (version, expires, value), LRU order
        self._loading = {}  # (key, version) -> Future of the one read in progress
        self.bus = bus
        if bus is not None:
            bus.subscribe("cache", self._changed)

    def version(self):
        return self._version.value()

    def bump(self):
        """Call after every committed write the cached data could show: empties the cache here
        at once, and on every other process and machine through the bus."""
        if self.bus is None:
            self._changed()
        else:
            self.bus.publish("cache", {})  # the bus calls _changed here first

    def _changed(self, event=None):
        """Empty this cache (a write here, or one announced by another machine)."""
        self._version.bump()
        self._entries.clear()

    def get(self, key):
        entry = self._entries.get(key)
        if entry is None:
            return None
        version, expires, value = entry
        if version != self.version() or time.monotonic() > expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key, value, version):
        """Store value as read under `version` (taken before the read, so a write that lands
        during the read makes it stale at once)."""
        self._entries[key] = (version, time.monotonic() + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    async def get_or_load(self, key, load):
        """The cached value, or `await load()` once however many requests ask at the same moment
        (when an entry expires under load, 64 requests would otherwise run 64 identical queries).
        A None result is not cached."""
        version = self.version()
        if _fresh.get():
            value = await load()
            if value is not None:
                self.put(key, value, version)  # as fresh as it gets: others may have it too
            return value
        value = self.get(key)
        if value is not None:
            return value
        pending = self._loading.get((key, version))
        if pending is not None:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._loading[(key, version)] = future
        try:
            value = await load()
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._loading[(key, version)]
        future.set_result(value)
        if value is not None:
            self.put(key, value, version)
        return value
