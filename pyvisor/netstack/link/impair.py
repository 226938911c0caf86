"""A seeded impairment wrapper: loss, duplication, reordering and delay.

The host kernel here has no netem, so impairment is done on our side of a
link.  :class:`ImpairedLink` wraps any endpoint; frames in either direction
pass through an :class:`Impairment` (one per direction, each with its own
seeded generator) and are held until due.  The same wrapper serves the
in-memory unit tests and a TAP device, so a failure seen on one is
reproducible on the other with the same seed.
"""

import heapq
import random

from .base import LinkEndpoint


class Impairment:
    """Per-direction impairment.  Probabilities are per frame; delays are
    seconds: a fixed one-way ``delay``, a uniform extra in [0, ``jitter``),
    and ``reorder_delay`` more for the ``reorder`` share of frames."""

    def __init__(self, loss=0.0, duplicate=0.0, reorder=0.0, reorder_delay=0.005, delay=0.0,
                 jitter=0.0, seed=0):
        self.loss, self.duplicate, self.reorder = loss, duplicate, reorder
        self.reorder_delay, self.delay, self.jitter, self.seed = reorder_delay, delay, jitter, seed
        for name in ("loss", "duplicate", "reorder"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError("%s must be a probability" % name)
        self.rng = random.Random(self.seed)

    def __repr__(self):
        return ("Impairment(loss=%r, duplicate=%r, reorder=%r, reorder_delay=%r, delay=%r, "
                "jitter=%r, seed=%r)" % (self.loss, self.duplicate, self.reorder,
                                         self.reorder_delay, self.delay, self.jitter, self.seed))

    def schedule(self, now):
        """Delivery times for one frame: [] if lost, two if duplicated."""
        r = self.rng
        if self.loss and r.random() < self.loss:
            return []
        copies = 2 if self.duplicate and r.random() < self.duplicate else 1
        out = []
        for _ in range(copies):
            t = now + self.delay
            if self.jitter:
                t += r.random() * self.jitter
            if self.reorder and r.random() < self.reorder:
                t += self.reorder_delay
            out.append(t)
        return out


class _Queue:
    """Frames held until due, in (time, order) order."""

    def __init__(self):
        self.heap = []
        self.n = 0

    def push(self, when, frame):
        self.n += 1
        heapq.heappush(self.heap, (when, self.n, frame))

    def pop_due(self, now):
        heap = self.heap
        while heap and heap[0][0] <= now:
            yield heapq.heappop(heap)[2]

    def next(self):
        return self.heap[0][0] if self.heap else None


class ImpairedLink(LinkEndpoint):
    """Wraps ``inner``; impairs frames written (``tx``) and received (``rx``).

    ``clock`` supplies ``now()`` for frames written, since ``write`` has no
    time argument.
    """

    def __init__(self, inner, clock, tx=None, rx=None):
        super().__init__(inner.mtu, inner.mac)
        self.inner = inner
        self.clock = clock
        self.tx = tx or Impairment()
        self.rx = rx or Impairment(seed=self.tx.seed + 1)
        self._txq = _Queue()
        self._rxq = _Queue()
        self.lost = 0
        inner.attach(self._from_inner)

    def write(self, frame):
        self.tx_frames += 1
        when = self.tx.schedule(self.clock.now())
        if not when:
            self.lost += 1
        frame = bytes(frame)
        for t in when:
            self._txq.push(t, frame)
        self._flush_tx(self.clock.now())

    def _from_inner(self, frame, csum_ok=False):
        when = self.rx.schedule(self.clock.now())
        if not when:
            self.lost += 1
        for t in when:
            self._rxq.push(t, (bytes(frame), csum_ok))

    def _flush_tx(self, now):
        for frame in self._txq.pop_due(now):
            self.inner.write(frame)

    # N.B. no write_gso: a lost super-segment would be forty lost segments,
    # so impaired links run without segmentation offload (gso_max_size 0).

    def pump(self, now):
        self._flush_tx(now)
        self.inner.pump(now)
        n = 0
        for frame, csum_ok in self._rxq.pop_due(now):
            n += 1
            self.rx_frames += 1
            if self._deliver is not None:
                self._deliver(frame, csum_ok)
        return n

    def next_deadline(self):
        ds = [d for d in (self._txq.next(), self._rxq.next(), self.inner.next_deadline())
              if d is not None]
        return min(ds) if ds else None

    def close(self):
        self.inner.close()
