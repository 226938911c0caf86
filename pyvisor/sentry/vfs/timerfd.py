"""timerfd(2): a timer whose expiries are read from a file.

Linux background (fs/timerfd.c):

- timerfd_create(clockid, flags) accepts CLOCK_REALTIME, CLOCK_MONOTONIC,
  CLOCK_BOOTTIME and the two _ALARM clocks; flags TFD_CLOEXEC|TFD_NONBLOCK.
- timerfd_settime arms it (TFD_TIMER_ABSTIME: the value is a time on the
  clock) and resets the expiration count to 0; a zero it_value disarms.
  TFD_TIMER_CANCEL_ON_SET is accepted (N.B. the wall clock is never set in
  the sandbox, so ECANCELED never happens).
- read(2) needs 8 bytes (else EINVAL) and returns the number of expiries
  since the last read (host order u64), resetting it; with none it blocks,
  or fails with EAGAIN under TFD_NONBLOCK. write(2) is EINVAL.
- Readiness: POLLIN while the count is > 0.

Expiries come from the kernel's TimerService (sentry/timers.py) on its
thread; the callback adds to the count under `cond`, then notifies the
WaitQueue with no lock held (vfs/waitq.py contract).
"""

import errno
import struct
import threading

from pyvisor.abi.structs import split_ns

from .. import timers, waiting
from ..errors import SyscallError
from .file import FileDescription, O_NONBLOCK, O_RDWR
from .waitq import POLLIN, POLLRDNORM, WaitQueue

TFD_CLOEXEC = 0o2000000
TFD_NONBLOCK = O_NONBLOCK
TFD_CREATE_FLAGS = TFD_CLOEXEC | TFD_NONBLOCK
TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET = 1, 2
TFD_SETTIME_FLAGS = TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET
_U64 = struct.Struct("=Q")
_MASK64 = (1 << 64) - 1


class TimerFile(FileDescription):
    """A timerfd description. `ticks` and `settime_flags` are protected by `cond`."""

    seekable = False
    anon_name = b"[timerfd]"

    def __init__(self, service, clockid, flags=0):
        super().__init__(None, O_RDWR | (flags & O_NONBLOCK))
        self.service = service
        self.clockid = clockid
        self.ticks = 0
        self.settime_flags = 0
        self.cond = threading.Condition()
        self.waitq = WaitQueue()
        self.timer = service.timer(self._expired)

    def _expired(self, n, gen):
        with self.cond:
            if not self.timer.current(gen):
                return                  # re-armed since this expiry was due
            self.ticks = min(self.ticks + n, _MASK64)
            self.cond.notify_all()
        self.waitq.notify(POLLIN | POLLRDNORM)

    def settime(self, flags, value_ns, interval_ns):
        """timerfd_settime(2) on this file; returns the old (remaining, interval) in ns."""
        with self.cond:
            self.ticks = 0
            self.settime_flags = flags
            if value_ns == 0:
                return self.timer.set(None, interval_ns)
            deadline = timers.to_deadline(self.service, self.clockid, value_ns,
                                          bool(flags & TFD_TIMER_ABSTIME))
            return self.timer.set(deadline, interval_ns)

    def gettime(self):
        """timerfd_gettime(2): (remaining, interval) in ns."""
        return self.timer.get()

    def pread(self, count, offset):
        """Implements read(2) on a timerfd: the 8-byte expiration count."""
        if offset >= 0:
            raise SyscallError(errno.ESPIPE)
        if count < 8:
            raise SyscallError(errno.EINVAL)
        with self.cond:
            while self.ticks == 0:
                if self.nonblocking:
                    raise SyscallError(errno.EAGAIN)
                waiting.wait(self.cond)
            value, self.ticks = self.ticks, 0
        return _U64.pack(value)

    def pwrite(self, data, offset):
        raise SyscallError(errno.EINVAL)

    def poll_events(self):
        """Readiness (vfs/waitq.py contract)."""
        with self.cond:
            return POLLIN | POLLRDNORM if self.ticks else 0

    def release(self):
        self.timer.cancel()

    def fdinfo(self):
        """The lines Linux adds to /proc/PID/fdinfo/N."""
        remaining, interval = self.gettime()
        with self.cond:
            ticks, flags = self.ticks, self.settime_flags
        return (b"clockid: %d\nticks: %d\nsettime flags: 0%o\nit_value: (%d, %d)\n"
                b"it_interval: (%d, %d)\n" % (self.clockid, ticks, flags,
                                              *split_ns(remaining), *split_ns(interval)))


def make_timerfd(service, clockid, flags):
    """timerfd_create(2)'s object: EINVAL for an unknown clock or flag.
    The caller installs it with close-on-exec when `flags & TFD_CLOEXEC`."""
    if clockid not in timers.TIMERFD_CLOCKS or flags & ~TFD_CREATE_FLAGS:
        raise SyscallError(errno.EINVAL)
    return TimerFile(service, clockid, flags)
