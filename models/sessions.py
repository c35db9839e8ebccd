"""Server-side sessions: the browser's signed cookie carries a random token, MySQL keeps its hash.

Every way a session ends (log out, revoke one or all, a password change through Users) is
announced here on the bus's "sessions" channel, so the member's open sockets close in every
process: no handler can forget to."""

import hashlib
import secrets

LAST_SEEN_EVERY = 60  # seconds: "last seen" is written at most once a minute


def token_hash(token):
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(self, db, bus, days=30):
        self.db = db
        self.bus = bus
        self.days = days

    def ended(self, user_id):
        """Announce that sessions of this member ended (their sockets recheck theirs)."""
        self.bus.publish("sessions", {"user_id": user_id})

    async def create(self, user_id, ip, user_agent):
        """Start a session; returns the token for the cookie."""
        token = secrets.token_urlsafe(32)
        await self.db.execute(
            "INSERT INTO sessions (token_hash, user_id, ip, user_agent, expires_at)"
            " VALUES (%s, %s, %s, %s, NOW() + INTERVAL %s DAY)",
            (token_hash(token), user_id, ip[:45], user_agent[:255], self.days),
        )
        return token

    async def lookup(self, token):
        """The live session and its member for a token, or None. Slides the expiry once a minute."""
        row = await self.db.fetch_one(
            "SELECT s.id AS session_id, s.user_id AS id, u.username, u.locale,"
            " TIMESTAMPDIFF(SECOND, s.last_seen, NOW()) AS idle"
            " FROM sessions s JOIN users u ON u.id = s.user_id"
            " WHERE s.token_hash = %s AND s.expires_at > NOW()",
            (token_hash(token),),
        )
        if row is None:
            return None
        row["due_for_touch"] = row.pop("idle") >= LAST_SEEN_EVERY
        return row

    async def touch(self, session_id, ip):
        await self.db.execute(
            "UPDATE sessions SET last_seen = NOW(), ip = %s, expires_at = NOW() + INTERVAL %s DAY"
            " WHERE id = %s",
            (ip[:45], self.days, session_id),
        )

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
