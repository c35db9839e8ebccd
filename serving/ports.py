"""A port in use is a clear error, not a silent share (tests/test_server.py: two servers, one port)."""

import errno
import socket

import tornado.netutil


class PortInUse(Exception):
    pass


def claim_port(address, port):
    """Refuse a port that is in use instead of sharing it; returns a lock to hold while serving.

    The children bind with SO_REUSEPORT, which would let a second server bind beside a running one.
    So: an abstract Unix socket named after the address and port works as a lock between servers
    starting at the same moment (the kernel drops it when the last holder exits), and a probe
    without SO_REUSEPORT catches any other program on the port."""
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lock.bind("\0storyhouse:%s:%d" % (address or "*", port))
        for sock in tornado.netutil.bind_sockets(port, address or None):
            sock.close()
    except OSError as e:
        lock.close()
        if e.errno == errno.EADDRINUSE:
            raise PortInUse(port) from None
        raise
    return lock
