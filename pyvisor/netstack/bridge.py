"""An impaired wire between two TAP devices, for Linux-to-Linux reference
runs under the same seeded impairment our stack is tested with.

The host kernel has no netem, so to ask "how fast is Linux's own TCP at 3%
loss and 40 ms RTT?" the impairment must again be done in user space:
this process opens two TAP devices, and every frame read from one is passed
through an :class:`~.link.impair.Impairment` for its direction and written
to the other when due.  The caller then moves each device into its own
namespace (a TAP keeps working when moved; the fd stays attached) and gives
the kernels addresses.

``python -m pyvisor.netstack.bridge TAP_A TAP_B --impair loss=0.03,...``
prints ``READY`` once both devices exist and runs until SIGTERM.
"""

import argparse
import heapq
import os
import select
import signal
import sys
import time

from .link.impair import Impairment
from .link.tap import MAX_FRAME, TapLink


class Bridge:
    """Frames a -> b through ``ab``, b -> a through ``ba`` (Impairments)."""

    def __init__(self, tap_a, tap_b, ab, ba):
        self.links = (TapLink(tap_a), TapLink(tap_b))
        self.impair = (ab, ba)
        self.queue = []       # (due, n, out_fd, frame)
        self.n = 0
        self.forwarded = [0, 0]
        self.lost = [0, 0]

    def _read(self, side, now):
        fd, out = self.links[side].fd, self.links[1 - side].fd
        while True:
            try:
                frame = os.read(fd, MAX_FRAME)
            except BlockingIOError:
                return
            except OSError:   # EIO: device down (e.g. while it is moved)
                return
            when = self.impair[side].schedule(now)
            if not when:
                self.lost[side] += 1
            for t in when:
                self.n += 1
                heapq.heappush(self.queue, (t, self.n, out, frame, side))

    def _flush(self, now):
        q = self.queue
        while q and q[0][0] <= now:
            _t, _n, out, frame, side = heapq.heappop(q)
            try:
                os.write(out, frame)
                self.forwarded[side] += 1
            except OSError:
                self.lost[side] += 1   # queue full or device down: a lost frame

    def run(self, until=lambda: False):
        ep = select.epoll()
        fds = {link.fd: i for i, link in enumerate(self.links)}
        for fd in fds:
            ep.register(fd, select.EPOLLIN)
        while not until():
            now = time.monotonic()
            self._flush(now)
            wait = 0.05 if not self.queue else max(self.queue[0][0] - now, 0.0)
            for fd, _ev in ep.poll(min(wait, 0.05)):
                self._read(fds[fd], time.monotonic())
        ep.close()


def _impairment(text, seed):
    kw = {}
    for part in filter(None, text.split(",")):
        k, _, v = part.partition("=")
        kw[k] = int(v) if k == "seed" else float(v)
    kw["seed"] = kw.get("seed", 0) * 2 + seed
    return Impairment(**kw)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m pyvisor.netstack.bridge")
    p.add_argument("tap_a")
    p.add_argument("tap_b")
    p.add_argument("--impair", default="", help="loss=,duplicate=,reorder=,delay=,seed=")
    args = p.parse_args(argv)
    bridge = Bridge(args.tap_a, args.tap_b, _impairment(args.impair, 1),
                    _impairment(args.impair, 2))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print("READY", flush=True)
    bridge.run(until=lambda: bool(stop))
    print("forwarded %s lost %s" % (bridge.forwarded, bridge.lost), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
