"""A tiny TCP forwarder for tests: 127.0.0.1:<port> → a target, in one background thread.

It plays a database that fails in the ways real ones do:
  stop()       the server is gone: live connections closed, new ones refused at once;
  blackhole()  the host is unreachable: live connections closed, new ones time out connecting;
  freeze()     the server hangs: live connections closed, new ones accepted but never answered;
  start() / restart()  forwarding again on the same port.
"""

import selectors
import socket
import threading


class TcpProxy:
    def __init__(self, target_host, target_port, port=0):
        self.target = (target_host, target_port)
        self.port = port
        self._thread = None
        self._stopping = threading.Event()
        self._frozen = False
        self._blackhole = []

    @property
    def running(self):
        return self._thread is not None

    def start(self, frozen=False):
        """Forward again (on the same port once it has one)."""
        self.stop()
        self._frozen = frozen
        listener = self._listen(64)
        listener.setblocking(False)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, args=(listener,), name="tcp-proxy", daemon=True)
        self._thread.start()
        return self

    restart = start

    def stop(self):
        """Close the listener and every live connection; new connections are refused."""
        for sock in self._blackhole:
            _close(sock)
        self._blackhole = []
        if self._thread is not None:
            self._stopping.set()
            self._thread.join(5)
            self._thread = None

    def blackhole(self):
        """Close everything, then listen without ever accepting, with a full backlog: a connect()
        gets no answer and times out, as with a host that is down."""
        self.stop()
        listener = self._listen(0)
        filler = socket.create_connection(("127.0.0.1", self.port), timeout=1)  # fills the backlog
        self._blackhole = [listener, filler]

    def freeze(self):
        """Close every live connection; accept new ones but never answer (a hung server)."""
        self.start(frozen=True)

    def _listen(self, backlog):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(backlog)
        self.port = listener.getsockname()[1]
        return listener

    def _serve(self, listener):
        sel = selectors.DefaultSelector()
        sel.register(listener, selectors.EVENT_READ, None)
        peers = {}  # socket -> the socket it forwards to (None while frozen)
        try:
            while not self._stopping.is_set():
                for key, _ in sel.select(timeout=0.02):
                    if key.data is None:
                        self._accept(listener, sel, peers)
                    else:
                        self._pump(key.fileobj, sel, peers)
        finally:
            sel.close()
            listener.close()
            for sock in list(peers):
                if sock is not None:
                    _close(sock)

    def _accept(self, listener, sel, peers):
        try:
            client, _ = listener.accept()
        except BlockingIOError:
            return
        client.setblocking(True)
        if self._frozen:
            peers[client] = None  # held open, never answered
            return
        try:
            upstream = socket.create_connection(self.target, timeout=2)
        except OSError:
            _close(client)
            return
        upstream.setblocking(True)
        peers[client], peers[upstream] = upstream, client
        sel.register(client, selectors.EVENT_READ, "peer")
        sel.register(upstream, selectors.EVENT_READ, "peer")

    def _pump(self, sock, sel, peers):
        other = peers.get(sock)
        try:
            data = sock.recv(65536)
            if data and other is not None:
                other.sendall(data)
                return
        except OSError:
            pass
        for s in (sock, other):  # one side ended: end both
            if s is not None and s in peers:
                peers.pop(s)
                sel.unregister(s)
                _close(s)


def _close(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
