"""Personal API tokens: shown once at creation, stored only as a SHA-256, named, revocable."""

import hashlib
import re
import secrets

PREFIX = "shk_"  # recognisable in a leaked config file or a secret scanner
TOKEN_RE = re.compile(r"shk_[A-Za-z0-9_-]{43}")
NAME_MAX = 64
PER_MEMBER = 20
LAST_USED_EVERY = 60  # seconds: "last used" is written at most once a minute


def token_hash(token):
    return hashlib.sha256(token.encode()).hexdigest()


class TooManyTokens(Exception):
    pass


class ApiTokens:
    def __init__(self, db):
        self.db = db

    async def create(self, user_id, name):
        """A new token for the member; returns the token itself (the only time it exists in clear)."""
        count = await self.db.fetch_one("SELECT COUNT(*) AS n FROM api_tokens WHERE user_id = %s", (user_id,))
        if count["n"] >= PER_MEMBER:
            raise TooManyTokens()
        token = PREFIX + secrets.token_urlsafe(32)
        await self.db.execute(
            "INSERT INTO api_tokens (user_id, name, token_hash) VALUES (%s, %s, %s)",
            (user_id, name[:NAME_MAX], token_hash(token)),
        )
        return token

    async def lookup(self, token):
        """The member a token belongs to ({id, username, token_id}), or None. Never cached: a revoked
        token is refused at the next request."""
        if not TOKEN_RE.fullmatch(token):
            return None
        row = await self.db.fetch_one(
            "SELECT t.id AS token_id, t.user_id AS id, u.username,"
            " t.last_used_at IS NULL OR t.last_used_at < NOW() - INTERVAL %s SECOND AS due"
            " FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = %s",
            (LAST_USED_EVERY, token_hash(token)),
        )
        if row is None:
            return None
        if row.pop("due"):
            await self.db.execute(
                "UPDATE api_tokens SET last_used_at = NOW() WHERE id = %s", (row["token_id"],)
            )
        return row

    async def list_for(self, user_id):
        return await self.db.fetch_all(
            "SELECT id, name, created_at, last_used_at FROM api_tokens WHERE user_id = %s ORDER BY id DESC",
            (user_id,),
        )

    async def revoke(self, user_id, token_id):
        """Delete one of the member's tokens; returns True when there was one."""
        result = await self.db.execute(
            "DELETE FROM api_tokens WHERE id = %s AND user_id = %s", (token_id, user_id)
        )
        return result.rowcount > 0
