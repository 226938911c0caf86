"""Loopback: every frame written comes back in on the next pump."""

from collections import deque

from .base import LinkEndpoint


class LoopbackLink(LinkEndpoint):
    def __init__(self, mtu=65536):
        super().__init__(mtu, b"\x00" * 6)
        self.inbox = deque()

    def write(self, frame):
        self.tx_frames += 1
        self.inbox.append(bytes(frame))

    def pump(self, now):
        n = 0
        while self.inbox:
            frame = self.inbox.popleft()
            n += 1
            self.rx_frames += 1
            if self._deliver is not None:
                self._deliver(frame)
        return n

    def next_deadline(self):
        return 0.0 if self.inbox else None
