"""A link wrapper that records every frame, both directions, to a pcap file.

The file is classic libpcap (magic 0xa1b2c3d4, LINKTYPE_ETHERNET), readable
by tcpdump, tshark and Wireshark.  Timestamps come from the host's wall
clock.  Segmentation offload is not passed through (``gso_max_size`` stays
0), so the capture holds the frames as they are on the wire.
"""

import struct
import time

from .base import LinkEndpoint

PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
SNAPLEN = 65535


class CaptureLink(LinkEndpoint):
    def __init__(self, inner, path):
        super().__init__(inner.mtu, inner.mac)
        self.inner = inner
        self.file = open(path, "wb")
        self.file.write(struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, SNAPLEN,
                                    LINKTYPE_ETHERNET))
        self.frames = 0
        inner.attach(self._from_inner)

    def _record(self, frame):
        t = time.time()
        data = bytes(frame[:SNAPLEN])
        self.file.write(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(data), len(frame)))
        self.file.write(data)
        self.frames += 1

    def write(self, frame):
        self.tx_frames += 1
        self._record(frame)
        self.inner.write(frame)

    def _from_inner(self, frame, csum_ok=False):
        self.rx_frames += 1
        self._record(frame)
        if self._deliver is not None:
            self._deliver(frame, csum_ok)

    def pump(self, now):
        return self.inner.pump(now)

    def next_deadline(self):
        return self.inner.next_deadline()

    def close(self):
        self.file.close()
        self.inner.close()


def read_pcap(path):
    """Frames of a classic little-endian pcap file, as a list of bytes."""
    frames = []
    with open(path, "rb") as f:
        hdr = f.read(24)
        if len(hdr) < 24 or struct.unpack_from("<I", hdr)[0] != PCAP_MAGIC:
            raise ValueError("not a little-endian pcap file")
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return frames
            _s, _us, incl, _orig = struct.unpack("<IIII", rec)
            data = f.read(incl)
            if len(data) < incl:
                return frames  # a record cut short by the end of the file
            frames.append(data)
