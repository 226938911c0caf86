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

from pyvisor import _fastpath
from pyvisor.platform.base import (EXIT_GONE, EXIT_SIGNAL, AddressSpace, Context,
                                   Exit, Platform)

STUB_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_stub")
MAP_SHARED, MAP_FIXED = 0x01, 0x10
SYS_MMAP, SYS_MPROTECT, SYS_MUNMAP = 9, 10, 11


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
            # Stay where the scheduler put us; the stub inherits the mask.
            self.cpu = _current_cpu()
            os.sched_setaffinity(0, {self.cpu})

    def new_address_space(self):
        pid = _fastpath.spawn_stub(STUB_PATH.encode(), self.memfile.fd)
        tracee = _fastpath.Tracee(pid, self.entry)
        aspace = PtraceAddressSpace(tracee)
        try:
            aspace._clear(self.entry)
        except BaseException:
            aspace.release()
            raise
        return aspace


def _current_cpu():
    with open("/proc/thread-self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[36])  # field 39 (processor), counted after the comm


class PtraceAddressSpace(AddressSpace):
    def __init__(self, tracee):
        self.tracee = tracee
        self.context = PtraceContext(tracee)
        self.injected = 0

    def _inject(self, nr, *args):
        self.injected += 1
        r = self.tracee.inject(nr, *args)
        if -4096 < r < 0:
            raise OSError(-r, "injected syscall %d failed: %s" % (nr, os.strerror(-r)))
        return r

    def _clear(self, entry):
        """Unmap everything the exec left in the stub but the code page."""
        with open("/proc/%d/maps" % self.tracee.pid) as f:
            lines = f.read().splitlines()
        for line in lines:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= entry < hi or lo >= 1 << 47:   # the stub page; [vsyscall]
                continue
            self._inject(SYS_MUNMAP, lo, hi - lo)

    def map(self, addr, length, prot, fileoff):
        self._inject(SYS_MMAP, addr, length, prot, MAP_SHARED | MAP_FIXED,
                     _fastpath.STUB_MEMFD, fileoff)

    def unmap(self, addr, length):
        self._inject(SYS_MUNMAP, addr, length)

    def protect(self, addr, length, prot):
        self._inject(SYS_MPROTECT, addr, length, prot)

    def release(self):
        t = self.tracee
        if t is not None:
            self.tracee = None
            t.kill()
            t.reap()


class PtraceContext(Context):
    def __init__(self, tracee):
        self.tracee = tracee
        self.regs = tracee   # register properties live on the Tracee

    def run(self, dispatch, sig=0):
        kind = self.tracee.run(dispatch, sig)
        if kind == EXIT_SIGNAL:
            signo, code, addr = self.tracee.siginfo()
            return Exit(EXIT_SIGNAL, signo, code, addr)
        return Exit(EXIT_GONE, status=self.tracee.status)
