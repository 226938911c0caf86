"""eventfd(2): a 64-bit counter with a file interface.

Linux background (fs/eventfd.c): the file holds an unsigned 64-bit counter.

- read(2) needs a buffer of at least 8 bytes (else EINVAL). With the counter
  at 0 it blocks, or fails with EAGAIN under EFD_NONBLOCK. Otherwise it
  returns the counter and resets it to 0, or, with EFD_SEMAPHORE, returns 1
  and decrements it.
- write(2) needs at least 8 bytes (else EINVAL) and adds their value (host
  order) to the counter. The value 0xffffffffffffffff is EINVAL. The counter
  never exceeds 0xfffffffffffffffe: a write that would overflow it blocks
  until a read makes room, or fails with EAGAIN.
- Readiness: POLLIN when the counter is > 0, POLLOUT while at least 1 can
  still be added (counter < 0xfffffffffffffffe).

Blocking goes through `waiting.wait`, so a signal interrupts it.
"""

import errno
import struct
import threading

from .. import waiting
from ..errors import SyscallError
from .file import FileDescription, O_NONBLOCK, O_RDWR
from .waitq import POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM, WaitQueue

EFD_SEMAPHORE = 1
EFD_CLOEXEC = 0o2000000
EFD_NONBLOCK = O_NONBLOCK
EFD_FLAGS = EFD_SEMAPHORE | EFD_CLOEXEC | EFD_NONBLOCK
COUNTER_MAX = 0xFFFFFFFFFFFFFFFE
_U64 = struct.Struct("=Q")


class EventFile(FileDescription):
    """An eventfd description. `count` is protected by `cond`."""

    seekable = False
    reads_empty = True        # eventfd_read: any buffer under 8 bytes is EINVAL, 0 too
    anon_name = b"[eventfd]"

    def __init__(self, initval=0, flags=0):
        super().__init__(None, O_RDWR | (flags & O_NONBLOCK))
        self.count = initval
        self.semaphore = bool(flags & EFD_SEMAPHORE)
        self.cond = threading.Condition()
        self.waitq = WaitQueue()

    def pread(self, count, offset):
        """Implements read(2) on an eventfd: 8 bytes of counter."""
        if offset >= 0:
            raise SyscallError(errno.ESPIPE)
        self.check_readable()
        if count < 8:
            raise SyscallError(errno.EINVAL)
        with self.cond:
            while self.count == 0:
                if self.nonblocking:
                    raise SyscallError(errno.EAGAIN)
                waiting.wait(self.cond)
            value = 1 if self.semaphore else self.count
            self.count -= value
            self.cond.notify_all()
        self.waitq.notify(POLLOUT | POLLWRNORM)
        return _U64.pack(value)

    def pwrite(self, data, offset):
        """Implements write(2) on an eventfd: add an 8-byte value."""
        if offset >= 0:
            raise SyscallError(errno.ESPIPE)
        self.check_writable()
        if len(data) < 8:
            raise SyscallError(errno.EINVAL)
        value = _U64.unpack_from(data)[0]
        if value == 0xFFFFFFFFFFFFFFFF:
            raise SyscallError(errno.EINVAL)
        with self.cond:
            while COUNTER_MAX - self.count < value:
                if self.nonblocking:
                    raise SyscallError(errno.EAGAIN)
                waiting.wait(self.cond)
            self.count += value
            self.cond.notify_all()
        if value:
            self.waitq.notify(POLLIN | POLLRDNORM)
        return 8

    def poll_events(self):
        """Readiness (vfs/waitq.py contract)."""
        with self.cond:
            mask = POLLIN | POLLRDNORM if self.count > 0 else 0
            if self.count < COUNTER_MAX:
                mask |= POLLOUT | POLLWRNORM
        return mask

    def fdinfo(self):
        """The lines Linux adds to /proc/PID/fdinfo/N."""
        with self.cond:
            return b"eventfd-count: %16x\n" % self.count


def make_eventfd(initval, flags):
    """eventfd2(2)'s object: EINVAL for unknown flags. The caller installs
    it with close-on-exec when `flags & EFD_CLOEXEC`."""
    if flags & ~EFD_FLAGS:
        raise SyscallError(errno.EINVAL)
    return EventFile(initval & 0xFFFFFFFF, flags)
