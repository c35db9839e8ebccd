"""Failed-login throttle, kept in MySQL so every process agrees.

Limits are per (account, IP) and per IP, never per account alone: a stranger cannot lock a member
out everywhere by failing on purpose.
"""

WINDOW_MINUTES = 15
PER_ACCOUNT_IP = 5
PER_IP = 50


class LoginThrottle:
    def __init__(self, db, per_account_ip=PER_ACCOUNT_IP, per_ip=PER_IP, window_minutes=WINDOW_MINUTES):
        self.db = db
        self.per_account_ip = per_account_ip
        self.per_ip = per_ip
        self.window = window_minutes

    async def retry_after(self, username, ip):
        """Seconds until another attempt is allowed, or 0 when one is allowed now."""
        row = await self.db.fetch_one(
            "SELECT COUNT(*) AS n, MIN(failed_at) AS oldest,"
            " SUM(username = %s) AS n_account,"
            " MIN(IF(username = %s, failed_at, NULL)) AS oldest_account"
            " FROM login_failures WHERE ip = %s AND failed_at > NOW() - INTERVAL %s MINUTE",
            (username.lower(), username.lower(), ip, self.window),
        )
        if row["n"] >= self.per_ip:
            oldest = row["oldest"]
        elif (row["n_account"] or 0) >= self.per_account_ip:
            oldest = row["oldest_account"]
        else:
            return 0
        left = await self.db.fetch_one(
            "SELECT GREATEST(1, TIMESTAMPDIFF(SECOND, NOW(), %s + INTERVAL %s MINUTE)) AS s",
            (oldest, self.window),
        )
        return int(left["s"])

    async def record_failure(self, username, ip):
        await self.db.execute(
            "INSERT INTO login_failures (username, ip) VALUES (%s, %s)", (username.lower()[:64], ip)
        )

    async def clear(self, username, ip):
        await self.db.execute(
            "DELETE FROM login_failures WHERE username = %s AND ip = %s", (username.lower()[:64], ip)
        )
