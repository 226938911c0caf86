"""The ptrace platform: application code runs in stub processes under PTRACE_SYSEMU.

Each address space is one stub process (``platform/stub.S``), exec'd traced
and stopped before its first instruction. Its own mappings are removed
except the stub's code page; from then on the host process holds only what
the Sentry maps there, all of it from the memory file (fd STUB_MEMFD in the
stub). Application syscalls stop the stub before the host runs them
(SYSEMU); address-space edits are host syscalls injected at the stub's own
``syscall; int3``.

Threading: ptrace requests are only accepted from the thread that traces a
stub, so every call on an AddressSpace and its Context must come from the
thread that created it. Measured on this VM (limits/RESULTS.md), a wake-up
that crosses CPUs costs 15-20 µs, five times the work of a stop, so that
thread pins itself and its stub to one CPU.
"""

import errno
import os
import threading
import time

from pyvisor import _fastpath
from pyvisor.platform.base import (EXIT_GONE, EXIT_INTERRUPT, EXIT_SIGNAL, AddressSpace, Context,
                                   Exit, Platform)

STUB_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_stub")
MAP_SHARED, MAP_FIXED = 0x01, 0x10
SYS_MMAP, SYS_MPROTECT, SYS_MUNMAP = 9, 10, 11
USER_TOP = 0x7FFFFFFFF000   # x86-64 TASK_SIZE with 4-level page tables


def _stub_entry(path):
    with open(path, "rb") as f:
        head = f.read(32)
    if head[:4] != b"\x7fELF":
        raise OSError(errno.ENOEXEC, "bad stub binary %s" % path)
    return int.from_bytes(head[24:32], "little")


class PtracePlatform(Platform):
    name = "ptrace"

    def __init__(self, memfile, pin_cpu=True):
        if not os.path.exists(STUB_PATH):
            raise OSError(errno.ENOENT, "ptrace stub missing: %s (was the package built?)" % STUB_PATH)
        self.memfile = memfile
        self.entry = _stub_entry(STUB_PATH)
        self.cpu = None
        if pin_cpu:
            # Stay where the scheduler put us; the stub and every later
            # Sentry thread inherit the mask.
            self.cpu = _current_cpu()
            os.sched_setaffinity(0, {self.cpu})

    def new_address_space(self):
        """The first address space: a stub exec'd by this thread, which becomes its tracer."""
        pid = _fastpath.spawn_stub(STUB_PATH.encode(), self.memfile.fd)
        aspace = PtraceAddressSpace(pid)
        aspace.add(_fastpath.Tracee(pid, self.entry))
        try:
            aspace.clear(keep=self.entry)
        except BaseException:
            aspace.kill()
            raise
        return aspace

    def adopt_process(self, pid):
        """A new address space from a stub made by ``clone_process``; the caller becomes its tracer."""
        aspace = PtraceAddressSpace(pid)
        aspace.add(_fastpath.seize(pid, self.entry))
        aspace.clear(keep=self.entry)
        return aspace

    def adopt_thread(self, aspace, tid):
        """A new Context in ``aspace`` from a stub thread made by ``clone_thread``."""
        return aspace.add(_fastpath.seize(tid, self.entry))


