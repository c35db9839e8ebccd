"""Server-side sessions: the browser's signed cookie carries a random token, MySQL keeps its hash.

Every way a session ends (log out, revoke one or all, a password change through Users) is
announced here on the bus's "sessions" channel, so the member's open sockets close in every
process: no handler can forget to. A change to what a session's row shows (the member's name,
language, role) is announced the same way, as `changed`.

A lookup is remembered for a few seconds (`SessionCache`), so a member's pages do not each cost a
query, and the same announcements empty it everywhere: a session that ended is refused at once."""

import collections
import hashlib
import secrets
import time

from models.cache import Version

LAST_SEEN_EVERY = 60  # seconds: "last seen" is written at most once a minute


def token_hash(token):
    return hashlib.sha256(token.encode()).hexdigest()


class SessionCache:
    """token hash → the member's row, for at most `ttl` seconds, trusted only while every
    announcement can reach this process.

    An entry is served only under the version it was read under: the version is bumped by every
    announcement on the "sessions" channel (here, from Redis for other machines, and through
    shared memory for this machine's forked siblings, which may have no Redis at all). With a
    Redis bus the cache is bypassed while Redis is away (an end announced then would be missed),
    and everything read before a reconnection is dropped: the fallback is the query, never a
    stale "logged in"."""

    def __init__(self, bus, ttl=10.0, size=10000):
        self.bus = bus
        self.ttl = ttl
        self.size = size
        self._version = Version("sessions")
        self._entries = collections.OrderedDict()  # hash -> (version, expires, row, read_at)
        bus.subscribe("sessions", self._announced)

    def version(self):
        """None while the cache cannot be trusted (Redis configured and away)."""
        if self.ttl <= 0 or not getattr(self.bus, "connected", True):
            return None
        return (self._version.value(), self.bus.generation)

    def _announced(self, event=None):
        self._version.bump()
        self._entries.clear()

    def get(self, key):
        entry = self._entries.get(key)
        if entry is None:
            return None
        version, expires, row, read_at = entry
        now = time.monotonic()
        if version != self.version() or now > expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return row, now - read_at

    def put(self, key, row, version, lifetime):
        """Keep a row read under `version` (taken before the read: an end announced during the
        read makes it stale at once), for the ttl or what is left of the session if less."""
        if version is None or version != self.version():
            return
        now = time.monotonic()
        self._entries[key] = (version, now + min(self.ttl, lifetime), row, now)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def touched(self, key):
        """The session's last_seen was just written: count its idle time from now."""
        entry = self._entries.get(key)
        if entry is not None:
            version, expires, row, _ = entry
            row["idle"] = 0
            self._entries[key] = (version, expires, row, time.monotonic())


class Sessions:
    def __init__(self, db, bus, days=30, cache_seconds=10.0):
        self.db = db
        self.bus = bus
        self.days = days
        self.cache = SessionCache(bus, ttl=cache_seconds)

    def ended(self, user_id):
        """Announce that sessions of this member ended (their sockets recheck theirs)."""
        self.bus.publish("sessions", {"user_id": user_id})

    def changed(self, user_id):
        """Announce that what a session row shows of this member changed (name, language, role):
        every process forgets its cached lookups; sockets stay open."""
        self.bus.publish("sessions", {"user_id": user_id, "changed": True})

    async def create(self, user_id, ip, user_agent):
        """Start a session; returns the token for the cookie."""
        token = secrets.token_urlsafe(32)
        await self.db.execute(
            "INSERT INTO sessions (token_hash, user_id, ip, user_agent, expires_at)"
            " VALUES (%s, %s, %s, %s, NOW() + INTERVAL %s DAY)",
            (token_hash(token), user_id, ip[:45], user_agent[:255], self.days),
        )
        return token

    async def lookup(self, token, cached=True):
        """The live session and its member for a token, or None (a copy: callers may change it).
        `due_for_touch` says it is time to slide the expiry (once a minute)."""
        key = token_hash(token)
        hit = self.cache.get(key) if cached else None
        if hit is not None:
            row, since = hit
            idle = row["idle"] + since
        else:
            version = self.cache.version()
            row = await self.db.fetch_one(
                "SELECT s.id AS session_id, s.user_id AS id, u.username, u.locale,"
                " TIMESTAMPDIFF(SECOND, s.last_seen, NOW()) AS idle,"
                " TIMESTAMPDIFF(SECOND, NOW(), s.expires_at) AS remaining"
                " FROM sessions s JOIN users u ON u.id = s.user_id"
                " WHERE s.token_hash = %s AND s.expires_at > NOW()",
                (key,),
            )
            if row is None:
                return None
            self.cache.put(key, row, version, row.pop("remaining"))
            idle = row["idle"]
        user = {k: v for k, v in row.items() if k != "idle"}
        user["due_for_touch"] = idle >= LAST_SEEN_EVERY
        return user

    async def touch(self, session_id, ip, token=None):
        await self.db.execute(
            "UPDATE sessions SET last_seen = NOW(), ip = %s, expires_at = NOW() + INTERVAL %s DAY"
            " WHERE id = %s",
            (ip[:45], self.days, session_id),
        )
        if token is not None:
            self.cache.touched(token_hash(token))

    async def list_for(self, user_id):
        return await self.db.fetch_all(
            "SELECT id, ip, user_agent, created_at, last_seen FROM sessions"
            " WHERE user_id = %s AND expires_at > NOW() ORDER BY last_seen DESC",
            (user_id,),
        )

    async def revoke(self, user_id, session_id):
        """End one of this member's sessions; returns True when there was one."""
        result = await self.db.execute(
            "DELETE FROM sessions WHERE id = %s AND user_id = %s", (session_id, user_id)
        )
        if result.rowcount:
            self.ended(user_id)
        return result.rowcount > 0

    async def revoke_all_for(self, user_id):
        result = await self.db.execute("DELETE FROM sessions WHERE user_id = %s", (user_id,))
        self.ended(user_id)
        return result.rowcount

    async def delete_expired(self):
        """Housekeeping: sessions past their expiry are gone for good."""
        return (await self.db.execute("DELETE FROM sessions WHERE expires_at < NOW()")).rowcount

    async def delete_token(self, token):
        """End the session of this token (log out, or a new log-in in the same browser)."""

        def delete(cur):
            cur.execute("SELECT user_id FROM sessions WHERE token_hash = %s FOR UPDATE", (token_hash(token),))
            row = cur.fetchone()
            cur.execute("DELETE FROM sessions WHERE token_hash = %s", (token_hash(token),))
            return row and row["user_id"]

        user_id = await self.db.transaction(delete)
        if user_id:
            self.ended(user_id)
