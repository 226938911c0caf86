"""eventfd(2) and eventfd2(2): a counter file (vfs/eventfd.py)."""

from pyvisor.abi.ints import s32
from pyvisor.sentry.vfs.eventfd import EFD_CLOEXEC, make_eventfd


def sys_eventfd2(t, initval, flags, *_):
    """Implements Linux syscall eventfd2(2)."""
    flags = s32(flags)
    f = make_eventfd(initval, flags)
    return t.fdtable.install(f, cloexec=bool(flags & EFD_CLOEXEC))


def sys_eventfd(t, initval, *_):
    """Implements Linux syscall eventfd(2) (no flags)."""
    return sys_eventfd2(t, initval, 0)
