"""The one place that knows pymysql: a DBUtils pool, a bounded executor of the same size, async helpers.

pymysql blocks, so every query runs in `self._executor`; the IOLoop only awaits futures. Queries are
always `cursor.execute(sql, params)` with placeholders.
"""

import asyncio
import contextlib
import contextvars
import datetime
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pymysql
import pymysql.cursors
from dbutils.pooled_db import PooledDB
from tornado.web import HTTPError

# Client error codes that mean "the server is not there" (2003 refused, 2006 gone away, 2013 lost
# during query, 2055 lost at handshake) plus server-side refusals of the same kind.
CONNECTION_ERRORS = {1040, 1053, 1927, 2002, 2003, 2006, 2013, 2055}


ACCESS_DENIED = {1044, 1045, 1698}
DUPLICATE_KEY = 1062
STATEMENT_TIMEOUT = 1969  # MariaDB: "Query execution was interrupted (max_statement_time exceeded)"


# Per request (its asyncio Task): may this request's reads come from a replica a moment behind?
# views/base.py says yes for pages and API reads of readers who have not just written.
_stale_ok = contextvars.ContextVar("storyhouse_stale_reads", default=False)


def reading_may_be_stale():
    """From here on in this request, fetch_one/fetch_all may be answered by a healthy replica."""
    _stale_ok.set(True)


@contextlib.contextmanager
def stale_reads():
    """The same for a block (tests, scripts)."""
    token = _stale_ok.set(True)
    try:
        yield
    finally:
        _stale_ok.reset(token)


class DatabaseUnavailable(HTTPError):
    """MySQL cannot be reached. An HTTPError so that any handler that lets it escape answers 503."""

    def __init__(self, reason="database unavailable"):
        super().__init__(503, reason)


class QueryTimeout(DatabaseUnavailable):
    """One query ran past its bound. A 503 for this request only: the database is not down."""

    def __init__(self):
        super().__init__("query timed out")


class StatementTimeout(pymysql.err.DatabaseError):
    """MariaDB stopped a statement at max_statement_time. Not an OperationalError, so DBUtils
    does not take it for a lost connection and run the statement a second time."""


class DuplicateKey(Exception):
    """An INSERT or UPDATE hit a unique key (MySQL error 1062)."""


class BlockingOnTheLoop(RuntimeError):
    """pymysql was called on a thread that runs an event loop: it would stop every request there."""


def not_on_the_loop():
    """Raise BlockingOnTheLoop on an event loop's thread; every blocking function here starts with
    it, so a model that skips the executor fails its tests at once (about 0.3 µs a call)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return  # a worker thread, or start-up before the loop runs: blocking is fine here
    raise BlockingOnTheLoop(
        "pymysql called on the event loop's thread: await Database.fetch_one/fetch_all/execute/transaction"
    )


class CannotConnect(Exception):
    """At start: the server does not answer, or refuses our credentials (`denied`)."""

    def __init__(self, host, port, user, reason, denied):
        super().__init__(reason)
        self.host, self.port, self.user, self.reason, self.denied = host, port, user, reason, denied


def iso(moment):
    """A time from MySQL as ISO 8601 (RFC 3339) with milliseconds and a Z: the one format of the
    API, the feed, chat frames and <time datetime>. MySQL keeps UTC (the pool sets time_zone =
    '+00:00'), so a naive datetime is UTC; an aware one is converted."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="milliseconds") + "Z"


@dataclass
class Result:
    lastrowid: int
    rowcount: int


class _Connection(pymysql.connections.Connection):
    """pymysql reads the handshake under the read timeout (30 s): a server that accepts but never
    answers would hold a thread that long. Here the handshake gets the connect timeout."""

    def connect(self, sock=None):
        read_timeout, self._read_timeout = self._read_timeout, self.connect_timeout
        try:
            super().connect(sock)
        finally:
            self._read_timeout = read_timeout  # the next read restores the socket timeout

    def query(self, sql, unbuffered=False):
        try:
            return super().query(sql, unbuffered)
        except pymysql.err.OperationalError as e:
            if e.args and e.args[0] == STATEMENT_TIMEOUT:
                raise StatementTimeout(*e.args) from None
            raise


