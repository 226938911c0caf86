"""A TAP device (/dev/net/tun, IFF_TAP | IFF_NO_PI) as a link endpoint.

The kernel side of the device is an ordinary interface (give it an address
with ``ip addr``); our stack is the machine at the other end of the wire,
with its own MAC.  Frames are read and written whole, one per read(2) or
write(2).

With ``vnet_hdr=True`` the device is opened with IFF_VNET_HDR and every
frame carries a 10-byte ``struct virtio_net_hdr`` (little-endian: flags,
gso_type, hdr_len, gso_size, csum_start, csum_offset) in front.  That buys
two offloads, which is where the per-packet cost of a Python stack goes:

- send: ``write_gso`` passes a TCP super-segment of up to ``gso_max_size``
  payload bytes with VIRTIO_NET_HDR_GSO_TCPV4 and NEEDS_CSUM; the kernel cuts
  it into MSS-sized segments and completes each checksum;
- receive: TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4) lets the kernel hand us
  large TCP segments with partial checksums; frames flagged NEEDS_CSUM or
  DATA_VALID are delivered with ``csum_ok=True`` (the kernel vouches).

The fd is non-blocking: ``pump`` reads what is there; ``write`` drops a
frame (and counts it) when the device queue is full, as a wire would.
"""

import errno
import fcntl
import os
import struct

from .. import _frames
from .base import LinkEndpoint

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUNSETOFFLOAD = 0x400454D0
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
VNET_HDR_LEN = 10
VNET_F_NEEDS_CSUM = 1
VNET_F_DATA_VALID = 2
VNET_GSO_TCPV4 = 1
GSO_MAX_SIZE = 62000          # payload bytes per super-segment (IPv4 limit 65535)
MAX_FRAME = 65535 + 14 + VNET_HDR_LEN
_VNET = struct.Struct("<BBHHHH")


class TapLink(LinkEndpoint):
    """Opens (or attaches to) the TAP interface ``name``.

    Precondition: CAP_NET_ADMIN in the network namespace that owns the
    device, and /dev/net/tun present.  Raises OSError otherwise.
    """

    def __init__(self, name, mtu=1500, mac=None, vnet_hdr=False, max_batch=256,
                 offload=True):
        super().__init__(mtu, mac)
        self.name = name
        self.vnet_hdr = vnet_hdr
        self.max_batch = max_batch
        self.tx_dropped = 0
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0)
            ifr = struct.pack("16sH22x", name.encode(), flags)
            fcntl.ioctl(fd, TUNSETIFF, ifr)
            if vnet_hdr and offload:
                fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4)
        except OSError:
            os.close(fd)
            raise
        self.fd = fd
        self._zero_hdr = bytes(VNET_HDR_LEN)
        if vnet_hdr and offload:
            self.gso_max_size = GSO_MAX_SIZE

    def fileno(self):
        return self.fd

    def write(self, frame):
        self.tx_frames += 1
        if self.vnet_hdr:
            frame = self._zero_hdr + bytes(frame)
        try:
            os.write(self.fd, frame)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.ENOBUFS, errno.EIO, errno.EINVAL):
                self.tx_dropped += 1
            else:
                raise

    def write_many(self, frames):
        """A batch of frames (bytes), one write(2) each, in one C loop."""
        if self.vnet_hdr:
            for frame in frames:
                self.write(frame)
            return
        written, dropped = _frames.write_frames(self.fd, frames)
        self.tx_frames += written + dropped
        self.tx_dropped += dropped

    def write_gso(self, frame, hdr_len, gso_size):
        """A TCPv4 super-segment; the kernel segments it (see module doc)."""
        self.tx_frames += 1
        hdr = _VNET.pack(VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, hdr_len, gso_size, 34, 16)
        try:
            os.write(self.fd, hdr + bytes(frame))
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.ENOBUFS, errno.EIO, errno.EINVAL):
                self.tx_dropped += 1
            else:
                raise

    def pump(self, now):
        """Read and deliver up to max_batch waiting frames."""
        n = 0
        deliver = self._deliver
        skip = VNET_HDR_LEN if self.vnet_hdr else 0
        while n < self.max_batch:
            try:
                data = os.read(self.fd, MAX_FRAME)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EIO:  # interface down
                    break
                raise
            if len(data) <= skip:
                break
            n += 1
            self.rx_frames += 1
            if deliver is None:
                continue
            if skip:
                csum_ok = bool(data[0] & (VNET_F_NEEDS_CSUM | VNET_F_DATA_VALID))
                deliver(memoryview(data)[skip:], csum_ok)
            else:
                deliver(data)
        return n

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
