"""ARP (RFC 826) for IPv4 over Ethernet: a cache, resolution and retries.

The resolver is driven by the interface: ``input(payload, now)`` for ARP
packets, ``resolve(ip, packet, now)`` when IPv4 wants to send, and
``tick(now)`` for retries and expiry.  It sends through the ``transmit``
callable it was given (``transmit(dst_mac, ethertype, payload)``).

Memory is bounded: at most ``MAX_ENTRIES`` cache entries, ``MAX_PENDING``
addresses being resolved, and ``MAX_QUEUED`` packets held per address
(Linux's ``unres_qlen`` plays the same role); excess is dropped and counted.
"""

import struct
from collections import OrderedDict

from .addr import BROADCAST_MAC, ZERO_MAC
from .ethernet import ETHERTYPE_ARP, ETHERTYPE_IPV4

_ARP = struct.Struct("!HHBBH6sI6sI")
ARP_LEN = _ARP.size  # 28
OP_REQUEST = 1
OP_REPLY = 2

MAX_ENTRIES = 512
MAX_PENDING = 64
MAX_QUEUED = 16
REACHABLE_TIME = 60.0      # seconds an entry lives
RETRANS_TIME = 1.0         # seconds between requests
MAX_REQUESTS = 3           # requests before giving up


class _Pending:
    __slots__ = ("packets", "tries", "next_try")

    def __init__(self, now):
        self.packets = []
        self.tries = 0
        self.next_try = now


class ArpResolver:
    """ARP for one interface (one MAC, one IPv4 address)."""

    def __init__(self, my_mac, my_ip, transmit, drops):
        self.my_mac = my_mac
        self.my_ip = my_ip
        self._transmit = transmit
        self.drops = drops
        self.cache = OrderedDict()   # ip -> (mac, expires)
        self.pending = {}            # ip -> _Pending

    # -- input -------------------------------------------------------------

    def input(self, payload, now):
        """Handle one ARP packet (the Ethernet payload).  Never raises."""
        if len(payload) < ARP_LEN:
            self.drops["arp_truncated"] += 1
            return
        htype, ptype, hlen, plen, op, sha, spa, _tha, tpa = _ARP.unpack_from(payload, 0)
        if htype != 1 or ptype != ETHERTYPE_IPV4 or hlen != 6 or plen != 4:
            self.drops["arp_unsupported"] += 1
            return
        if op not in (OP_REQUEST, OP_REPLY) or sha[0] & 1 or sha == ZERO_MAC:
            self.drops["arp_malformed"] += 1
            return
        # RFC 826 "merge flag": update an existing entry; create one only if
        # the packet is for us (keeps strangers from filling the cache).
        if spa in self.cache or tpa == self.my_ip:
            if spa != 0:
                self._learn(spa, sha, now)
        if tpa != self.my_ip:
            return
        if op == OP_REQUEST:
            self._send(OP_REPLY, sha, self.my_ip, sha, spa)

    def _learn(self, ip_addr, mac_addr, now):
        self.cache[ip_addr] = (mac_addr, now + REACHABLE_TIME)
        self.cache.move_to_end(ip_addr)
        while len(self.cache) > MAX_ENTRIES:
            self.cache.popitem(last=False)
        pend = self.pending.pop(ip_addr, None)
        if pend is not None:
            for packet in pend.packets:
                self._transmit(mac_addr, ETHERTYPE_IPV4, packet)

    # -- output ------------------------------------------------------------

    def lookup(self, ip_addr, now):
        """The cached MAC for ip_addr, or None."""
        entry = self.cache.get(ip_addr)
        if entry is None:
            return None
        if entry[1] <= now:
            del self.cache[ip_addr]
            return None
        return entry[0]

    def resolve(self, ip_addr, packet, now):
        """Send an IPv4 packet to next hop ip_addr, resolving it if needed."""
        hw = self.lookup(ip_addr, now)
        if hw is not None:
            self._transmit(hw, ETHERTYPE_IPV4, packet)
            return
        pend = self.pending.get(ip_addr)
        if pend is None:
            if len(self.pending) >= MAX_PENDING:
                self.drops["arp_pending_full"] += 1
                return
            pend = self.pending[ip_addr] = _Pending(now)
        if len(pend.packets) >= MAX_QUEUED:
            self.drops["arp_queue_full"] += 1
            return
        pend.packets.append(bytes(packet))
        if pend.tries == 0:
            self._request(ip_addr, pend, now)

    def _request(self, ip_addr, pend, now):
        pend.tries += 1
        pend.next_try = now + RETRANS_TIME
        self._send(OP_REQUEST, BROADCAST_MAC, self.my_ip, ZERO_MAC, ip_addr)

    def _send(self, op, eth_dst, spa, tha, tpa):
        payload = _ARP.pack(1, ETHERTYPE_IPV4, 6, 4, op, self.my_mac, spa, tha, tpa)
        self._transmit(eth_dst, ETHERTYPE_ARP, payload)

    # -- time --------------------------------------------------------------

    def tick(self, now):
        """Retry or give up on pending resolutions."""
        for ip_addr, pend in list(self.pending.items()):
            if pend.next_try > now:
                continue
            if pend.tries >= MAX_REQUESTS:
                del self.pending[ip_addr]
                self.drops["arp_unresolved"] += len(pend.packets)
            else:
                self._request(ip_addr, pend, now)

    def next_deadline(self):
        if not self.pending:
            return None
        return min(p.next_try for p in self.pending.values())
