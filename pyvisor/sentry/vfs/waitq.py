"""Readiness: how poll, select and epoll learn that a file changed.

Linux background: every pollable file has a wait queue; ``poll`` asks the
file for its current event mask and, if nothing is ready, registers on the
queues of every file it watches, then sleeps until one of them is notified.

Here a file that can change readiness (pipes, sockets, eventfd, timerfd,
signalfd, ttys…) has a ``waitq`` attribute (a WaitQueue) and a method
``poll_events() -> int`` returning POLL* bits. A file without ``waitq`` is
always ready (regular files: POLLIN|POLLOUT). Whoever changes a file's state
calls ``waitq.notify(events)`` *after* releasing the file's own lock.
Waiters are callables ``fn(events)``: poll/select register one that wakes
the task; epoll registers one that marks the item ready.
"""

import threading

POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP, POLLNVAL = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20
POLLRDNORM, POLLRDBAND, POLLWRNORM, POLLWRBAND, POLLRDHUP = 0x40, 0x80, 0x100, 0x200, 0x2000
DEFAULT_EVENTS = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM


class WaitQueue:
    def __init__(self):
        self._lock = threading.Lock()
        self._waiters = []

    def register(self, fn):
        with self._lock:
            self._waiters.append(fn)

    def unregister(self, fn):
        with self._lock:
            try:
                self._waiters.remove(fn)
            except ValueError:
                pass

    def notify(self, events=~0):
        with self._lock:
            waiters = list(self._waiters)
        for fn in waiters:
            fn(events)


def poll_events(f):
    """The file's ready events right now."""
    fn = getattr(f, "poll_events", None)
    return fn() if fn is not None else DEFAULT_EVENTS
