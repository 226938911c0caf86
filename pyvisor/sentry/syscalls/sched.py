"""Scheduling policy and priority: recorded per task, as the Sentry's own threads are not reprioritised.

N.B. the host schedules the Sentry threads that run tasks; a policy or nice
value set here is remembered and reported, not applied.
"""

import errno
import struct

from pyvisor.abi import numbers as nr
from pyvisor.abi.ints import s32
from pyvisor.abi.structs import pack_timespec
from pyvisor.sentry.errors import SyscallError

SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE = 0, 1, 2, 3, 5
SCHED_RESET_ON_FORK = 0x40000000
PRIO_PROCESS, PRIO_PGRP, PRIO_USER = 0, 1, 2
MEMBARRIER_CMD_QUERY = 0
# What membarrier offers: GLOBAL, PRIVATE_EXPEDITED and its registration. Every
# task runs on its own Sentry thread; a barrier is the Sentry's own memory fence.
MEMBARRIER_SUPPORTED = 1 | 8 | 16
CAP_SYS_NICE = 23


def _task(t, pid):
    pid = s32(pid)
    if pid < 0:
        raise SyscallError(errno.EINVAL)
    if pid == 0:
        return t
    x = t.kernel.tasks.get(pid)
    if x is None:
        raise SyscallError(errno.ESRCH)
    return x


def _prio_range(policy):
    return (1, 99) if policy in (SCHED_FIFO, SCHED_RR) else (0, 0)


def sys_sched_getscheduler(t, pid, *_):
    """Implements Linux syscall sched_getscheduler(2)."""
    return getattr(_task(t, pid), "sched_policy", SCHED_OTHER)


def sys_sched_setscheduler(t, pid, policy, param, *_):
    """Implements Linux syscall sched_setscheduler(2)."""
    x = _task(t, pid)
    policy = s32(policy) & ~SCHED_RESET_ON_FORK
    if policy not in (SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE) or not param:
        raise SyscallError(errno.EINVAL)
    prio = struct.unpack("<i", t.copy_in(param, 4))[0]
    lo, hi = _prio_range(policy)
    if not lo <= prio <= hi:
        raise SyscallError(errno.EINVAL)
    if policy in (SCHED_FIFO, SCHED_RR) and not t.creds.capable(CAP_SYS_NICE):
        raise SyscallError(errno.EPERM)
    x.sched_policy, x.sched_priority = policy, prio
    return 0


def sys_sched_getparam(t, pid, param, *_):
    """Implements Linux syscall sched_getparam(2)."""
    x = _task(t, pid)
    if not param:
        raise SyscallError(errno.EINVAL)
    t.copy_out(param, struct.pack("<i", getattr(x, "sched_priority", 0)))
    return 0


def sys_sched_setparam(t, pid, param, *_):
    """Implements Linux syscall sched_setparam(2)."""
    x = _task(t, pid)
    return sys_sched_setscheduler(t, x.tid if x is not t else 0,
                                  getattr(x, "sched_policy", SCHED_OTHER), param)


def sys_sched_get_priority_max(t, policy, *_):
    """Implements Linux syscall sched_get_priority_max(2)."""
    policy = s32(policy)
    if policy not in (SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE):
        raise SyscallError(errno.EINVAL)
    return _prio_range(policy)[1]


def sys_sched_get_priority_min(t, policy, *_):
    """Implements Linux syscall sched_get_priority_min(2)."""
    policy = s32(policy)
    if policy not in (SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE):
        raise SyscallError(errno.EINVAL)
    return _prio_range(policy)[0]


def sys_sched_rr_get_interval(t, pid, tp, *_):
    """Implements Linux syscall sched_rr_get_interval(2): 100 ms for SCHED_RR, else 0 as CFS reports here."""
    x = _task(t, pid)
    rr = getattr(x, "sched_policy", SCHED_OTHER) == SCHED_RR
    t.copy_out(tp, pack_timespec(100_000_000 if rr else 0))
    return 0


def _prio_targets(t, which, who):
    which, who = s32(which), s32(who)
    k = t.kernel
    if which == PRIO_PROCESS:
        return [_task(t, who)]
    if which == PRIO_PGRP:
        pgid = who or t.group.pgid
        return [x for x in k.tasks.values() if x.group.pgid == pgid]
    if which == PRIO_USER:
        uid = who or t.creds.uid
        return [x for x in k.tasks.values() if x.creds.uid == uid]
    raise SyscallError(errno.EINVAL)


def sys_getpriority(t, which, who, *_):
    """Implements Linux syscall getpriority(2): returns 20 - nice, as the raw syscall does."""
    targets = _prio_targets(t, which, who)
    if not targets:
        raise SyscallError(errno.ESRCH)
    return 20 - min(getattr(x, "nice", 0) for x in targets)


def sys_setpriority(t, which, who, prio, *_):
    """Implements Linux syscall setpriority(2): nice clamped to [-20, 19]; lowering needs CAP_SYS_NICE."""
    targets = _prio_targets(t, which, who)
    if not targets:
        raise SyscallError(errno.ESRCH)
    nice = max(-20, min(19, s32(prio)))
    for x in targets:
        if nice < getattr(x, "nice", 0) and not t.creds.capable(CAP_SYS_NICE):
            raise SyscallError(errno.EACCES)
    for x in targets:
        x.nice = nice
    return 0


def sys_membarrier(t, cmd, flags, cpu_id, *_):
    """Implements Linux syscall membarrier(2): QUERY, and the barriers it reports."""
    cmd = s32(cmd)
    if flags & ~1:
        raise SyscallError(errno.EINVAL)
    if cmd == MEMBARRIER_CMD_QUERY:
        if flags:
            raise SyscallError(errno.EINVAL)
        return MEMBARRIER_SUPPORTED
    if cmd & MEMBARRIER_SUPPORTED and cmd & (cmd - 1) == 0:
        return 0
    raise SyscallError(errno.EINVAL)


def sys_ioprio_get(t, which, who, *_):
    """Implements Linux syscall ioprio_get(2): best effort, level 4 (the default)."""
    if s32(which) not in (1, 2, 3):
        raise SyscallError(errno.EINVAL)
    return (2 << 13) | 4


def sys_ioprio_set(t, which, who, ioprio, *_):
    """Implements Linux syscall ioprio_set(2): accepted and not applied."""
    if s32(which) not in (1, 2, 3) or (ioprio >> 13) > 3:
        raise SyscallError(errno.EINVAL)
    return 0


SYSCALLS = {
    nr.NR_sched_getscheduler: sys_sched_getscheduler,
    nr.NR_sched_setscheduler: sys_sched_setscheduler,
    nr.NR_sched_getparam: sys_sched_getparam,
    nr.NR_sched_setparam: sys_sched_setparam,
    nr.NR_sched_get_priority_max: sys_sched_get_priority_max,
    nr.NR_sched_get_priority_min: sys_sched_get_priority_min,
    nr.NR_sched_rr_get_interval: sys_sched_rr_get_interval,
    nr.NR_getpriority: sys_getpriority,
    nr.NR_setpriority: sys_setpriority,
    nr.NR_membarrier: sys_membarrier,
    nr.NR_ioprio_get: sys_ioprio_get,
    nr.NR_ioprio_set: sys_ioprio_set,
}
