"""A TAP device (/dev/net/tun, IFF_TAP | IFF_NO_PI) as a link endpoint.

The kernel side of the device is an ordinary interface (give it an address
with ``ip addr``); our stack is the machine at the other end of the wire,
with its own MAC.  Frames are read and written whole, one per read(2) or
write(2).  With ``vnet_hdr=True`` the device is opened with IFF_VNET_HDR and
every frame carries a 10-byte ``struct virtio_net_hdr`` in front; we send
zero headers (no offload requested) and strip the ones we get.  Large
segments (GSO/TSO through TUNSETOFFLOAD) are a later step.

The fd is non-blocking: ``pump`` reads what is there; ``write`` drops a
frame (and counts it) when the device queue is full, as a wire would.
"""

import errno
import fcntl
import os
import struct

from .base import LinkEndpoint

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
VNET_HDR_LEN = 10
MAX_FRAME = 65535 + VNET_HDR_LEN


class TapLink(LinkEndpoint):
    """Opens (or attaches to) the TAP interface ``name``.

    Precondition: CAP_NET_ADMIN in the network namespace that owns the
    device, and /dev/net/tun present.  Raises OSError otherwise.
    """

    def __init__(self, name, mtu=1500, mac=None, vnet_hdr=False, max_batch=256):
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
        except OSError:
            os.close(fd)
            raise
        self.fd = fd
        self._zero_hdr = bytes(VNET_HDR_LEN)

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
            if not data:
                break
            n += 1
            self.rx_frames += 1
            if deliver is not None:
                deliver(memoryview(data)[skip:] if skip else data)
        return n

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
