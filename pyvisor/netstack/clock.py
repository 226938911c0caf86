"""Clocks for netstack.  Time is an input: protocol code takes ``now``.

A clock has one method, ``now() -> float`` (seconds, monotonic).  Tests use
:class:`FakeClock` and advance it; the driver uses :class:`MonotonicClock`.
"""

import time


class MonotonicClock:
    """The host's CLOCK_MONOTONIC."""

    __slots__ = ()

    def now(self):
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to."""

    __slots__ = ("_now",)

    def __init__(self, start=1000.0):
        self._now = float(start)

    def now(self):
        return self._now

    def advance(self, seconds):
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self._now += seconds

    def set(self, when):
        """Move to an absolute time; never backwards."""
        if when > self._now:
            self._now = float(when)
