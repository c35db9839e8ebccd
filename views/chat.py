"""GET /chat (the page), WS /chat/ws (the socket), and the Room that joins the sockets of this
process to the bus (models/bus.py) that joins the processes."""

import asyncio
import collections
import datetime
import json
import logging
import struct
import time

import tornado.ioloop
import tornado.web
import tornado.websocket
from tornado.iostream import IOStream, StreamClosedError

from models.chat import HISTORY, iso
from models.db import DatabaseUnavailable
from views.base import BaseHandler, SessionMixin

log = logging.getLogger("storyhouse.chat")

MAX_BODY = 2000  # characters in one message
RATE, BURST = 5.0, 10  # messages a second per connection, and the bucket's size
MAX_UNSENT = 1024 * 1024  # bytes queued for one client before it counts as too slow and is dropped
SIGNED_OUT = 4001  # close code: the session ended (the page stops reconnecting)
PING = b"\x89\x00"  # a ping frame without payload, the same bytes for every client


def encode(event):
    """(WebSocket text frame, JSON payload) for an event: built once, written to every client."""
    payload = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
    n = len(payload)
    # RFC 6455 §5.2, as WebSocketProtocol13._write_frame builds it: FIN + text opcode, no mask
    # (servers never mask), then a 7-bit, 16-bit or 64-bit length.
    if n < 126:
        head = struct.pack("!BB", 0x81, n)
    elif n <= 0xFFFF:
        head = struct.pack("!BBH", 0x81, 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 127, n)
    return head + payload, payload


def now_iso():
    return iso(datetime.datetime.now(datetime.UTC).replace(tzinfo=None))


def parse_frame(message):
    """The body of a client frame `{"body": "..."}`, or (None, why it is refused)."""
    if isinstance(message, bytes):
        return None, "Send text frames."
    try:
        data = json.loads(message)
    except (ValueError, RecursionError):  # RecursionError: [[[[… a thousand levels deep
        return None, "Frames must be JSON."
    if not isinstance(data, dict) or set(data) != {"body"} or not isinstance(data["body"], str):
        return None, 'Send {"body": "your message"}.'
    body = data["body"].strip()
    if not body:
        return None, "The message is empty."
    if len(body) > MAX_BODY:
        return None, "A message is at most %d characters." % MAX_BODY
    try:
        body.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escaped in the JSON
        return None, "The message is not valid text."
    return body, None


class Room:
    """The sockets of this process, by member; events out to them and to the bus."""

    def __init__(self, messages, sessions, bus, ping_interval=0, ping_timeout=0, on_cache_event=None):
        self.messages = messages
        self.on_cache_event = on_cache_event  # a story written elsewhere: the page cache empties
        self.sessions = sessions
        self.bus = bus
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

    async def start(self):
        await self.bus.start(self._from_bus)
        if self.ping_interval:
            self._pinger = tornado.ioloop.PeriodicCallback(self._ping_all, self.ping_interval * 1000)
            self._pinger.start()

    async def stop(self):
        if self._pinger:
            self._pinger.stop()
        await self.bus.stop()

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

    def publish(self, event, skip_user=None):
        """To this process's clients now, and to the other processes through the bus."""
        if event["type"] == "message":
            self._remember(event)
        self.broadcast(event, skip_user)
        self.bus.publish(event)

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
        elif kind in ("join", "leave"):
            self.broadcast(event, skip_user=event.get("user"))
        elif kind == "revoked":
            self._spawn(self._recheck(event.get("user_id")))
        elif kind == "cache" and self.on_cache_event:  # never sent to clients
            self.on_cache_event()

    def _spawn(self, coro):
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- members --------------------------------------------------------------------------

    async def join(self, sock):
        name = sock.user["username"]
        history = await self.history()
        others = await self.bus.others_online()
        if sock.ws_connection is None or sock.ws_connection.is_closing():
            return  # gone while we waited
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
                self.publish({"type": "join", "user": name, "at": now_iso()}, skip_user=name)

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
            self.publish({"type": "leave", "user": name, "at": now_iso()}, skip_user=name)

    # --- revoked sessions -----------------------------------------------------------------

    def session_ended(self, user_id):
        """A member's session(s) ended (logout, log out everywhere, password change): close the
        sockets whose session is gone, here and in the other processes."""
        self.bus.publish({"type": "revoked", "user_id": user_id})
        self._spawn(self._recheck(user_id))

    async def _recheck(self, user_id):
        for sock in [s for s in self.sockets if s.user["id"] == user_id]:
            try:
                alive = await self.sessions.lookup(sock.token)
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
                self.bus.publish({"type": "leave", "user": name, "at": now_iso()})


