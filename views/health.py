"""GET /healthz for load balancers: 200 when MySQL answers, 503 otherwise or while draining."""

from views.base import PageHandler


class HealthHandler(PageHandler):
    needs_session = False  # the probe must not touch the busy pool

    async def check(self):
        ok = not self.application.draining and await self.application.models.health.ok()
        self.set_status(200 if ok else 503)
        self.set_header("Cache-Control", "no-store")
        return ok

    async def get(self):
        ok = await self.check()
        self.write({"status": "ok" if ok else "unavailable"})

    async def head(self):  # some load balancers probe with HEAD
        await self.check()
