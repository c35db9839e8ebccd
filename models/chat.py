"""Chat messages in MySQL: store one, read the last N. Frames are built here so history and live
messages look the same (SPEC §3: type, user, body, at)."""

import datetime

from models.db import iso

HISTORY = 50  # messages a joining client is shown


def message_frame(user, body, at):
    return {"type": "message", "user": user, "body": body, "at": iso(at)}


class ChatMessages:
    def __init__(self, db):
        self.db = db

    async def add(self, user_id, username, body):
        """Store a message; returns its frame (the time is taken here, so stored and sent agree)."""
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # DATETIME(3)
        await self.db.execute(
            "INSERT INTO chat_messages (user_id, body, created_at) VALUES (%s, %s, %s)",
            (user_id, body, now),
        )
        return message_frame(username, body, now)

    async def recent(self, limit=HISTORY):
        """The last `limit` messages as frames, oldest first."""
        rows = await self.db.fetch_all(
            "SELECT u.username, m.body, m.created_at FROM chat_messages m"
            " JOIN users u ON u.id = m.user_id ORDER BY m.id DESC LIMIT %s",
            (limit,),
        )
        return [message_frame(r["username"], r["body"], r["created_at"]) for r in reversed(rows)]
