"""Members: create, look up, change password. Rows are plain dicts."""

from models.db import DuplicateKey


class UsernameTaken(Exception):
    pass


class TooManyRegistrations(Exception):
    """The address has made its allowance of accounts this hour."""


class Users:
    def __init__(self, db, sessions):
        self.db = db
        self.sessions = sessions  # a password change ends them, and says so

    async def create(self, username, password_hash, ip="", per_ip_hour=None):
        """Insert a member; returns the new id. Raises UsernameTaken (unique, case-insensitive) or,
        with per_ip_hour, TooManyRegistrations. The count and the insert are one transaction that
        holds the address's row in registration_ips, so parallel requests cannot all pass."""
        ip = ip[:45]

        def insert(cur):
            if per_ip_hour is not None:
                cur.execute(
                    "INSERT INTO registration_ips (ip) VALUES (%s) ON DUPLICATE KEY UPDATE last_at = NOW()",
                    (ip,),
                )
                cur.execute(
                    "SELECT COUNT(*) AS n FROM users"
                    " WHERE created_ip = %s AND created_at > NOW() - INTERVAL 1 HOUR",
                    (ip,),
                )
                if cur.fetchone()["n"] >= per_ip_hour:
                    raise TooManyRegistrations()
            cur.execute(
                "INSERT INTO users (username, password_hash, created_ip) VALUES (%s, %s, %s)",
                (username, password_hash, ip),
            )
            return cur.lastrowid

        try:
            return await self.db.transaction(insert)
        except DuplicateKey:
            raise UsernameTaken(username) from None

    async def delete_old_registration_ips(self):
        result = await self.db.execute("DELETE FROM registration_ips WHERE last_at < NOW() - INTERVAL 1 HOUR")
        return result.rowcount

    async def registered_from(self, ip, minutes=60):
        """How many accounts this IP registered in the last `minutes`."""
        row = await self.db.fetch_one(
            "SELECT COUNT(*) AS n FROM users"
            " WHERE created_ip = %s AND created_at > NOW() - INTERVAL %s MINUTE",
            (ip, minutes),
        )
        return row["n"]

    async def by_username(self, username):
        return await self.db.fetch_one(
            "SELECT id, username, password_hash, created_at, locale FROM users WHERE username = %s",
            (username,),
        )

    async def by_id(self, user_id):
        return await self.db.fetch_one(
            "SELECT id, username, password_hash, created_at FROM users WHERE id = %s", (user_id,)
        )

    async def change_password(self, user_id, password_hash):
        """Set a new hash and end every session of the member, in one transaction; returns how
        many sessions ended."""

        def change(cur):
            cur.execute("UPDATE users SET password_hash = %s WHERE id = %s", (password_hash, user_id))
            cur.execute("DELETE FROM sessions WHERE user_id = %s", (user_id,))
            return cur.rowcount

        ended = await self.db.transaction(change)
        self.sessions.ended(user_id)
        return ended

    async def set_locale(self, user_id, code):
        """Save the member's language (a code from views.i18n.LOCALES, or None to forget it)."""
        await self.db.execute("UPDATE users SET locale = %s WHERE id = %s", (code, user_id))
        self.sessions.changed(user_id)
