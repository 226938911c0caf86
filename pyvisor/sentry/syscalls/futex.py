"""futex(2) for a single thread: wake finds no waiters; a wait can only time out.

N.B. real waiting and waking between threads arrives with the processes issue.
"""

import errno
import struct
import time

from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.syscalls import _numbers as nr
from pyvisor.sentry.syscalls._util import s32

FUTEX_WAIT, FUTEX_WAKE, FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 0, 1, 9, 10
FUTEX_CMD_MASK = ~(128 | 256)   # PRIVATE_FLAG, CLOCK_REALTIME
TIMESPEC = struct.Struct("<qq")


def sys_futex(t, uaddr, op, val, timeout, uaddr2, val3, *_):
    """Implements Linux syscall futex(2): WAIT, WAKE and their BITSET forms."""
    cmd = s32(op) & FUTEX_CMD_MASK
    if uaddr % 4:
        raise SyscallError(errno.EINVAL)
    if cmd in (FUTEX_WAKE, FUTEX_WAKE_BITSET):
        if cmd == FUTEX_WAKE_BITSET and s32(val3) == 0:
            raise SyscallError(errno.EINVAL)
        t.copy_in(uaddr, 4)
        return 0
    if cmd in (FUTEX_WAIT, FUTEX_WAIT_BITSET):
        if cmd == FUTEX_WAIT_BITSET and s32(val3) == 0:
            raise SyscallError(errno.EINVAL)
        cur = struct.unpack("<I", t.copy_in(uaddr, 4))[0]
        if cur != val & 0xFFFFFFFF:
            raise SyscallError(errno.EAGAIN)
        if not timeout:
            # Nobody else exists to wake us: Linux would hang forever here.
            raise SyscallError(errno.EDEADLK)
        sec, nsec = TIMESPEC.unpack(t.copy_in(timeout, 16))
        if sec < 0 or not 0 <= nsec < 1_000_000_000:
            raise SyscallError(errno.EINVAL)
        delay = sec + nsec / 1e9
        if cmd == FUTEX_WAIT_BITSET:   # absolute on the chosen clock
            clock = time.CLOCK_REALTIME if s32(op) & 256 else time.CLOCK_MONOTONIC
            delay -= time.clock_gettime(clock)
        if delay > 0:
            time.sleep(delay)
        raise SyscallError(errno.ETIMEDOUT)
    raise SyscallError(errno.ENOSYS)


SYSCALLS = {nr.NR_futex: sys_futex}
