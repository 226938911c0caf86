"""The link endpoint interface (see the package docstring)."""

import os


def random_mac():
    """A locally administered unicast MAC."""
    b = bytearray(os.urandom(6))
    b[0] = (b[0] & 0xFC) | 0x02
    return bytes(b)


class LinkEndpoint:
    """Base class: holds the attached deliver callable and counters."""

    def __init__(self, mtu=1500, mac=None):
        self.mtu = mtu
        self.mac = mac or random_mac()
        self._deliver = None
        self.gso_max_size = 0   # >0: write_gso() accepts TCP super-segments
        self.tx_frames = 0
        self.rx_frames = 0

    def attach(self, deliver):
        self._deliver = deliver

    def write(self, frame):
        raise NotImplementedError

    def write_gso(self, frame, hdr_len, gso_size):
        """Write a TCPv4 super-segment for the link to cut into segments of
        gso_size payload bytes.  Precondition: gso_max_size > 0; the TCP
        checksum field holds the pseudo-header sum (partial checksum)."""
        raise NotImplementedError

    def write_many(self, frames):
        """Write a batch of frames (a list of bytes), in order.  Links
        with a cheaper batch path (TAP) override it."""
        for frame in frames:
            self.write(frame)

    def pump(self, now):
        return 0

    def next_deadline(self):
        return None

    def close(self):
        pass
