"""Run a stack on real links with the real clock.

One thread, one loop: wait (epoll) until a link fd is readable or the stack's
next deadline comes, then ``stack.poll(now)``, then the caller's ``step``
(non-blocking application code, e.g. an echo server).  This is the loop the
Sentry will run for netstack; here it also serves ``python -m
pyvisor.netstack`` and the interoperability tests.
"""

import select


class Driver:
    def __init__(self, stack, links=()):
        self.stack = stack
        self.epoll = select.epoll()
        self.fds = []
        for link in links:
            fd = _fileno(link)
            if fd is not None:
                self.epoll.register(fd, select.EPOLLIN)
                self.fds.append(fd)

    def run(self, step=None, until=None, timeout=None, idle_wait=0.05):
        """Loop until ``until()`` is true or ``timeout`` seconds pass.
        Returns True if ``until`` was met."""
        clock = self.stack.clock
        end = None if timeout is None else clock.now() + timeout
        while True:
            now = clock.now()
            self.stack.poll(now)
            if step is not None:
                step()
            self.stack.flush()
            if until is not None and until():
                return True
            if end is not None and now >= end:
                return False
            wait = idle_wait
            d = self.stack.next_deadline()
            if d is not None:
                wait = min(wait, max(d - clock.now(), 0.0))
            if end is not None:
                wait = min(wait, max(end - now, 0.0))
            if wait > 0:
                self.epoll.poll(wait)

    def close(self):
        self.epoll.close()


def _fileno(link):
    while link is not None:
        if hasattr(link, "fileno"):
            return link.fileno()
        link = getattr(link, "inner", None)
    return None

