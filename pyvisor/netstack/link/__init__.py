"""Link endpoints: where frames enter and leave a stack.

A link endpoint has:

- ``mtu`` (IP bytes per frame) and ``mac`` (6 bytes);
- ``attach(deliver)``: the stack gives a callable ``deliver(frame,
  csum_ok=False)`` that the endpoint (or whoever pumps it) calls for each
  inbound frame; ``csum_ok`` says the host kernel vouched for the transport
  checksum (TAP checksum offload);
- ``write(frame)``: send one Ethernet frame (bytes-like).  Never blocks and
  never raises for a full or lost link: frames may be dropped, as on a wire;
- ``pump(now) -> int``: deliver inbound frames that are due (simulated links;
  real ones are pumped by the driver) and return how many were delivered;
- ``next_deadline() -> float | None``: when ``pump`` next has work;
- ``gso_max_size`` and ``write_gso(frame, hdr_len, gso_size)``: TCP
  segmentation offload, where the link has it (TAP with IFF_VNET_HDR).

Endpoints: :class:`MemoryLink` pairs, :class:`LoopbackLink`,
``tap.TapLink``, and wrappers that take an inner endpoint:
:class:`ImpairedLink` (seeded loss/duplication/reordering/delay) and
``capture.CaptureLink`` (pcap recording).
"""

from .base import LinkEndpoint
from .memory import MemoryLink, memory_pair
from .loopback import LoopbackLink
from .impair import Impairment, ImpairedLink

__all__ = ["LinkEndpoint", "MemoryLink", "memory_pair", "LoopbackLink",
           "Impairment", "ImpairedLink"]
