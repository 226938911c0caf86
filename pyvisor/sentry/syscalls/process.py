"""Task identity and lifetime: getpid, exit, arch_prctl, set_tid_address and friends."""

import errno

from pyvisor.sentry.errors import SandboxExit, SyscallError
from pyvisor.sentry.mm.mm import MM_TOP
from pyvisor.sentry.syscalls import _numbers as nr
from pyvisor.sentry.syscalls._util import s32

ARCH_SET_GS, ARCH_SET_FS, ARCH_GET_FS, ARCH_GET_GS = 0x1001, 0x1002, 0x1003, 0x1004
ARCH_GET_CPUID, ARCH_SET_CPUID = 0x1011, 0x1012
PR_SET_NAME, PR_GET_NAME, PR_SET_PDEATHSIG, PR_GET_PDEATHSIG = 15, 16, 1, 2
PR_GET_DUMPABLE, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 3, 4, 38, 39
PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER, PR_CAPBSET_READ = 36, 37, 23
PR_GET_SECUREBITS, PR_SET_VMA, PR_SET_THP_DISABLE, PR_GET_THP_DISABLE = 27, 0x53564D41, 41, 42
PR_MCE_KILL_GET = 34


def sys_getpid(t, *_):
    """Implements Linux syscall getpid(2): the thread group id in the sandbox's PID namespace."""
    return t.pid


def sys_gettid(t, *_):
    """Implements Linux syscall gettid(2)."""
    return t.tid


def sys_getppid(t, *_):
    """Implements Linux syscall getppid(2): 0 for the sandbox's init, as in a new PID namespace."""
    return t.ppid


def sys_exit(t, status, *_):
    """Implements Linux syscall exit(2). N.B. with one thread per group, this ends the group."""
    raise SandboxExit(status & 0xFF)


def sys_exit_group(t, status, *_):
    """Implements Linux syscall exit_group(2)."""
    raise SandboxExit(status & 0xFF)


def sys_set_tid_address(t, addr, *_):
    """Implements Linux syscall set_tid_address(2): remembers clear_child_tid, returns the tid."""
    t.clear_child_tid = addr
    return t.tid


def sys_set_robust_list(t, head, length, *_):
    """Implements Linux syscall set_robust_list(2)."""
    if length != 24:
        raise SyscallError(errno.EINVAL)
    t.robust_list = head
    return 0


def sys_get_robust_list(t, pid, head_ptr, len_ptr, *_):
    """Implements Linux syscall get_robust_list(2) for the calling task."""
    if s32(pid) not in (0, t.tid):
        raise SyscallError(errno.ESRCH)
    t.copy_out_u64(head_ptr, t.robust_list)
    t.copy_out_u64(len_ptr, 24)
    return 0


def sys_rseq(t, *_):
    """rseq(2) is not offered; glibc falls back cleanly on ENOSYS."""
    raise SyscallError(errno.ENOSYS)


def sys_arch_prctl(t, code, addr, *_):
    """Implements Linux syscall arch_prctl(2): the FS and GS bases."""
    code = s32(code)
    if code == ARCH_SET_FS:
        if addr >= MM_TOP:
            raise SyscallError(errno.EPERM)
        t.regs.fs_base = addr
        return 0
    if code == ARCH_GET_FS:
        t.copy_out_u64(addr, t.regs.fs_base)
        return 0
    if code == ARCH_SET_GS:
        if addr >= MM_TOP:
            raise SyscallError(errno.EPERM)
        t.regs.set_regs({"gs_base": addr})
        return 0
    if code == ARCH_GET_GS:
        t.copy_out_u64(addr, t.regs.get_regs()["gs_base"])
        return 0
    if code == ARCH_GET_CPUID:
        return 1
    raise SyscallError(errno.EINVAL)


def sys_prctl(t, option, a2, a3, a4, a5, *_):
    """Implements Linux syscall prctl(2) for the options single-process programs use."""
    option = s32(option)
    if option == PR_SET_NAME:
        t.comm = t.copy_in_str(a2, 4096)[:15]
        return 0
    if option == PR_GET_NAME:
        t.copy_out(a2, t.comm[:15].ljust(16, b"\0"))
        return 0
    if option == PR_SET_PDEATHSIG:
        if a2 > 64:
            raise SyscallError(errno.EINVAL)
        t.pdeathsig = a2
        return 0
    if option == PR_GET_PDEATHSIG:
        t.copy_out(a2, getattr(t, "pdeathsig", 0).to_bytes(4, "little"))
        return 0
    if option == PR_GET_DUMPABLE:
        return getattr(t, "dumpable", 1)
    if option == PR_SET_DUMPABLE:
        if a2 not in (0, 1):
            raise SyscallError(errno.EINVAL)
        t.dumpable = a2
        return 0
    if option == PR_SET_NO_NEW_PRIVS:
        if a2 != 1 or a3 or a4 or a5:
            raise SyscallError(errno.EINVAL)
        t.no_new_privs = True
        return 0
    if option == PR_GET_NO_NEW_PRIVS:
        return int(getattr(t, "no_new_privs", False))
    if option == PR_SET_CHILD_SUBREAPER:
        t.child_subreaper = bool(a2)
        return 0
    if option == PR_GET_CHILD_SUBREAPER:
        t.copy_out(a2, int(getattr(t, "child_subreaper", False)).to_bytes(4, "little"))
        return 0
    if option == PR_CAPBSET_READ:
        if a2 > 40:
            raise SyscallError(errno.EINVAL)
        return 1
    if option in (PR_GET_SECUREBITS, PR_GET_THP_DISABLE, PR_MCE_KILL_GET):
        return 0
    if option in (PR_SET_VMA, PR_SET_THP_DISABLE):
        return 0
    raise SyscallError(errno.EINVAL)


SYSCALLS = {
    nr.NR_getpid: sys_getpid,
    nr.NR_gettid: sys_gettid,
    nr.NR_getppid: sys_getppid,
    nr.NR_exit: sys_exit,
    nr.NR_exit_group: sys_exit_group,
    nr.NR_set_tid_address: sys_set_tid_address,
    nr.NR_set_robust_list: sys_set_robust_list,
    nr.NR_get_robust_list: sys_get_robust_list,
    nr.NR_rseq: sys_rseq,
    nr.NR_arch_prctl: sys_arch_prctl,
    nr.NR_prctl: sys_prctl,
}
