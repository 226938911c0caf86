"""Tasks and thread groups: the Sentry's processes and threads, and their signals.

A Task is one application thread; it has its own Sentry thread, which is the
tracer of its stub thread (see platform/ptrace.py) and runs ``Kernel.task_loop``.
A ThreadGroup is a process: tasks that share a tgid, signal handlers, and a
place in the process tree. Handlers reach the task as ``t`` (the "Contract for
syscall handlers" in docs/architecture.md).

Signals (signal(7)): a signal is made pending on a task (tkill) or on its
group (kill), and delivered when the task next returns to the application:
after a system call, or at a stop the Sentry forces with a kick. Delivery
with a handler builds a Linux rt_sigframe on the application's stack; a
default action that ends the process ends the whole group.

Lock order: Kernel.lock, then Task.wait_lock, then any wait condition.
"""

import errno
import struct
import threading
import traceback

from pyvisor.abi.numbers import NR_getpid, NR_gettid
from pyvisor.abi.signals import (CORE_BY_DEFAULT, IGNORE_BY_DEFAULT, SA_NODEFER, SA_ONSTACK,
                                 SA_RESETHAND, SA_RESTART, SA_RESTORER, SIG_DFL, SIG_IGN,
                                 SIGCHLD, SIGCONT, SIGINFO_SIZE, SIGKILL, SIGSEGV, SIGSTOP,
                                 SS_AUTODISARM, SS_DISABLE, SS_ONSTACK, STACK_T,
                                 STOP_BY_DEFAULT)
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry import timers, waiting
from pyvisor.sentry.waiting import Interrupted

_U64 = struct.Struct("<Q")

_MASK64 = (1 << 64) - 1
# Calls that return EINTR rather than restart when a handler runs (signal(7)).
NO_RESTART = frozenset({7, 23, 34, 35, 128, 130, 230, 232, 270, 271, 281, 441})

FRAME_SIZE = 8 + 304 + SIGINFO_SIZE      # pretcode, ucontext, siginfo
MCONTEXT_REGS = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi",
                 "rbp", "rbx", "rdx", "rax", "rcx", "rsp", "rip", "eflags")
USER_CS, USER_SS = 0x33, 0x2B
RESTART = object()   # a blocked call was interrupted; decide EINTR or restart


class TaskExit(Exception):
    """This task ends (exit(2)); its group ends when it was the last."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


class GroupExit(Exception):
    """The whole thread group ends with ``wstatus`` (exit_group, a fatal signal)."""

    def __init__(self, wstatus):
        super().__init__(wstatus)
        self.wstatus = wstatus


class ContextSwitch(Exception):
    """The task now runs on another platform Context (execve into a new stub)."""


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
            self.task.kernel.syscalls.name(self.number), ", ".join("%#x" % a for a in self.args_), self.task.tid,
            type(self.exc).__name__, self.exc)]
        if debug:
            lines.append("".join(traceback.format_exception(self.exc)).rstrip())
        else:
            lines.append("pyvisor: run with --debug for the traceback")
        return "\n".join(lines)


def exit_wstatus(code):
    return (code & 0xFF) << 8


WCOREFLAG = 0x80
RLIMIT_CORE = 4


def signal_wstatus(signo, core_limit=0):
    """The wait status of a death by signo.

    A signal whose default action dumps core sets WCOREFLAG ("core dumped")
    when the task's RLIMIT_CORE allows a core, as Linux reports a dump that
    succeeded. N.B. no core file is written.
    """
    return signo | (WCOREFLAG if core_limit and signo in CORE_BY_DEFAULT else 0)


class SignalState:
    """A task's view of signals: handlers (shared by CLONE_SIGHAND), its mask and altstack."""

    def __init__(self, actions=None):
        self.actions = {} if actions is None else actions   # signo -> (handler, flags, restorer, mask)
        self.mask = 0
        self.altstack = (0, SS_DISABLE, 0)

    def handler(self, signo):
        return self.actions.get(signo, (SIG_DFL, 0, 0, 0))[0]