def _current_cpu():
    with open("/proc/thread-self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[36])  # field 39 (processor), counted after the comm


CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND = 0x100, 0x200, 0x400, 0x800
CLONE_PARENT, CLONE_THREAD, CLONE_SYSVSEM = 0x8000, 0x10000, 0x40000
HOST_THREAD_FLAGS = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM
SYS_CLONE = 56


class PtraceAddressSpace(AddressSpace):
    """One stub process. Each Sentry thread reaches it through its own tracee (thread).

    Edits are injected through the calling Sentry thread's tracee: ptrace
    accepts requests only from a tracee's own tracer, and every thread of the
    stub shares the one host address space, so any of them will do.
    """

    def __init__(self, pid):
        self.pid = pid
        self._tracees = {}          # Sentry thread ident -> Tracee; guarded by the GIL
        self._contexts = {}
        self.injected = 0

    def add(self, tracee):
        ctx = PtraceContext(tracee, self)
        self._tracees[threading.get_ident()] = tracee
        self._contexts[threading.get_ident()] = ctx
        return ctx

    @property
    def tracee(self):
        return self._tracees[threading.get_ident()]

    @property
    def tracee_context(self):
        """The Context the calling Sentry thread drives in this address space."""
        return self._contexts[threading.get_ident()]

    def _inject(self, nr, *args, at=0):
        self.injected += 1
        r = self.tracee.inject(nr, *args, at=at)
        if -4096 < r < 0:
            raise OSError(-r, "injected syscall %d failed: %s" % (nr, os.strerror(-r)))
        return r

    def clear(self, keep):
        """Unmap everything in the stub but the code page holding ``keep``.

        Two munmaps around that page: munmap over holes succeeds, and no
        /proc read is needed (the Sentry cannot open files once confined).
        """
        page = keep & ~0xFFF
        self._inject(SYS_MUNMAP, 0, page)
        self._inject(SYS_MUNMAP, page + 0x1000, USER_TOP - page - 0x1000)

    def map(self, addr, length, prot, fileoff):
        self._inject(SYS_MMAP, addr, length, prot, MAP_SHARED | MAP_FIXED,
                     _fastpath.STUB_MEMFD, fileoff)

    def unmap(self, addr, length):
        self._inject(SYS_MUNMAP, addr, length)

    def protect(self, addr, length, prot):
        self._inject(SYS_MPROTECT, addr, length, prot)

    def clone_process(self):
        """A copy of this stub as a new process, paused until adopted; returns its host pid.

        CLONE_PARENT makes the Sentry its parent, so the Sentry reaps it.
        """
        return self._inject(SYS_CLONE, CLONE_PARENT, 0, 0, 0, 0, at=_fastpath.STUB_CLONE)

    def clone_thread(self):
        """A new host thread in this stub, paused until adopted; returns its host tid."""
        return self._inject(SYS_CLONE, HOST_THREAD_FLAGS, 0, 0, 0, 0, at=_fastpath.STUB_CLONE)

    def drop(self):
        """The calling Sentry thread's task is gone: end its host thread.

        The last one kills the process. A process leader with threads still
        running is parked (its exit would wait for them), others exit.
        """
        t = self._tracees.pop(threading.get_ident(), None)
        self._contexts.pop(threading.get_ident(), None)
        if t is None:
            return
        if not self._tracees:
            # Our own tracee must be reaped by us before its leader can be.
            self._sigkill()
            if t.pid != self.pid:
                t.reap()
            self.kill()
        elif t.pid == self.pid:
            t.park()
        else:
            t.exit_thread()

    def _sigkill(self):
        try:
            os.kill(self.pid, 9)
            return True
        except ProcessLookupError:
            return False

    def kill(self, patience=2.0):
        """SIGKILL the stub process and reap it.

        Bounded: a leader is reported only once every thread is reaped, and
        a thread whose tracer is gone is released by the host, not by us.
        """
        if not self._sigkill():
            return
        deadline = time.monotonic() + patience
        while True:
            try:
                pid, _status = os.waitpid(self.pid, 0x40000000 | os.WNOHANG)   # __WALL
            except ChildProcessError:
                return
            if pid or time.monotonic() > deadline:
                return
            time.sleep(0.002)

    def release(self):
        self._tracees.clear()
        self._contexts.clear()
        self.kill()


class PtraceContext(Context):
    def __init__(self, tracee, aspace):
        self.tracee = tracee
        self.aspace = aspace
        self.regs = tracee   # register properties live on the Tracee

    def run(self, dispatch, sig=0):
        kind = self.tracee.run(dispatch, sig)
        if kind == EXIT_SIGNAL:
            signo, code, addr = self.tracee.siginfo()
            return Exit(EXIT_SIGNAL, signo, code, addr)
        if kind == _fastpath.EXIT_INTERRUPT:
            return Exit(EXIT_INTERRUPT)
        return Exit(EXIT_GONE, status=self.tracee.status)

    def interrupt(self):
        """From any thread: make run() return soon, with a SIGSTOP stop the Sentry absorbs."""
        self.tracee.kick(self.aspace.pid)
