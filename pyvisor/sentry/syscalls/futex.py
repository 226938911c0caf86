"""futex(2): WAIT, WAKE, their BITSET forms, REQUEUE, CMP_REQUEUE, WAKE_OP, and
the priority-inheritance operations (LOCK_PI, LOCK_PI2, TRYLOCK_PI, UNLOCK_PI,
WAIT_REQUEUE_PI, CMP_REQUEUE_PI; see sentry/futex.py).

Timeouts, as Linux reads them: FUTEX_WAIT's is relative (CLOCK_MONOTONIC);
WAIT_BITSET's, LOCK_PI2's and WAIT_REQUEUE_PI's are absolute on
CLOCK_MONOTONIC, or CLOCK_REALTIME with FUTEX_CLOCK_REALTIME; LOCK_PI's is
absolute on CLOCK_REALTIME always (and FUTEX_CLOCK_REALTIME with it is
ENOSYS). An invalid timespec is EINVAL before anything else is looked at.
A signal makes LOCK_PI and WAIT_REQUEUE_PI restart, whatever SA_RESTART
says (Linux: -ERESTARTNOINTR).
"""

import errno
import time

from pyvisor.abi.ints import s32
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.waiting import Interrupted
from pyvisor.abi.structs import NSEC
from pyvisor.sentry.syscalls._util import read_timespec

FUTEX_WAIT, FUTEX_WAKE, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP = 0, 1, 3, 4, 5
FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 9, 10
FUTEX_LOCK_PI, FUTEX_UNLOCK_PI, FUTEX_TRYLOCK_PI = 6, 7, 8
FUTEX_WAIT_REQUEUE_PI, FUTEX_CMP_REQUEUE_PI, FUTEX_LOCK_PI2 = 11, 12, 13
_REALTIME_OK = (FUTEX_WAIT, FUTEX_WAIT_BITSET, FUTEX_WAIT_REQUEUE_PI, FUTEX_LOCK_PI2)
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME = 128, 256


def _deadline(t, timeout, absolute, realtime):
    if not timeout:
        return None
    span = read_timespec(t, timeout) / NSEC
    if absolute:
        span -= time.clock_gettime(time.CLOCK_REALTIME if realtime else time.CLOCK_MONOTONIC)
    return time.monotonic() + span


def _no_intr(t, fn, *args):
    """Run a PI wait; a signal restarts it even without SA_RESTART (-ERESTARTNOINTR)."""
    try:
        return fn(*args)
    except Interrupted:
        t.restart_nointr = True
        raise


def _pi(t, cmd, op, uaddr, val, timeout, uaddr2, val3):
    table = t.kernel.futexes
    realtime = bool(op & FUTEX_CLOCK_REALTIME)
    if cmd == FUTEX_LOCK_PI:
        return _no_intr(t, table.lock_pi, t, uaddr, _deadline(t, timeout, True, True))
    if cmd == FUTEX_LOCK_PI2:
        return _no_intr(t, table.lock_pi, t, uaddr, _deadline(t, timeout, True, realtime))
    if cmd == FUTEX_TRYLOCK_PI:
        return table.lock_pi(t, uaddr, None, trylock=True)
    if cmd == FUTEX_UNLOCK_PI:
        return table.unlock_pi(t, uaddr)
    if cmd == FUTEX_WAIT_REQUEUE_PI:
        return _no_intr(t, table.wait_requeue_pi, t, uaddr, val,
                        _deadline(t, timeout, True, realtime), uaddr2)
    n_wake, n_requeue = s32(val), s32(timeout)       # FUTEX_CMP_REQUEUE_PI
    if n_wake < 0 or n_requeue < 0 or n_wake != 1:
        raise SyscallError(errno.EINVAL)
    return table.cmp_requeue_pi(t, uaddr, n_requeue, uaddr2, val3)


def sys_futex(t, uaddr, op, val, timeout, uaddr2, val3, *_):
    """Implements Linux syscall futex(2). N.B. PI futexes do not boost priorities."""
    op = s32(op)
    cmd = op & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)
    table = t.kernel.futexes
    if op & FUTEX_CLOCK_REALTIME and cmd not in _REALTIME_OK:
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
    if cmd in (FUTEX_LOCK_PI, FUTEX_LOCK_PI2, FUTEX_TRYLOCK_PI, FUTEX_UNLOCK_PI,
               FUTEX_WAIT_REQUEUE_PI, FUTEX_CMP_REQUEUE_PI):
        return _pi(t, cmd, op, uaddr, val, timeout, uaddr2, val3)
    raise SyscallError(errno.ENOSYS)