class ThreadGroup:
    """A process. Fields are guarded by Kernel.lock."""

    def __init__(self, kernel, tgid, parent, exit_signal=SIGCHLD):
        self.kernel = kernel
        self.tgid = tgid
        self.parent = parent
        self.children = []
        self.tasks = {}
        self.pgid = parent.pgid if parent else tgid
        self.sid = parent.sid if parent else tgid
        self.exit_signal = exit_signal
        self.exiting = None        # wstatus once exit_group or a fatal signal started the end
        self.wstatus = None        # set when the last task is gone: a zombie until reaped
        self.pending = []          # process-directed signals: (signo, siginfo)
        self.vfork_waiters = 0
        self.stopped = 0           # the stop signal while stopped by job control, else 0
        self.report = None         # a stop/continue wait status not yet taken by wait (WUNTRACED/WCONTINUED)
        self.execed = False
        self.child_subreaper = False


class Task:
    def __init__(self, kernel, tid, group, mm, fdtable, fs, creds, signals, rlimits):
        self.kernel = kernel
        self.tid = tid
        self.group = group
        self.mm = mm
        self.context = None
        self.regs = None
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
        self.pending = []          # thread-directed signals: (signo, siginfo)
        self.killed = False
        self.wait_lock = threading.Lock()
        self.waiting_on = None
        self.sleep_left = 0.0
        self.saved_mask = None     # rt_sigsuspend's mask to restore after delivery
        self.strace_shown = None   # --strace: arguments formatted before the call ran
        self.sigwaiting = 0        # signals rt_sigtimedwait is waiting for (blocked, yet wanted)
        self.vfork_parent = None   # the task a CLONE_VFORK parent blocks on
        self.restart_nointr = False  # the interrupted call restarts even past a handler (PI futexes)
        self.thread = None
        self.cpu_source = None     # where its CPU time is read (timers.task_cpu_source)

    @property
    def pid(self):
        return self.group.tgid

    @property
    def ppid(self):
        p = self.group.parent
        return p.tgid if p is not None else 0

    def set_context(self, context):
        """Run on `context` from now on. Called on the task's own Sentry thread."""
        self.context = context
        self.regs = context.regs
        self.cpu_source = timers.task_cpu_source(context)
        if not self.kernel.strace:
            # getpid and gettid have one answer for the task's life: the
            # platform's C loop gives it without a trip through dispatch.
            context.set_fast_answers({NR_getpid: self.pid, NR_gettid: self.tid})

    # -- memory (the handler contract) --------------------------------

    def copy_in(self, addr, n):
        return self.mm.copy_in(addr, n)

    def copy_out(self, addr, data):
        self.mm.copy_out(addr, data)

    def accessible(self, ranges, limit, write=False):
        """How many bytes of the (addr, length) ranges, in order and at most
        `limit`, can be copied in (out if write) before the first fault."""
        return self.mm.accessible(ranges, limit, write)

    def copy_in_str(self, addr, maxlen=4096):
        return self.mm.copy_in_str(addr, maxlen)

    def copy_in_u64(self, addr):
        return _U64.unpack(self.mm.copy_in(addr, 8))[0]

    def copy_out_u64(self, addr, value):
        self.mm.copy_out(addr, _U64.pack(value & 0xFFFFFFFFFFFFFFFF))

    # -- interruption (see waiting.py) ----------------------------------

    def _deliverable(self):
        """Index into (pending list, position) of the first unblocked signal, or None."""
        mask = self.signals.mask
        for src in (self.pending, self.group.pending):
            for i, (signo, _info) in enumerate(src):
                if signo in (SIGKILL, SIGSTOP) or not mask & (1 << (signo - 1)):
                    return src, i
        return None

    def interrupt_pending(self):
        return (self.killed or self.group.exiting is not None or self.group.stopped
                or self._deliverable() is not None)

    def interrupt(self):
        """Wake this task from a Sentry wait, or stop it in the application, so it sees its signals."""
        with self.wait_lock:
            cond = self.waiting_on
        if cond is not None:
            with cond:
                cond.notify_all()
        elif waiting.current_task() is self:
            return      # in its own syscall: it looks at its signals on the way back
        elif self.context is not None:
            try:
                self.context.interrupt()
            except OSError:
                pass

    def death_wstatus(self, signo):
        """The wait status if signo's default action ends this task's group now."""
        return signal_wstatus(signo, self.rlimits.get(RLIMIT_CORE, (0, 0))[0])

    # -- dispatch -------------------------------------------------------

    def syscall(self, number, a0, a1, a2, a3, a4, a5):
        """Serve one call; return rax. Called by the platform's run loop."""
        k = self.kernel
        handler = k.handlers[number] if number < len(k.handlers) else None
        if handler is None:
            k.report_unimplemented(number)
            ret = -errno.ENOSYS
        else:
            try:
                ret = handler(self, a0, a1, a2, a3, a4, a5)
            except SyscallError as e:
                ret = -e.errno
            except Interrupted:
                ret = RESTART
            except (TaskExit, GroupExit, ContextSwitch):
                if k.strace:
                    k.strace_line(self, number, (a0, a1, a2, a3, a4, a5), None)
                raise
            except Exception as e:   # noqa: BLE001 - a Sentry bug, reported once
                raise SentryCrash(self, number, (a0, a1, a2, a3, a4, a5), e) from e
        if k.strace:
            k.strace_line(self, number, (a0, a1, a2, a3, a4, a5),
                          -errno.EINTR if ret is RESTART else ret)
        if ret is RESTART or self.pending or self.group.pending or self.killed \
                or self.group.exiting is not None:
            ret = self.deliver_signals(ret, number)
        return ret

    # -- signal delivery ------------------------------------------------------

    def _take_signal(self):
        with self.kernel.lock:
            found = self._deliverable()
            if found is None:
                return None
            src, i = found
            return src.pop(i)

    def deliver_signals(self, ret=None, number=-1):
        """On the way back to the application: act on pending signals.

        ``ret`` is the result of the call just served (RESTART if it was
        interrupted) or None at a non-syscall stop. Returns the value for
        rax. Raises TaskExit/GroupExit when the task must end.
        """
        if self.killed:
            raise TaskExit(0)
        if self.group.exiting is not None:
            raise GroupExit(self.group.exiting)
        try:
            return self._deliver_signals(ret, number)
        finally:
            self.restart_nointr = False

    def _deliver_signals(self, ret, number):
        while True:
            if self.group.stopped:
                self.kernel.wait_while_stopped(self)
            item = self._take_signal()
            if item is None:
                break
            signo, info = item
            if self.kernel.strace and signo != SIGKILL:
                self.kernel.strace_signal(self, info)    # strace's signal-delivery stop
            h, flags, restorer, mask = self.signals.actions.get(signo, (SIG_DFL, 0, 0, 0))
            if signo == SIGKILL or h == SIG_DFL:
                if signo in STOP_BY_DEFAULT and signo != SIGCONT:
                    # SIGTSTP/SIGTTIN/SIGTTOU are discarded in an orphaned
                    # process group: nobody could continue it (signal(7),
                    # Linux get_signal's is_current_pgrp_orphaned).
                    if signo == SIGSTOP or not self._pgrp_orphaned():
                        self.kernel.stop_group(self.group, signo)
                    continue
                if signo in IGNORE_BY_DEFAULT or signo == SIGCONT:
                    continue
                raise GroupExit(self.death_wstatus(signo))
            if h == SIG_IGN:
                continue
            if ret is RESTART:
                ret = -errno.EINTR if (number in NO_RESTART or not flags & SA_RESTART) \
                    and not self.restart_nointr else self._restart(number)
            # Like Linux (exit_to_user_mode_loop), a frame for every signal
            # deliverable now, each on top of the last: the last runs first.
            ret = self._setup_frame(signo, info, h, flags, restorer, mask, ret)
        if ret is RESTART:
            ret = self._restart(number)
        if self.saved_mask is not None:
            self.signals.mask, self.saved_mask = self.saved_mask, None
        return ret

    def _pgrp_orphaned(self):
        k = self.kernel
        with k.lock:
            return k.pgrp_orphaned_locked(self.group.pgid)

    def _restart(self, number):
        """Re-run the interrupted call when the task resumes: back up over `syscall`."""
        self.regs.rip = self.regs.rip - 2
        return number

    def _setup_frame(self, signo, info, handler, flags, restorer, mask, ret):
        """Build an x86-64 rt_sigframe and point the registers at the handler; returns rax (0)."""
        regs = self.regs.get_regs()
        if ret is not None:
            regs["rax"] = ret & 0xFFFFFFFFFFFFFFFF
        if not flags & SA_RESTORER:
            raise GroupExit(self.death_wstatus(SIGSEGV))
        ss_sp, ss_flags, ss_size = self.signals.altstack
        sp = regs["rsp"]
        on_alt = not ss_flags & SS_DISABLE and ss_sp <= sp < ss_sp + ss_size
        if flags & SA_ONSTACK and not ss_flags & SS_DISABLE and not on_alt:
            sp = ss_sp + ss_size
        else:
            sp -= 128                                 # the red zone
        # Unsigned long arithmetic, as get_sigframe's: a stack at either end
        # of the address space wraps, and the frame's write faults (SIGSEGV).
        fpstate = ((sp - 512) & ~63) & _MASK64
        frame = (((fpstate - FRAME_SIZE) & ~15) - 8) & _MASK64  # rsp+8 16-aligned at handler entry
        uc_stack = STACK_T.pack(ss_sp, SS_ONSTACK if on_alt else ss_flags & ~SS_AUTODISARM,
                               0, ss_size)
        base_mask = self.signals.mask if self.saved_mask is None else self.saved_mask
        self.saved_mask = None
        mctx = struct.pack("<18Q", *(regs[r] for r in MCONTEXT_REGS))
        mctx += struct.pack("<HHHH", USER_CS, 0, 0, USER_SS)
        mctx += struct.pack("<QQQQQ", 0, 0, base_mask, 0, fpstate) + bytes(64)
        uc = struct.pack("<QQ", 0, 0) + uc_stack + mctx + struct.pack("<Q", base_mask)
        try:
            self.copy_out(fpstate, self.regs.get_fpregs())
            self.copy_out(frame, struct.pack("<Q", restorer) + uc + info)
        except SyscallError:
            raise GroupExit(self.death_wstatus(SIGSEGV)) from None
        if flags & SS_AUTODISARM and flags & SA_ONSTACK:
            self.signals.altstack = (0, SS_DISABLE, 0)
        blocked = base_mask | mask
        if not flags & SA_NODEFER:
            blocked |= 1 << (signo - 1)
        self.signals.mask = blocked & ~((1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1)))
        if flags & SA_RESETHAND:
            self.signals.actions[signo] = (SIG_DFL, 0, 0, 0)
        self.regs.set_regs({
            "rip": handler, "rsp": frame, "rdi": signo, "rsi": frame + 8 + 304,
            "rdx": frame + 8, "rax": 0, "eflags": regs["eflags"] & ~0x500,
            "orig_rax": (1 << 64) - 1})
        return 0

    def sigreturn(self):
        """rt_sigreturn(2): restore what _setup_frame saved; returns the restored rax."""
        frame = self.regs.rsp - 8
        uc = self.copy_in(frame + 8, 304)
        vals = struct.unpack_from("<18Q", uc, 40)
        regs = dict(zip(MCONTEXT_REGS, vals))
        fpstate = struct.unpack_from("<Q", uc, 40 + 144 + 8 + 32)[0]
        mask = struct.unpack_from("<Q", uc, 296)[0]
        ss_sp, ss_flags, _pad, ss_size = STACK_T.unpack_from(uc, 16)
        # The application may not pick its own privilege: only the flags a user can set.
        regs["eflags"] = (regs["eflags"] & 0x50DD5) | 0x202
        regs["orig_rax"] = (1 << 64) - 1
        if fpstate:
            try:
                self.regs.set_fpregs(self.copy_in(fpstate, 512))
            except ValueError:      # reserved MXCSR bits: Linux's badframe
                raise GroupExit(self.death_wstatus(SIGSEGV)) from None
        self.regs.set_regs(regs)
        self.signals.mask = mask & ~((1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1)))
        if ss_flags & SS_DISABLE == 0 and ss_size:
            self.signals.altstack = (ss_sp, ss_flags & ~SS_ONSTACK, ss_size)
        return regs["rax"]
