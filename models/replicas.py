"""Read replicas: reads that may be a moment stale go to a healthy replica, everything else to the
primary (models/db.py Database decides per query; views/base.py says which requests may read
stale).

Each replica has its own pool and executor (a Database) and is watched by a monitor: every
`interval` seconds its own connection asks `SHOW SLAVE STATUS`. A replica is used only while both
replication threads run and it is at most `max_lag` seconds behind; one that stops answering,
stops replicating or falls behind is left out, and comes back by itself once healthy. A query
that fails on a replica for want of a connection is run again on the primary: the reader never
sees the replica's trouble.

The monitor's account needs the REPLICATION CLIENT (MariaDB: SLAVE MONITOR) privilege.
"""

import asyncio
import itertools
import logging
from concurrent.futures import ThreadPoolExecutor

import pymysql

from models.db import Database, connect, connect_args, not_on_the_loop

log = logging.getLogger("storyhouse.replicas")


class Replica:
    def __init__(self, host, port, user, password, database, pool_size, query_timeout, max_lag):
        self.name = "%s:%d" % (host, port)
        self.db = Database(host, port, user, password, database, pool_size, query_timeout)
        self.max_lag = max_lag
        self.healthy = False  # until the first check says so
        self.why = "not checked yet"
        self._probe_args = connect_args(host, port, user, password, connect_timeout=2, read_timeout=2)
        self._probe = None
        self._probe_executor = ThreadPoolExecutor(1, thread_name_prefix="replica-probe")

    # --- the monitor's check, on its own thread and connection ---

    def _status(self):
        not_on_the_loop()
        if self._probe is None:
            self._probe = connect(**self._probe_args)
        with self._probe.cursor() as cur:
            cur.execute("SHOW SLAVE STATUS")
            return cur.fetchone()

    def _check(self):
        try:
            row = self._status()
        except (pymysql.err.MySQLError, OSError) as e:
            self._drop_probe()
            return False, "does not answer (%s)" % (e.args[-1] if e.args else e)
        if row is None:
            return False, "is not a replica"
        if row.get("Slave_IO_Running") != "Yes" or row.get("Slave_SQL_Running") != "Yes":
            return False, "is not replicating (IO %s, SQL %s)" % (
                row.get("Slave_IO_Running"),
                row.get("Slave_SQL_Running"),
            )
        lag = row.get("Seconds_Behind_Master")
        if lag is None or lag > self.max_lag:
            return False, "is %s s behind (bound %g s)" % (lag, self.max_lag)
        return True, "healthy"

    def _drop_probe(self):
        if self._probe is not None:
            try:
                self._probe.close()
            except Exception:
                pass
            self._probe = None

    async def check(self):
        future = asyncio.get_running_loop().run_in_executor(self._probe_executor, self._check)
        try:
            healthy, why = await asyncio.wait_for(future, 5)
        except TimeoutError:
            healthy, why = False, "does not answer (timeout)"
        self._set(healthy, why)

    def failed(self, error):
        """A query found no connection: out until the monitor sees it healthy again."""
        self._set(False, "lost its connection (%s)" % error)

    def _set(self, healthy, why):
        if healthy != self.healthy:
            if healthy:
                log.warning("replica %s is healthy: reads go to it", self.name)
            else:
                log.warning("replica %s %s: reads go elsewhere", self.name, why)
        self.healthy, self.why = healthy, why

    def close(self):
        self.db.close()
        self._probe_executor.submit(self._drop_probe)
        self._probe_executor.shutdown(wait=False)


class Replicas:
    """The replicas of one process, taken in turn among the healthy ones."""

    def __init__(
        self, addresses, user, password, database, pool_size, query_timeout, max_lag=5.0, interval=1.0
    ):
        self.replicas = [
            Replica(host, port, user, password, database, pool_size, query_timeout, max_lag)
            for host, port in addresses
        ]
        self.interval = interval
        self._turn = itertools.count()
        self._task = None

    def __bool__(self):
        return bool(self.replicas)

    def pick(self):
        """A healthy replica, or None (then the primary answers)."""
        healthy = [r for r in self.replicas if r.healthy]
        if not healthy:
            return None
        return healthy[next(self._turn) % len(healthy)]

    async def start(self):
        if self.replicas:
            await self.check_all()  # serve with what is known
            self._task = asyncio.create_task(self._monitor())

    async def check_all(self):
        await asyncio.gather(*(r.check() for r in self.replicas))

    async def _monitor(self):
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check_all()
            except Exception:
                log.exception("replicas: a check failed")

    async def stop(self):
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def close(self):
        for replica in self.replicas:
            replica.close()
