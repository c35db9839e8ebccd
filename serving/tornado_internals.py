"""Every place Storyhouse reaches under Tornado's public API, in one module, each with why.

tests/test_tornado_internals.py checks each of these against the installed Tornado, so an upgrade
that moves one fails loudly there instead of quietly somewhere else.
"""

import copy


def streams_body(handler_class):
    """Whether a handler class was decorated with @stream_request_body. Tornado keeps this in a
    private attribute and offers no public test; serving/tracking.py must know it before the
    handler exists (a streamed body sets its own limits)."""
    return getattr(handler_class, "_stream_request_body", False)


def forget_parsed_cookies(request):
    """Drop the request's parsed cookies (about 1 KB of Morsels). A WebSocket keeps its request for
    its whole life: with 10,000 sockets that is 10 MB for cookies read once at the handshake.
    `request.cookies` parses them again if anything asks."""
    request.__dict__.pop("_cookies", None)


def read_in_large_chunks(request, size):
    """Read this request's body `size` bytes at a time instead of the server's 64 KB (a sixteenth
    of the calls through IOStream, the multipart parser and the executor: about twice the upload
    throughput). The connection gets its own copy of the parameters, so other connections keep
    64 KB; returns a function that puts the stream's usual size back when the request ends."""
    conn = request.connection
    conn.params = copy.copy(conn.params)
    conn.params.chunk_size = size
    usual = conn.stream.read_chunk_size
    conn.stream.read_chunk_size = size

    def restore():
        conn.stream.read_chunk_size = usual

    return restore


def stop_keep_alive(http_server):
    """From now on every answer says `Connection: close` and closes its connection (the graceful
    stop): keep-alive clients send their next request to another server. HTTPServer builds each
    connection's parameters from this object, and has no public switch for it."""
    http_server.conn_params.no_keep_alive = True


def websocket_stream(handler):
    """The IOStream under an open WebSocket (views/fanout.py writes frames built once for all
    clients straight to it), or None once the connection is closing."""
    conn = handler.ws_connection
    if conn is None or conn.is_closing():
        return None
    return conn.stream


def unsent_bytes(stream):
    """Bytes an IOStream holds that the peer has not taken yet. The public `writing()` says only
    whether there are any; views/sockets.py drops a client that lets a megabyte pile up."""
    return len(stream._write_buffer)
