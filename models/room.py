"""The chat room of this process: its sockets by member, the history kept in memory, presence, and
events in and out through the bus (models/bus.py, channels "chat" and "sessions"). The sockets are
views/chat.py's handlers (views/sockets.py); the room only calls their send_encoded(), drop()
and close()."""

import asyncio
import collections
import datetime
import time

import tornado.ioloop

from models.chat import HISTORY
from models.db import DatabaseUnavailable, iso
from models.frames import PING, encode

SIGNED_OUT = 4001  # close code: the session ended (the page stops reconnecting)


def now_iso():
    return iso(datetime.datetime.now(datetime.UTC).replace(tzinfo=None))


class Room:
    """The sockets of this process, by member; events out to them and to the bus."""

    def __init__(self, messages, sessions, bus, ping_interval=0, ping_timeout=0):
        self.messages = messages
        self.sessions = sessions
        self.bus = bus
        bus.subscribe("chat", self._from_bus)
        bus.subscribe("sessions", self._session_ended)
        self.sockets = set()
        self.members = {}  # username -> set of that member's sockets (tabs) here
        self.closing = False
        self._tasks = set()
        self._history = None  # the last HISTORY message frames, once read from MySQL
        self._history_generation = None
        self._loading = None
        self._arrived = None
        self.ping_interval = ping_interval
        self.ping_timeout = min(ping_timeout or ping_interval, ping_interval)
        self._pinger = None

    def start(self):
        if self.ping_interval:
            self._pinger = tornado.ioloop.PeriodicCallback(self._ping_all, self.ping_interval * 1000)
            self._pinger.start()

    def stop(self):
        if self._pinger:
            self._pinger.stop()

    # --- dead peers -----------------------------------------------------------------------
    # One timer pings every socket (same bytes for all) and drops those with no pong by the
    # timeout: with 10,000 sockets, Tornado's per-connection ping would be 10,000 sleeping tasks.

    def _ping_all(self):
        now = time.monotonic()
        for sock in tuple(self.sockets):
            sock.pinged_at = now
            sock.send_encoded(PING)
        tornado.ioloop.IOLoop.current().call_later(self.ping_timeout, self._drop_silent, now)

    def _drop_silent(self, pinged_at):
        # Pinged in that round (or since) and silent since that round: gone. (A later round
        # overlapping this check does not count against a socket that answered this one.)
        for sock in tuple(self.sockets):
            if sock.last_pong < pinged_at <= sock.pinged_at:
                sock.drop("no pong")

    # --- history --------------------------------------------------------------------------
    # Kept in memory once read, so 10,000 joins cost no 10,000 queries; read again from MySQL
    # when the bus reconnects (messages from other processes may have been missed).

    async def history(self):
        if self._history is None or self._history_generation != self.bus.generation:
            if self._loading is None:
                self._loading = asyncio.ensure_future(self._load_history())
            try:
                await asyncio.shield(self._loading)
            finally:
                self._loading = None
        return list(self._history)

    async def _load_history(self):
        generation = self.bus.generation
        self._arrived = []
        try:
            items = await self.messages.recent()
            # Messages that arrived while we read are added unless the read already had them.
            items += [f for f in self._arrived if f not in items]
            self._history = collections.deque(items[-HISTORY:], maxlen=HISTORY)
            self._history_generation = generation
        finally:
            self._arrived = None

    def _remember(self, frame):
        if self._loading is not None and self._arrived is not None:
            self._arrived.append(frame)
        if self._history is not None:
            self._history.append(frame)

    # --- events ---------------------------------------------------------------------------

    def publish(self, event):
        """To this process's clients now (the bus delivers here first), and to the other processes."""
        self.bus.publish("chat", event)

    def broadcast(self, event, skip_user=None):
        frame, payload = encode(event)
        skip = self.members.get(skip_user, ()) if skip_user else ()
        for sock in tuple(self.sockets):  # a copy: a slow reader is dropped during the loop
            if sock not in skip:
                sock.send_encoded(frame, payload)

    def _from_bus(self, event):
        kind = event.get("type")
        if kind == "message":
            self._remember(event)
            self.broadcast(event)
        elif kind in ("join", "leave"):  # not to the member's own tabs
            self.broadcast(event, skip_user=event.get("user"))

    def _spawn(self, coro):
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- members --------------------------------------------------------------------------

    async def join(self, sock):
        name = sock.user["username"]
        history = await self.history()
        if name not in self.members:
            await self.bus.write_presence(self.members.keys() | {name})
        others = await self.bus.others_online()
        if sock.ws_connection is None or sock.ws_connection.is_closing():
            self.bus.set_presence(self.members.keys())  # gone while we waited: not here after all
            return
        # From here on no await: the socket is registered and shown the room in one step.
        tabs = self.members.setdefault(name, set())
        first = not tabs
        tabs.add(sock)
        self.sockets.add(sock)
        sock.send({"type": "history", "items": history})
        sock.send({"type": "presence", "users": sorted(others | self.members.keys())})
        if first:
            self.bus.set_presence(self.members.keys())
            if name not in others:
                self.publish({"type": "join", "user": name, "at": now_iso()})

    def leave(self, sock):
        if sock not in self.sockets:
            return
        self.sockets.discard(sock)
        name = sock.user["username"]
        tabs = self.members.get(name, set())
        tabs.discard(sock)
        if not tabs:
            self.members.pop(name, None)
            self.bus.set_presence(self.members.keys())
            if not self.closing:
                self._spawn(self._announce_leave(name))

    async def _announce_leave(self, name):
        others = await self.bus.others_online()
        if name not in others and name not in self.members:  # no tab left anywhere
            self.publish({"type": "leave", "user": name, "at": now_iso()})

    # --- revoked sessions -----------------------------------------------------------------

    def _session_ended(self, event):
        """A member's session(s) ended (models/sessions.py announces it on the bus, here and
        everywhere): close the sockets whose session is gone."""
        self._spawn(self._recheck(event.get("user_id")))

    async def _recheck(self, user_id):
        for sock in [s for s in self.sockets if s.user["id"] == user_id]:
            try:
                alive = await self.sessions.lookup(sock.token, cached=False)
            except DatabaseUnavailable:
                continue
            if alive is None:
                sock.close(SIGNED_OUT, "signed out")

    async def close(self):
        """At shutdown (before the sockets close with 1001): tell the other processes who leaves."""
        self.closing = True
        if not self.members:
            return
        try:
            others = await asyncio.wait_for(self.bus.others_online(), 2)
        except TimeoutError:
            return
        for name in self.members:
            if name not in others:
                self.bus.publish("chat", {"type": "leave", "user": name, "at": now_iso()})
