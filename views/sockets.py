"""SocketHandler, the WebSocket kind of handler: the member from the session cookie at the
handshake (none → 403), same-origin only, a rate limit per socket, and frames built once for
everyone written straight to the socket (models/frames.py) with Tornado's write_message as the
fallback. tests/test_chat.py pins the frames' bytes and the slow-reader bound."""

import logging
import time

import tornado.websocket
from tornado.iostream import IOStream, StreamClosedError

from models.db import DatabaseUnavailable
from models.frames import encode
from serving.tornado_internals import forget_parsed_cookies, unsent_bytes, websocket_stream
from views.base import BaseMixin

log = logging.getLogger("storyhouse.sockets")

MAX_UNSENT = 1024 * 1024  # bytes queued for one client before it counts as too slow and is dropped


class SocketHandler(BaseMixin, tornado.websocket.WebSocketHandler):
    """`user` and `token` are the member and session of the handshake; subclasses implement
    opened() and on_message()."""

    RATE, BURST = 5.0, 10  # frames a second per connection, and the bucket's size
    unavailable = "This is briefly unavailable."
    login_needed = "Log in first."

    def initialize(self, **kwargs):
        self.user = None
        self.token = None
        self.tokens = float(self.BURST)
        self.refilled = time.monotonic()
        self.pinged_at = 0.0
        self.last_pong = 0.0

    @property
    def ping_interval(self):
        return 0  # a model pings all sockets with one timer (websocket_ping_interval/_timeout)

    def on_pong(self, data):
        self.last_pong = time.monotonic()

    async def get(self, *args, **kwargs):
        try:
            self.user = await self.load_session()
        except DatabaseUnavailable:
            self.set_status(503)
            return self.finish(self.unavailable)
        if self.user is None:
            self.set_status(403)
            return self.finish(self.login_needed)
        refused = self.application.websockets.take(self, self.user["id"], self.request.remote_ip)
        if refused:
            self.set_status(refused[0])
            return self.finish(refused[1])
        self.token = self.session_token()
        forget_parsed_cookies(self.request)  # 10,000 sockets keep 10,000 requests
        await super().get(*args, **kwargs)  # origin check, then the upgrade

    def check_origin(self, origin):
        # Called only for cross-origin requests (Tornado 6.6 lets same-origin ones through):
        # accept nothing but the origins an operator listed.
        return origin.lower().rstrip("/") in self.settings.get("chat_trusted_origins", ())

    def open(self):
        self.set_nodelay(True)  # small frames, sent now
        return self.opened()

    async def opened(self):
        pass

    def on_finish(self):
        # The handshake's answer: 101 when the upgrade went through (on_close gives the place
        # back later), else a refusal (origin, ...), and the place is given back now.
        if self.get_status() != 101:
            self.application.websockets.give_back(self)

    def on_close(self):
        self.application.websockets.give_back(self)
        self.closed()

    def closed(self):
        pass

    def take_token(self):
        """A token bucket: RATE frames a second, at most BURST at once."""
        now = time.monotonic()
        self.tokens = min(self.BURST, self.tokens + (now - self.refilled) * self.RATE)
        self.refilled = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    # --- sending --------------------------------------------------------------------------

    def send(self, event):
        self.send_encoded(*encode(event))

    def send_error_frame(self, message):
        # Not send_error: WebSocketHandler.send_error answers a failed handshake.
        self.send({"type": "error", "message": message})

    def drop(self, why):
        """Close the connection now, without a close handshake (it would queue behind the rest)."""
        log.info("%s: %s disconnected (%s)", type(self).__name__, self.user["username"], why)
        if self.ws_connection is not None:
            self.ws_connection.stream.close()

    def send_encoded(self, frame, payload=None):
        """Write a frame built once for everyone (models.frames.encode). Not write_message per
        client: that would encode the JSON and the frame again and make a Task for each of
        10,000 clients. With compression on (never here), write_message is the way."""
        stream = websocket_stream(self)
        if stream is None:
            return
        if payload is not None and self.get_compression_options() is not None:
            self.write_message(payload).add_done_callback(lambda f: f.cancelled() or f.exception())
            return
        # What the client has not read yet stays queued; past the bound it is too slow, and it
        # goes rather than the server's memory growing.
        unsent = unsent_bytes(stream)
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
