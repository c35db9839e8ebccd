"""SIGTERM/SIGINT for the whole life of every process: forwarded by the forking parent, a drain
in a serving process, and children that never outlive their parent.
(tests/test_server.py and tests/test_resilience.py: Ctrl-C, SIGTERM to the parent, a dead parent.)"""

import asyncio
import ctypes
import os
import signal
import socket
import sys

PR_SET_PDEATHSIG = 1
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def children():
    """PIDs of this process's children (read from /proc: fork_processes keeps its own list)."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        yield int(entry)
            except (OSError, IndexError, ValueError):
                continue


class Signals:
    """One handler, installed first thing. In the forking parent it forwards the signal to the
    children. In a serving process it asks serve() to drain, once: a second copy (Ctrl-C reaches
    the whole process group, then the parent forwards it) is ignored, so no child dies by a
    signal and fork_processes never restarts one. Before anything serves: exit 0 at once."""

    forking_parent = None  # pid of the parent once it forks
    on_stop = None  # set by wait_for_stop()
    stopping = False

    @classmethod
    def install(cls):
        for signum in STOP_SIGNALS:
            signal.signal(signum, cls.handle)

    @classmethod
    def handle(cls, signum, frame):
        if cls.forking_parent == os.getpid():
            for pid in children():
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass
        elif cls.on_stop is None:
            # Nothing serves yet, so nothing to drain. Not SystemExit: raised while the process
            # imports a module (a child building its Application), the import machinery drops it
            # and the process would serve on.
            os._exit(0)
        elif not cls.stopping:
            cls.stopping = True
            cls.on_stop()

    @staticmethod
    def ignore_from_now_on():
        """Done serving: a late copy of the signal must not kill us. Python puts SIG_DFL back for
        its own handlers while it shuts down, and the parent would restart a child killed by one."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


def block_during_forks():
    """A signal must not land in a new child while Python runs its after-fork hooks (an exception
    raised there is dropped, and that child would serve on): block the stop signals around each
    fork; the child unblocks them (unblock()) once fork_processes has returned."""
    os.register_at_fork(
        before=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS),
        after_in_parent=lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS),
    )


def unblock():
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def die_with_parent(parent_pid):
    """A child never outlives its parent (PR_SET_PDEATHSIG: Python has no prctl of its own)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        sys.exit(0)


async def wait_for_stop():
    """Until SIGTERM or SIGINT. Python runs a signal handler on the main thread when that thread
    next runs, and a signal may land on an executor thread while the loop sleeps in epoll: a
    wakeup fd lets the signal wake the loop. (loop.add_signal_handler would do this too, but puts
    SIG_DFL back when the loop closes.)"""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    rsock, wsock = socket.socketpair()
    rsock.setblocking(False)
    wsock.setblocking(False)
    signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
    loop.add_reader(rsock.fileno(), rsock.recv, 4096)
    Signals.on_stop = lambda: loop.call_soon_threadsafe(stop.set)
    try:
        await stop.wait()
    finally:
        signal.set_wakeup_fd(-1)
        loop.remove_reader(rsock.fileno())
        rsock.close()
        wsock.close()
