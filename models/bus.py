"""The bus: how an event reaches every process, on named channels. One small interface, two
implementations: `LocalBus` (one process, the default) and `RedisBus` (Redis pub/sub across
processes and machines, with who-is-online kept in per-process Redis keys that expire when a
process dies).

The channels, and who listens (docs/ARCHITECTURE.md draws them):
    "chat"      chat messages, joins and leaves          models/room.py
    "cache"     a write the page cache could show        models/cache.py
    "sessions"  a member's session(s) ended              models/room.py (their sockets close)

The interface:
    bus.subscribe(channel, handler)   before start(); handler(event) runs on the loop
    await bus.start()
    bus.publish(channel, event)       to this process's handlers at once, then to the other
                                      processes (never blocks, never raises)
    bus.set_presence(names)           the usernames connected to this process (written soon)
    await bus.write_presence(names)   the same, written before it returns
    await bus.others_online()         the usernames connected to the other processes
    bus.generation                    changes when events from other processes may have been missed
    await bus.stop()
A process delivers its own events itself, so it never waits for Redis and keeps working while
Redis is away.
"""

import asyncio
import json
import logging
import os
import random
import socket
import time
import uuid

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger("storyhouse.bus")


CHANNELS = ("chat", "cache", "sessions")


class Subscriptions:
    """Handlers by channel, shared by both buses."""

    def __init__(self):
        self.handlers = {name: [] for name in CHANNELS}

    def subscribe(self, channel, handler):
        self.handlers[channel].append(handler)

    def deliver(self, channel, event):
        for handler in self.handlers.get(channel, ()):
            try:
                handler(event)
            except Exception:
                log.exception("bus: a %s handler failed", channel)


class LocalBus(Subscriptions):
    """Everything stays in this process: nobody else publishes, nobody else is online."""

    generation = 0  # never reconnects: what this process saw is all there is

    async def start(self):
        pass

    def publish(self, channel, event):
        self.deliver(channel, event)

    def set_presence(self, names):
        pass

    async def write_presence(self, names):
        pass

    async def others_online(self):
        return set()

    async def stop(self):
        pass