def connect(**kwargs):
    not_on_the_loop()
    return _Connection(**kwargs)


connect.dbapi = pymysql  # DBUtils reads the exception classes and threadsafety from here


def connect_args(
    host, port, user, password, database=None, connect_timeout=2, read_timeout=30, statement_timeout=None
):
    # pymysql waits forever by default: bound the connect and every read/write.
    init = "SET time_zone = '+00:00'"  # NOW() and DEFAULT CURRENT_TIMESTAMP in UTC
    if statement_timeout:
        # The server itself stops any statement of this session that runs longer (MariaDB), so a
        # slow query frees its connection instead of running on after the page has given up.
        init += ", max_statement_time = %.3f" % float(statement_timeout)
    return dict(
        host=host,
        port=port,
        user=user,
        password=password,
        database=database,
        charset="utf8mb4",
        cursorclass=pymysql.cursors.DictCursor,
        autocommit=True,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        write_timeout=read_timeout,
        init_command=init,
    )


def open_connection(host, port, user, password, database=None, **timeouts):
    """One plain connection (migrations at start): CannotConnect instead of pymysql's errors."""
    try:
        return connect(**connect_args(host, port, user, password, database, **timeouts))
    except pymysql.err.MySQLError as e:
        code = e.args[0] if e.args else None
        reason = e.args[-1] if e.args else str(e)
        raise CannotConnect(host, port, user, reason, denied=code in ACCESS_DENIED) from e


def is_connection_error(exc):
    if isinstance(exc, pymysql.err.InterfaceError):
        return True
    return isinstance(exc, pymysql.err.OperationalError) and exc.args and exc.args[0] in CONNECTION_ERRORS


