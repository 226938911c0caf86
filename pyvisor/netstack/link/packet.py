"""An AF_PACKET socket on an existing interface as a link endpoint.

The stack takes over an interface the host kernel holds no address on
(e.g. one end of a veth pair moved into a namespace): frames are read and
written raw with ``socket(AF_PACKET, SOCK_RAW, ETH_P_ALL)`` bound to it.
Our stack uses the interface's own MAC, so the frames it gets are addressed
"to this host" as far as the kernel's filter is concerned.  Outgoing frames
echoed back by ETH_P_ALL (pkttype PACKET_OUTGOING) are skipped.

A peer in the same host (veth) hands frames over with the checksum not yet
computed (CHECKSUM_PARTIAL).  PACKET_AUXDATA tells us so per frame
(TP_STATUS_CSUMNOTREADY, or TP_STATUS_CSUM_VALID when already checked), and
such frames are delivered with ``csum_ok=True``.
"""

import errno
import socket
import struct

from .base import LinkEndpoint

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_CSUMNOTREADY = 1 << 3
TP_STATUS_CSUM_VALID = 1 << 7
_AUX_SPACE = socket.CMSG_SPACE(20)


class PacketLink(LinkEndpoint):
    """Precondition: CAP_NET_RAW in the interface's network namespace."""

    def __init__(self, ifname, mtu=1500, max_batch=256):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            sock.bind((ifname, 0))
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            sock.setblocking(False)
            hwaddr = sock.getsockname()[4]
        except OSError:
            sock.close()
            raise
        super().__init__(mtu, bytes(hwaddr[:6]))
        self.ifname = ifname
        self.sock = sock
        self.max_batch = max_batch
        self.tx_dropped = 0

    def fileno(self):
        return self.sock.fileno()

    def write(self, frame):
        self.tx_frames += 1
        try:
            self.sock.send(frame)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.ENOBUFS, errno.ENETDOWN, errno.ENXIO):
                self.tx_dropped += 1
            else:
                raise

    def pump(self, now):
        n = 0
        while n < self.max_batch:
            try:
                data, anc, _flags, addr = self.sock.recvmsg(65535, _AUX_SPACE)
            except BlockingIOError:
                break
            if addr[2] == PACKET_OUTGOING:
                continue
            csum_ok = False
            for level, kind, cdata in anc:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(cdata) >= 4:
                    status = struct.unpack_from("=I", cdata)[0]
                    csum_ok = bool(status & (TP_STATUS_CSUMNOTREADY | TP_STATUS_CSUM_VALID))
            n += 1
            self.rx_frames += 1
            if self._deliver is not None:
                self._deliver(data, csum_ok)
        return n

    def close(self):
        self.sock.close()
