"""Small non-blocking applications on netstack sockets: an echo server for
TCP and UDP, and clients that push data through an echo and check it.

Each app has ``step()``, called from a driver loop; it never blocks and
treats EAGAIN as "later".  Used by ``python -m pyvisor.netstack`` and by
the tests (in memory and over TAP).
"""

import errno
import hashlib
import random

from .errors import NetError
from .socket import TCPSocket, UDPSocket

CHUNK = 1 << 16


def _again(e):
    return e.errno in (errno.EAGAIN, errno.EINPROGRESS, errno.EALREADY)


class _EchoConn:
    def __init__(self, sock):
        self.sock = sock
        self.pending = bytearray()
        self.eof = False
        self.done = False

    def step(self):
        s = self.sock
        try:
            while len(self.pending) < 4 * CHUNK and not self.eof:
                d = s.recv(CHUNK)
                if not d:
                    self.eof = True
                    break
                self.pending += d
        except NetError as e:
            if not _again(e):
                self.close()
                return
        try:
            while self.pending:
                n = s.send(self.pending[:CHUNK])
                del self.pending[:n]
        except NetError as e:
            if not _again(e):
                self.close()
                return
        if self.eof and not self.pending:
            self.close()

    def close(self):
        if not self.done:
            self.done = True
            self.sock.close()


class _TCPServer:
    """A listener on ``addr:port`` (SO_REUSEADDR) and the connections it accepted."""

    def __init__(self, stack, port, addr="0.0.0.0", backlog=128):
        self.listener = TCPSocket(stack)
        self.listener.setsockopt(1, 2, 1)  # SO_REUSEADDR
        self.listener.bind((addr, port))
        self.listener.listen(backlog)
        self.conns = []

    def _accepted(self):
        """The connections waiting in the listen queue, until EAGAIN."""
        while True:
            try:
                sock, _peer = self.listener.accept()
            except NetError:
                return
            yield sock


class TCPEchoServer(_TCPServer):
    """Echoes every byte back; closes after the peer's FIN once drained."""

    def __init__(self, stack, port, addr="0.0.0.0", backlog=128):
        super().__init__(stack, port, addr, backlog)
        self.accepted = 0

    def step(self):
        for sock in self._accepted():
            self.accepted += 1
            self.conns.append(_EchoConn(sock))
        for c in self.conns:
            c.step()
        self.conns = [c for c in self.conns if not c.done]


class TCPSinkServer(_TCPServer):
    """Reads and discards (the "discard" service); counts bytes."""

    def __init__(self, stack, port, addr="0.0.0.0", backlog=128):
        super().__init__(stack, port, addr, backlog)
        self.received = 0

    def step(self):
        self.conns.extend(self._accepted())
        alive = []
        for s in self.conns:
            try:
                while True:
                    d = s.recv(1 << 20)
                    if not d:
                        s.close()
                        break
                    self.received += len(d)
            except NetError as e:
                if _again(e):
                    alive.append(s)
                else:
                    s.close()
        self.conns = alive