class Database:
    """Async access to MySQL: `fetch_one`, `fetch_all`, `execute` and `transaction`."""

    def __init__(
        self,
        host,
        port,
        user,
        password,
        database,
        pool_size=8,
        query_timeout=5.0,
        fail_fast_seconds=1.0,
        replicas=None,
    ):
        self.replicas = replicas  # models/replicas.py Replicas, or None: every query on this server
        self.pool_size = pool_size
        self.query_timeout = query_timeout
        self.fail_fast_seconds = fail_fast_seconds
        self._down_until = 0.0
        # ping=0: no round trip at every checkout. DBUtils' SteadyDB reopens a broken connection
        # and retries once by itself (outside transactions), which is how the pool recovers.
        # reset=False: no ROLLBACK each time a connection goes back (we run in autocommit; the
        # transaction helper commits or rolls back itself).
        self._pool = PooledDB(
            connect,
            maxconnections=pool_size,
            maxcached=pool_size,
            blocking=True,
            ping=0,
            reset=False,
            # The server bound sits a little under the page's, so MariaDB is the one that stops.
            **connect_args(
                host, port, user, password, database, statement_timeout=max(0.5, query_timeout - 0.5)
            ),
        )
        self._executor = ThreadPoolExecutor(pool_size, thread_name_prefix="mysql")

    def _check_up(self):
        # After a connection error, fail fast for a moment instead of queueing every request
        # behind threads that are waiting for a dead server (checked again on the worker thread,
        # for work that was queued before the failure).
        if time.monotonic() < self._down_until:
            raise DatabaseUnavailable()

    async def _run(self, fn, *args):
        self._check_up()
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        try:
            # pymysql's read timeout (30 s) frees a stuck thread; a page waits at most this long.
            return await asyncio.wait_for(future, self.query_timeout)
        except TimeoutError:
            # One slow query is not an outage: only this request fails (no fail-fast for others).
            raise QueryTimeout() from None
        except pymysql.err.IntegrityError as e:
            if e.args and e.args[0] == DUPLICATE_KEY:
                raise DuplicateKey(e.args[-1]) from e
            raise
        except StatementTimeout:
            raise QueryTimeout() from None
        except pymysql.err.MySQLError as e:
            if is_connection_error(e):
                self._down_until = time.monotonic() + self.fail_fast_seconds
                raise DatabaseUnavailable() from e
            raise

    def _query(self, sql, params, fetch):
        not_on_the_loop()
        self._check_up()
        con = self._pool.connection()
        try:
            with con.cursor() as cur:
                cur.execute(sql, params)
                if fetch == "one":
                    return cur.fetchone()
                if fetch == "all":
                    return list(cur.fetchall())
                return Result(cur.lastrowid, cur.rowcount)
        finally:
            con.close()  # back to the pool

    def _transaction(self, fn):
        not_on_the_loop()
        self._check_up()
        con = self._pool.connection()
        try:
            con.begin()
            try:
                with con.cursor() as cur:
                    result = fn(cur)
                con.commit()
                return result
            except BaseException:
                try:
                    con.rollback()
                except pymysql.err.MySQLError:
                    pass  # the connection is gone, and the transaction with it: keep the first error
                raise
        finally:
            con.close()

    async def _read(self, sql, params, fetch):
        # A replica only for a request that may read stale, and only while one is healthy.
        replica = self.replicas.pick() if self.replicas and _stale_ok.get() else None
        if replica is not None:
            try:
                return await replica.db._run(replica.db._query, sql, params, fetch)
            except QueryTimeout:
                raise  # a slow query, not a lost replica: the primary would be as slow
            except DatabaseUnavailable as e:
                replica.failed(e.__cause__ or e)  # and the primary answers this one
        return await self._run(self._query, sql, params, fetch)

    async def fetch_one(self, sql, params=()):
        """The first row as a dict, or None."""
        return await self._read(sql, params, "one")

    async def fetch_all(self, sql, params=()):
        """All rows as a list of dicts."""
        return await self._read(sql, params, "all")

    async def execute(self, sql, params=()):
        """Run a write; returns Result(lastrowid, rowcount)."""
        return await self._run(self._query, sql, params, None)

    async def transaction(self, fn):
        """Run fn(cursor) in one transaction on a worker thread: commit, or roll back and raise."""
        return await self._run(self._transaction, fn)

    def close(self):
        # No waiting on the loop for a hung query: its thread ends at pymysql's read timeout.
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._pool.close()
        if self.replicas:
            self.replicas.close()


class HealthProbe:
    """`/healthz`'s check: its own one-thread executor and its own connection, so a saturated
    pool does not make a healthy node look dead. The connection is kept (only that thread uses
    it); a broken one is replaced once before the probe says no."""

    def __init__(self, host, port, user, password, database, timeout=2.0):
        self._args = connect_args(
            host, port, user, password, database, connect_timeout=timeout, read_timeout=timeout
        )
        self._timeout = timeout
        self._con = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="healthz")

    def _select_one(self):
        if self._con is None:
            self._con = connect(**self._args)
        with self._con.cursor() as cur:
            cur.execute("SELECT 1")
            return cur.fetchone() is not None

    def _ping(self):
        not_on_the_loop()
        try:
            return self._select_one()
        except (pymysql.err.MySQLError, OSError):
            self._drop()
            try:
                return self._select_one()  # the kept connection may only have gone stale
            except (pymysql.err.MySQLError, OSError):
                self._drop()
                return False

    def _drop(self):
        if self._con is not None:
            try:
                self._con.close()
            except Exception:
                pass
            self._con = None

    async def ok(self):
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._ping)
        try:
            return await asyncio.wait_for(future, self._timeout * 2 + 1)
        except TimeoutError:
            return False

    def close(self):
        self._executor.submit(self._drop)
        self._executor.shutdown(wait=False, cancel_futures=False)
