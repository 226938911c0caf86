"""The syscall table: every area module's {number: handler}, merged once.

Each module in this package serves one area (fs, mm, process, signal, time,
creds, misc) and exports ``SYSCALLS``. A number no module claims gives
ENOSYS, reported once per run under --debug.
"""

import errno

from pyvisor.sentry.errors import SyscallError

AREAS = ("fs", "mm", "process", "signal", "time", "creds", "misc", "futex", "xattr", "poll", "timer", "net", "sched")


def _enosys(t, *_):
    raise SyscallError(errno.ENOSYS)


def build_table():
    """A list indexed by syscall number: handler or None."""
    import importlib
    table = [None] * 512
    for area in AREAS:
        mod = importlib.import_module("pyvisor.sentry.syscalls." + area)
        for number, handler in mod.SYSCALLS.items():
            if table[number] is not None and table[number] is not handler:
                raise RuntimeError("syscall %d claimed twice (%s)" % (number, area))
            table[number] = handler
    return table

