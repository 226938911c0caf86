"""Scheduling: policy and priority (recorded per task, as the Sentry's own
threads are not reprioritised), CPU affinity, sched_yield, getcpu, membarrier.

N.B. the host schedules the Sentry threads that run tasks; a policy or nice
value set here is remembered and reported, not applied.
"""

import errno
import os
import struct

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
HOST_NCPUS = os.cpu_count() or 1     # read at import, before the Sentry's seccomp filter


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


# --- CPUs: affinity, yield, getcpu ------------------------------------------

_MASK_BYTES = (HOST_NCPUS + 63) // 64 * 8        # cpumask_size(): whole longs


def _check_pid(t, pid):
    pid = s32(pid)
    if pid in (0, t.pid, t.tid) or pid in t.kernel.tasks:
        return
    raise SyscallError(errno.ESRCH)


def sys_sched_getaffinity(t, pid, length, mask, *_):
    """Implements Linux syscall sched_getaffinity(2): returns bytes written.

    N.B. Every task may run on every host CPU; set masks are not kept.
    """
    length &= 0xFFFFFFFF
    if length * 8 < HOST_NCPUS or length % 8:
        raise SyscallError(errno.EINVAL)
    _check_pid(t, pid)
    out = ((1 << HOST_NCPUS) - 1).to_bytes(_MASK_BYTES, "little")
    n = min(length, _MASK_BYTES)
    t.copy_out(mask, out[:n])
    return n


def sys_sched_setaffinity(t, pid, length, mask, *_):
    """Implements Linux syscall sched_setaffinity(2).

    N.B. The mask is checked (EFAULT, EINVAL if it names no online CPU) and
    then not applied: tasks are not pinned.
    """
    length &= 0xFFFFFFFF
    data = t.copy_in(mask, min(length, _MASK_BYTES))
    _check_pid(t, pid)
    if not int.from_bytes(data, "little") & ((1 << HOST_NCPUS) - 1):
        raise SyscallError(errno.EINVAL)
    return 0


def sys_sched_yield(t, *_):
    """Implements Linux syscall sched_yield(2)."""
    return 0


def sys_getcpu(t, cpu, node, tcache, *_):
    """Implements Linux syscall getcpu(2). N.B. always CPU 0, node 0."""
    if cpu:
        t.copy_out(cpu, struct.pack("<I", 0))
    if node:
        t.copy_out(node, struct.pack("<I", 0))
    return 0