class ChatPageHandler(BaseHandler):
    @tornado.web.authenticated
    def get(self):
        self.render("chat.html")


class ChatSocketHandler(SessionMixin, tornado.websocket.WebSocketHandler):
    """One member's tab in the room. The session is checked before the upgrade: none → 403."""

    def initialize(self, room):
        self.room = room
        self.user = None
        self.token = None
        self.tokens = float(BURST)
        self.refilled = time.monotonic()
        self.pinged_at = 0.0
        self.last_pong = 0.0

    @property
    def ping_interval(self):
        return 0  # the Room pings all sockets with one timer (websocket_ping_interval/_timeout)

    def on_pong(self, data):
        self.last_pong = time.monotonic()

    async def get(self, *args, **kwargs):
        try:
            self.user = await self.load_session()
        except DatabaseUnavailable:
            self.set_status(503)
            return self.finish("The chat is briefly unavailable.")
        if self.user is None:
            self.set_status(403)
            return self.finish("Log in to chat.")
        self.token = self.session_token()
        # The parsed cookies (a Morsel, about 1 KB, each) are not needed again: with 10,000
        # sockets each keeping its request, that is 10 MB or more.
        self.request.__dict__.pop("_cookies", None)
        await super().get(*args, **kwargs)  # origin check, then the upgrade

    def set_cookie(self, name, value, **kwargs):
        # load_session may slide the session cookie: Secure over https, as on every page.
        if self.request.protocol == "https":
            kwargs.setdefault("secure", True)
        super().set_cookie(name, value, **kwargs)

    def check_origin(self, origin):
        # Called only for cross-origin requests (Tornado 6.6 lets same-origin ones through):
        # accept nothing but the origins an operator listed.
        return origin.lower().rstrip("/") in self.settings.get("chat_trusted_origins", ())

    async def open(self):
        self.application.websockets.add(self)
        self.set_nodelay(True)  # small frames, sent now
        try:
            await self.room.join(self)
        except DatabaseUnavailable:
            self.send({"type": "error", "message": "The chat is briefly unavailable."})
            self.close(1011, "database unavailable")

    async def on_message(self, message):
        if not self.take_token():
            return self.send_error("Too many messages: at most 5 a second. Wait a moment.")
        body, problem = parse_frame(message)
        if problem:
            return self.send_error(problem)
        try:
            event = await self.room.messages.add(self.user["id"], self.user["username"], body)
        except DatabaseUnavailable:
            return self.send_error("The message could not be saved. Please try again.")
        self.room.publish(event)

    def on_close(self):
        self.application.websockets.discard(self)
        self.room.leave(self)

    def take_token(self):
        """A token bucket: RATE a second, at most BURST at once."""
        now = time.monotonic()
        self.tokens = min(BURST, self.tokens + (now - self.refilled) * RATE)
        self.refilled = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    # --- sending --------------------------------------------------------------------------

    def send(self, event):
        self.send_encoded(*encode(event))

    def send_error(self, message):
        self.send({"type": "error", "message": message})

    def drop(self, why):
        """Close the connection now, without a close handshake (it would queue behind the rest)."""
        log.info("chat: %s disconnected (%s)", self.user["username"], why)
        if self.ws_connection is not None:
            self.ws_connection.stream.close()

    def send_encoded(self, frame, payload=None):
        """Write a frame built once for everyone. Not write_message per client: that would encode
        the JSON and the frame again and make a Task for each of 10,000 clients."""
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            return
        if payload is not None and conn._compressor is not None:  # permessage-deflate (off here)
            self.write_message(payload).add_done_callback(lambda f: f.cancelled() or f.exception())
            return
        stream = conn.stream
        # IOStream keeps what the client has not read yet in _write_buffer; past the bound the
        # client is too slow, and it goes rather than the server's memory growing.
        unsent = len(stream._write_buffer)
        if unsent > MAX_UNSENT:
            self.drop("reads too slowly")
            return
        if not unsent and type(stream) is IOStream:
            # Nothing queued: offer the bytes to the socket first. The usual whole write costs one
            # send() and no Future; whatever the kernel does not take is queued by IOStream.
            try:
                sent = stream.socket.send(frame)
            except BlockingIOError:
                sent = 0
            except OSError:
                stream.close()
                return
            if sent == len(frame):
                return
            frame = frame[sent:]
        try:
            stream.write(frame)
        except StreamClosedError:
            pass
