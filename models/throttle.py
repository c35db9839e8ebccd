"""Failed-login throttle, kept in MySQL so every process agrees.

Limits are per (account, IP) and per IP, never per account alone: a stranger cannot lock a member
out everywhere by failing on purpose. An attempt is recorded *before* its password is checked and
counted against the rows that came before it, so parallel guesses cannot all slip under the limit.
"""

WINDOW_MINUTES = 15
PER_ACCOUNT_IP = 5
PER_IP = 50


def account_key(username):
    return username.lower()[:64]


class LoginThrottle:
    def __init__(self, db, per_account_ip=PER_ACCOUNT_IP, per_ip=PER_IP, window_minutes=WINDOW_MINUTES):
        self.db = db
        self.per_account_ip = per_account_ip
        self.per_ip = per_ip
        self.window = window_minutes

    async def _counts(self, username, ip, up_to_id=None):
        return await self.db.fetch_one(
            "SELECT COUNT(*) AS n, MIN(failed_at) AS oldest,"
            " COALESCE(SUM(username = %s), 0) AS n_account,"
            " MIN(IF(username = %s, failed_at, NULL)) AS oldest_account"
            " FROM login_failures WHERE ip = %s AND failed_at > NOW() - INTERVAL %s MINUTE"
            " AND id <= %s",
            (account_key(username), account_key(username), ip, self.window, up_to_id or 2**63),
        )

    async def _wait(self, oldest):
        row = await self.db.fetch_one(
            "SELECT GREATEST(1, TIMESTAMPDIFF(SECOND, NOW(), %s + INTERVAL %s MINUTE)) AS s",
            (oldest, self.window),
        )
        return int(row["s"])

    async def retry_after(self, username, ip):
        """Seconds until another attempt is allowed, or 0 when one is allowed now."""
        row = await self._counts(username, ip)
        if row["n"] >= self.per_ip:
            return await self._wait(row["oldest"])
        if row["n_account"] >= self.per_account_ip:
            return await self._wait(row["oldest_account"])
        return 0

    async def begin(self, username, ip):
        """Record an attempt before its password is checked: returns (attempt_id, 0) when it may
        go on, or (None, seconds to wait) when the attempts before it already reached a limit."""
        attempt_id = (
            await self.db.execute(
                "INSERT INTO login_failures (username, ip) VALUES (%s, %s)", (account_key(username), ip)
            )
        ).lastrowid
        row = await self._counts(username, ip, up_to_id=attempt_id)
        if row["n"] > self.per_ip:
            oldest = row["oldest"]
        elif row["n_account"] > self.per_account_ip:
            oldest = row["oldest_account"]
        else:
            return attempt_id, 0
        await self.db.execute("DELETE FROM login_failures WHERE id = %s", (attempt_id,))
        return None, await self._wait(oldest)

    async def delete_old(self):
        """Housekeeping: failures older than the window count for nothing."""
        result = await self.db.execute(
            "DELETE FROM login_failures WHERE failed_at < NOW() - INTERVAL %s MINUTE", (self.window,)
        )
        return result.rowcount

    async def succeeded(self, username, ip):
        """A right password forgets this account's failures from this IP (the attempt's own too)."""
        await self.db.execute(
            "DELETE FROM login_failures WHERE username = %s AND ip = %s", (account_key(username), ip)
        )
