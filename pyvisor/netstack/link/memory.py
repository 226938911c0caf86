"""An in-memory wire between two endpoints, for tests and stack-to-stack runs.

Frames written on one end queue for the other; ``pump`` on the receiving end
delivers them.  Queueing (rather than calling the peer at once) keeps the two
stacks from recursing into each other.
"""

from collections import deque

from .base import LinkEndpoint


class MemoryLink(LinkEndpoint):
    def __init__(self, mtu=1500, mac=None, queue_limit=100000):
        super().__init__(mtu, mac)
        self.peer = None
        self.inbox = deque()
        self.queue_limit = queue_limit
        self.dropped = 0

    def write(self, frame):
        self.tx_frames += 1
        peer = self.peer
        if peer is None or len(peer.inbox) >= peer.queue_limit:
            self.dropped += 1
            return
        peer.inbox.append(bytes(frame))

    def pump(self, now):
        n = 0
        inbox = self.inbox
        deliver = self._deliver
        while inbox:
            frame = inbox.popleft()
            n += 1
            self.rx_frames += 1
            if deliver is not None:
                deliver(frame)
        return n

    def next_deadline(self):
        return 0.0 if self.inbox else None


def memory_pair(mtu=1500):
    """Two joined endpoints (a, b)."""
    a, b = MemoryLink(mtu), MemoryLink(mtu)
    a.peer, b.peer = b, a
    return a, b