class UDPEchoServer:
    def __init__(self, stack, port, addr="0.0.0.0"):
        self.sock = UDPSocket(stack)
        self.sock.bind((addr, port))
        self.echoed = 0

    def step(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(65536)
            except NetError:
                return
            try:
                self.sock.sendto(data, peer)
                self.echoed += 1
            except NetError:
                pass


class TCPEchoClient:
    """Connects, sends ``nbytes`` of seeded random data, reads the echo back,
    and checks both sha256 sums.  ``result`` is None while running, then a
    dict with ``ok``, ``sent``, ``received`` and ``error``."""

    def __init__(self, stack, host, port, nbytes, seed=0):
        self.data = random.Random(seed).randbytes(nbytes)
        self.view = memoryview(self.data)
        self.sock = TCPSocket(stack)
        self.sent = 0
        self.got = hashlib.sha256()
        self.received = 0
        self.shut = False
        self.result = None
        try:
            self.sock.connect((host, port))
        except NetError as e:
            if not _again(e):
                self._finish(e.errno)

    def step(self):
        if self.result is not None:
            return
        s = self.sock
        err = s.getsockopt(1, 4)  # SO_ERROR
        if err:
            return self._finish(err)
        if s.state.value in ("SYN-SENT", "SYN-RECEIVED"):
            return
        try:
            while self.sent < len(self.data):
                self.sent += s.send(self.view[self.sent:self.sent + CHUNK])
            if not self.shut:
                s.shutdown(1)
                self.shut = True
        except NetError as e:
            if not _again(e):
                return self._finish(e.errno)
        try:
            while True:
                d = s.recv(1 << 20)
                if not d:
                    return self._finish(0)
                self.got.update(d)
                self.received += len(d)
        except NetError as e:
            if not _again(e):
                return self._finish(e.errno)

    def _finish(self, err):
        ok = (err == 0 and self.received == len(self.data)
              and self.got.digest() == hashlib.sha256(self.data).digest())
        self.result = {"ok": ok, "sent": self.sent, "received": self.received,
                       "error": errno.errorcode.get(err, err) if err else None}
        self.sock.close()


class TCPSendClient:
    """Connects, sends ``nbytes`` (a repeated pattern), shuts down its side
    and waits for the peer to close.  ``result`` has the wall and CPU
    seconds from connect to the peer's FIN."""

    def __init__(self, stack, host, port, nbytes):
        import time
        self._time = time
        self.block = bytes(range(256)) * 256
        self.nbytes = nbytes
        self.sent = 0
        self.shut = False
        self.result = None
        self.t0 = time.monotonic()
        self.c0 = time.process_time()
        self.sock = TCPSocket(stack)
        try:
            self.sock.connect((host, port))
        except NetError as e:
            if not _again(e):
                self._finish(e.errno)

    def step(self):
        if self.result is not None:
            return
        s = self.sock
        err = s.getsockopt(1, 4)
        if err:
            return self._finish(err)
        if s.state.value in ("SYN-SENT", "SYN-RECEIVED"):
            return
        try:
            while self.sent < self.nbytes:
                n = min(len(self.block), self.nbytes - self.sent)
                self.sent += s.send(self.block[:n])
            if not self.shut:
                s.shutdown(1)
                self.shut = True
            while True:
                if not s.recv(65536):
                    return self._finish(0)
        except NetError as e:
            if not _again(e):
                return self._finish(e.errno)

    def _finish(self, err):
        wall = self._time.monotonic() - self.t0
        cpu = self._time.process_time() - self.c0
        self.result = {"ok": err == 0 and self.sent == self.nbytes, "sent": self.sent,
                       "seconds": wall, "cpu_seconds": cpu,
                       "mbit_per_s": self.sent * 8 / wall / 1e6 if wall else 0.0,
                       "error": errno.errorcode.get(err, err) if err else None}
        self.sock.close()


class UDPEchoClient:
    """Sends ``count`` numbered datagrams and counts the echoes."""

    def __init__(self, stack, host, port, count=10, size=512, interval=0.05, clock=None):
        self.sock = UDPSocket(stack)
        self.sock.connect((host, port))
        self.count = count
        self.size = size
        self.clock = clock or stack.clock
        self.interval = interval
        self.next_send = self.clock.now()
        self.sent = 0
        self.replies = set()
        self.result = None

    def step(self):
        now = self.clock.now()
        if self.sent < self.count and now >= self.next_send:
            msg = b"%08d" % self.sent
            self.sock.send(msg + b"u" * (self.size - len(msg)))
            self.sent += 1
            self.next_send = now + self.interval
        while True:
            try:
                d = self.sock.recv(65536)
            except NetError:
                break
            if len(d) == self.size:
                self.replies.add(int(d[:8]))
        if len(self.replies) == self.count:
            self.result = {"ok": True, "sent": self.sent, "received": len(self.replies)}
