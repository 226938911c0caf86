"""Task: one application thread as the Sentry sees it, and its syscall dispatch.

A Task owns the state syscall handlers reach through ``t`` (see the
"Contract for syscall handlers" in docs/architecture.md): memory access
through its MemoryManager, the fd table, the filesystem context,
credentials, signal state and limits.
"""

import errno
import struct
import sys
import traceback

from pyvisor.sentry.errors import SandboxExit, SyscallError
from pyvisor.sentry.syscalls import name_of

_U64 = struct.Struct("<Q")


class SentryCrash(Exception):
    """A bug in the Sentry while serving a call: the sandbox must die with a report."""

    def __init__(self, task, number, args, exc):
        super().__init__(number)
        self.task = task
        self.number = number
        self.args_ = args
        self.exc = exc

    def report(self, debug):
        lines = ["pyvisor: Sentry failure serving %s(%s) for task %d: %s: %s" % (
            name_of(self.number), ", ".join("%#x" % a for a in self.args_), self.task.tid,
            type(self.exc).__name__, self.exc)]
        if debug:
            lines.append("".join(traceback.format_exception(self.exc)).rstrip())
        else:
            lines.append("pyvisor: run with --debug for the traceback")
        return "\n".join(lines)


class Task:
    def __init__(self, kernel, tid, mm, context, fdtable, fs, creds, signals, rlimits):
        self.kernel = kernel
        self.tid = self.pid = tid
        self.ppid = 0
        self.pgid = self.sid = tid
        self.mm = mm
        self.context = context
        self.regs = context.regs
        self.fdtable = fdtable
        self.fs = fs
        self.creds = creds
        self.signals = signals
        self.rlimits = rlimits
        self.personality = 0
        self.exe_path = b""
        self.argv = []
        self.envp = []
        self.comm = b""
        self.clear_child_tid = 0
        self.robust_list = 0

    # -- memory (the handler contract) --------------------------------

    def copy_in(self, addr, n):
        return self.mm.copy_in(addr, n)

    def copy_out(self, addr, data):
        self.mm.copy_out(addr, data)

    def copy_in_str(self, addr, maxlen=4096):
        return self.mm.copy_in_str(addr, maxlen)

    def copy_in_u64(self, addr):
        return _U64.unpack(self.mm.copy_in(addr, 8))[0]

    def copy_out_u64(self, addr, value):
        self.mm.copy_out(addr, _U64.pack(value & 0xFFFFFFFFFFFFFFFF))

    # -- dispatch -------------------------------------------------------

    def syscall(self, number, a0, a1, a2, a3, a4, a5):
        """Serve one call; return rax. Called by the platform's run loop."""
        k = self.kernel
        handler = k.table[number] if number < len(k.table) else None
        if handler is None:
            k.report_unimplemented(number)
            ret = -errno.ENOSYS
        else:
            try:
                ret = handler(self, a0, a1, a2, a3, a4, a5)
            except SyscallError as e:
                ret = -e.errno
            except SandboxExit:
                if k.strace:
                    k.strace_line(self, number, (a0, a1, a2, a3, a4, a5), None)
                raise
            except Exception as e:   # noqa: BLE001 - a Sentry bug, reported once
                raise SentryCrash(self, number, (a0, a1, a2, a3, a4, a5), e) from e
        if k.strace:
            k.strace_line(self, number, (a0, a1, a2, a3, a4, a5), ret)
        return ret


def debug(msg):
    sys.stderr.write("pyvisor: debug: %s\n" % msg)
