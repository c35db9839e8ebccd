"""Every routed request, from its headers to its answer: counted in flight (the graceful stop
waits for it), its form body bounded, and logged without its query string.
(tests/test_server.py and tests/test_resilience.py: a body still arriving at SIGTERM;
tests/test_request_limits.py, tests/test_stories.py, tests/test_errors.py: bodies over 1 MB.)"""

import logging

import tornado.httputil
import tornado.web

import config
from models.validate import whole_number
from serving.connections import SocketBudget
from serving.tornado_internals import streams_body

access_log = logging.getLogger("tornado.access")
DISCARD_LIMIT = 64 * 1024 * 1024  # past this a dropped body is cut off (Tornado's 400 and close)


def loggable_path(request, limit=200):
    """The path for a log line: cut, so a 60 KB path does not fill the log."""
    path = request.path
    return path if len(path) <= limit else path[:limit] + "…[%d chars]" % len(path)


class RequestTracker(tornado.httputil.HTTPMessageDelegate):
    """Wraps the delegate of every routed request:

    - the request counts as in flight while its body is still arriving, so a graceful stop waits
      for a slow upload or form instead of cutting it (the handler's finish ends the count);
    - a body over the form limit (`config.MAX_BODY_BYTES`), announced by Content-Length or sent
      chunked, is read to its end and dropped, instead of Tornado closing the connection on a
      client still sending (the browser shows a reset): the handler then answers 413 with the
      site's page or JSON (`request.body_too_large`). Reading stops at DISCARD_LIMIT. Handlers
      that stream their body (`@stream_request_body`) set their own limits and get every byte.
    """

    def __init__(self, app, request, inner, streams):
        self.app, self.request, self.inner, self.streams = app, request, inner, streams
        self.received = 0

    def headers_received(self, start_line, headers):
        self.app.in_flight.add(self.request)
        self.request.body_too_large = False
        if not self.streams:
            length = whole_number(headers.get("Content-Length", ""))
            if length is not None and length > config.MAX_BODY_BYTES:
                self.request.body_too_large = True
                self.request.connection.set_max_body_size(DISCARD_LIMIT)
            elif "chunked" in headers.get("Transfer-Encoding", "").lower():
                # No length to judge by: Tornado would stop at the limit with a bare 400 and a
                # reset; counted in data_received instead, and dropped past the limit.
                self.request.connection.set_max_body_size(DISCARD_LIMIT)
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk):
        self.received += len(chunk)
        if self.received > config.MAX_BODY_BYTES and not self.streams:
            self.request.body_too_large = True
        if self.request.body_too_large:
            return None  # dropped: nothing over the limit is kept in memory
        return self.inner.data_received(chunk)

    def finish(self):
        self.inner.finish()

    def on_connection_close(self):
        self.app.in_flight.discard(self.request)
        self.inner.on_connection_close()


class TrackingApplication(tornado.web.Application):
    """A tornado.web.Application whose requests are tracked (above) and logged without query
    strings (an upload form's action carries _xsrf). `draining` turns /healthz to 503."""

    def __init__(self, *args, **kwargs):
        self.in_flight = set()  # requests from their headers to their answer
        # Open WebSockets (closed with 1001 at a graceful stop), with their caps.
        self.websockets = SocketBudget(
            kwargs.get("max_sockets_per_member", 16), kwargs.get("max_sockets_per_ip", 100)
        )
        self.draining = False
        kwargs.setdefault("log_function", log_request)
        super().__init__(*args, **kwargs)

    def get_handler_delegate(self, request, target_class, *args, **kwargs):
        inner = super().get_handler_delegate(request, target_class, *args, **kwargs)
        return RequestTracker(self, request, inner, streams_body(target_class))

    def log_request(self, handler):
        # Called once per answered request (RequestHandler.finish): it is no longer in flight.
        self.in_flight.discard(handler.request)
        super().log_request(handler)


def log_request(handler):
    """Tornado's access log line (status, method, path, IP, time), without the query string."""
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    access_log.log(
        level,
        "%d %s %s (%s) %.2fms",
        status,
        handler.request.method,
        loggable_path(handler.request),
        handler.request.remote_ip,
        1000.0 * handler.request.request_time(),
    )
