"""futex(2): WAIT, WAKE, their BITSET forms, REQUEUE, CMP_REQUEUE and WAKE_OP."""

import errno
import struct
import time

from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.syscalls import _numbers as nr
from pyvisor.sentry.syscalls._util import s32

FUTEX_WAIT, FUTEX_WAKE, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP = 0, 1, 3, 4, 5
FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 9, 10
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME = 128, 256
TIMESPEC = struct.Struct("<qq")


def _deadline(t, timeout, absolute, realtime):
    if not timeout:
        return None
    sec, nsec = TIMESPEC.unpack(t.copy_in(timeout, 16))
    if sec < 0 or not 0 <= nsec < 1_000_000_000:
        raise SyscallError(errno.EINVAL)
    span = sec + nsec / 1e9
    if absolute:
        span -= time.clock_gettime(time.CLOCK_REALTIME if realtime else time.CLOCK_MONOTONIC)
    return time.monotonic() + span


def sys_futex(t, uaddr, op, val, timeout, uaddr2, val3, *_):
    """Implements Linux syscall futex(2). N.B. the PI operations give ENOSYS."""
    op = s32(op)
    cmd = op & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)
    table = t.kernel.futexes
    if op & FUTEX_CLOCK_REALTIME and cmd not in (FUTEX_WAIT_BITSET, FUTEX_WAIT):
        raise SyscallError(errno.ENOSYS)
    if cmd == FUTEX_WAIT:
        return table.wait(t, uaddr, val, _deadline(t, timeout, False, False), 0xFFFFFFFF)
    if cmd == FUTEX_WAIT_BITSET:
        return table.wait(t, uaddr, val, _deadline(t, timeout, True, op & FUTEX_CLOCK_REALTIME),
                          val3 & 0xFFFFFFFF)
    if cmd == FUTEX_WAKE:
        return table.wake(t, uaddr, s32(val), 0xFFFFFFFF)
    if cmd == FUTEX_WAKE_BITSET:
        return table.wake(t, uaddr, s32(val), val3 & 0xFFFFFFFF)
    if cmd in (FUTEX_REQUEUE, FUTEX_CMP_REQUEUE):
        n_wake, n_requeue = s32(val), s32(timeout)
        if n_wake < 0 or n_requeue < 0:
            raise SyscallError(errno.EINVAL)
        return table.requeue(t, uaddr, n_wake, n_requeue, uaddr2,
                             val3 if cmd == FUTEX_CMP_REQUEUE else None)
    if cmd == FUTEX_WAKE_OP:
        return table.wake_op(t, uaddr, s32(val), uaddr2, s32(timeout), val3 & 0xFFFFFFFF)
    raise SyscallError(errno.ENOSYS)


SYSCALLS = {nr.NR_futex: sys_futex}