class RedisBus(Subscriptions):
    """Redis pub/sub, one Redis channel per bus channel (`<prefix>:<name>`); presence as one SET
    per process with an expiry, refreshed while the process lives, listed in a sorted set
    (process id → last refresh)."""

    def __init__(self, url, prefix="storyhouse", presence_ttl=30.0, max_backoff=10.0):
        super().__init__()
        self.url = url
        self.id = "%s:%d:%s" % (socket.gethostname(), os.getpid(), uuid.uuid4().hex[:8])
        self.prefix = prefix
        self.channels = {prefix + ":" + name: name for name in CHANNELS}
        self.procs_key = prefix + ":chat:procs"
        self.presence_prefix = prefix + ":chat:presence:"
        self.presence_ttl = presence_ttl
        self.max_backoff = max_backoff
        self.connected = False
        self.generation = 0  # +1 at every (re)connection: events may have been missed before it
        self._down_logged = False
        self._names = set()
        self._redis = None
        self._outbox = None
        self._tasks = []
        self._presence_dirty = None
        self._online_query = None

    async def start(self):
        # A few connections, waited for rather than opened per caller: 10,000 joins at once must
        # not become 10,000 Redis connections. No hidden retries inside redis-py: a failure
        # surfaces at once, and our loop backs off.
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=8,
            timeout=5,
            socket_connect_timeout=2,
            socket_timeout=5,
            retry=Retry(NoBackoff(), 0),
        )
        self._redis = aioredis.Redis.from_pool(pool)  # closes the pool when closed
        self._outbox = asyncio.Queue(maxsize=10000)
        self._presence_dirty = asyncio.Event()
        self._first_try = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._subscribe_loop()),
            asyncio.create_task(self._publish_loop()),
            asyncio.create_task(self._presence_loop()),
        ]
        # Serve once the first attempt is over (connected or not): the first members to join
        # then see the other processes' members.
        try:
            await asyncio.wait_for(self._first_try.wait(), 3)
        except TimeoutError:
            pass

    # --- sending --------------------------------------------------------------------------

    def publish(self, channel, event):
        self.deliver(channel, event)
        if not self.connected:
            return  # chat messages are in MySQL (history); the page cache's ttl bounds the rest
        try:
            self._outbox.put_nowait(
                (self.prefix + ":" + channel, json.dumps({"from": self.id, "event": event}))
            )
        except asyncio.QueueFull:
            log.warning("bus: Redis is not keeping up, an event was not sent to other processes")

    async def _publish_loop(self):
        # One publisher, in order: events of this process reach the others in the order sent.
        while True:
            channel, data = await self._outbox.get()
            try:
                await self._redis.publish(channel, data)
            except (RedisError, OSError) as e:
                self._went_down(e)

    # --- receiving ------------------------------------------------------------------------

    async def _subscribe_loop(self):
        delay = 0.25
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(*self.channels)
                await self._write_presence()
                if self._down_logged:
                    log.warning("bus: Redis at %s is back; events cross processes again", self._where())
                    self._down_logged = False
                self.connected = True
                self.generation += 1
                self._first_try.set()
                delay = 0.25
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        self._received(message["channel"], message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as e:
                self._went_down(e)
                self._first_try.set()
            finally:
                try:
                    await pubsub.aclose()
                except (RedisError, OSError):
                    pass
            await asyncio.sleep(delay * random.uniform(0.75, 1.25))
            delay = min(delay * 2, self.max_backoff)

    def _went_down(self, error):
        if not self._down_logged:  # once per outage, not once per retry
            self._down_logged = True
            log.warning(
                "bus: lost Redis at %s (%s); each process serves its own clients, reconnecting",
                self._where(),
                error,
            )
        self.connected = False
        while not self._outbox.empty():  # stale by the time Redis is back
            self._outbox.get_nowait()

    def _where(self):
        pool = self._redis.connection_pool.connection_kwargs
        return "%s:%s" % (pool.get("host", "?"), pool.get("port", "?"))

    def _received(self, channel, data):
        name = self.channels.get(channel.decode() if isinstance(channel, bytes) else channel)
        try:
            envelope = json.loads(data)
            if envelope["from"] == self.id:
                return  # our own: already delivered locally
            event = envelope["event"]
        except (ValueError, KeyError, TypeError):
            log.warning("bus: ignored a malformed message on %s", channel)
            return
        if name is not None:
            self.deliver(name, event)

    # --- presence -------------------------------------------------------------------------

    def set_presence(self, names):
        self._names = set(names)
        if self._presence_dirty is not None:
            self._presence_dirty.set()

    async def write_presence(self, names):
        """Before a join is announced: a member who joins another process a moment later must
        find this one's list already in Redis (else each misses the other)."""
        self._names = set(names)
        if self.connected:
            try:
                await self._write_presence()
            except (RedisError, OSError):
                pass  # the subscriber notices and reconnects; the presence loop writes it then

    async def _presence_loop(self):
        # Rewritten on every change and refreshed a few times per TTL: a crashed process's
        # key expires, and its members drop out of everyone's list.
        while True:
            try:
                await asyncio.wait_for(self._presence_dirty.wait(), self.presence_ttl / 3)
            except TimeoutError:
                pass
            self._presence_dirty.clear()
            if self.connected:
                try:
                    await self._write_presence()
                except (RedisError, OSError):
                    pass  # the subscriber notices and reconnects

    async def _write_presence(self):
        key = self.presence_prefix + self.id
        ttl_ms = int(self.presence_ttl * 1000)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if self._names:
                pipe.sadd(key, *sorted(self._names))
                pipe.pexpire(key, ttl_ms)
            pipe.zadd(self.procs_key, {self.id: time.time()})
            pipe.zremrangebyscore(self.procs_key, "-inf", time.time() - self.presence_ttl)
            await pipe.execute()

    async def others_online(self):
        """Callers at the same moment (a storm of joins) share one query."""
        if not self.connected:
            return set()
        if self._online_query is None:
            self._online_query = asyncio.ensure_future(self._query_others())
            self._online_query.add_done_callback(self._query_done)
        return await asyncio.shield(self._online_query)

    def _query_done(self, future):
        self._online_query = None

    async def _query_others(self):
        try:
            ids = await self._redis.zrangebyscore(self.procs_key, time.time() - self.presence_ttl, "+inf")
            keys = [self.presence_prefix + i.decode() for i in ids if i.decode() != self.id]
            if not keys:
                return set()
            return {name.decode() for name in await self._redis.sunion(keys)}
        except (RedisError, OSError):
            return set()

    async def stop(self):
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._redis is not None:
            try:
                if self.connected:  # leave the list at once rather than when the key expires
                    await asyncio.wait_for(self._remove_presence(), 2)
            except (RedisError, OSError, TimeoutError):
                pass
            try:
                await asyncio.wait_for(self._redis.aclose(), 2)
            except (RedisError, OSError, TimeoutError):
                pass

    async def _remove_presence(self):
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.presence_prefix + self.id)
            pipe.zrem(self.procs_key, self.id)
            await pipe.execute()


def make_bus(redis_url, prefix="storyhouse"):
    return RedisBus(redis_url, prefix) if redis_url else LocalBus()
