"""The ptrace platform: application code runs in stub processes under PTRACE_SYSEMU.

Each address space is one stub process (``platform/stub.S``), exec'd traced
and stopped before its first instruction. Its own mappings are removed
except the stub's code page; from then on the host process holds only what
the Sentry maps there, all of it from the memory file (fd STUB_MEMFD in the
stub). Application syscalls stop the stub before the host runs them
(SYSEMU); address-space edits are host syscalls injected at the stub's own
``syscall; int3``.

Edits are queued and run as one batch (the stub's batch entry reads them
from the process's control page) before the stub runs application code
again, or before any other injected call: a stop costs about as much as
four edits, and an exec makes a dozen edits in a row. Every edit is in
force when the syscall that made it returns. (Deferring maps of fresh
ranges to the first fault was tried: it saved 3 of 18 stops per
fork+exec, but each fault costs a stop and a signal round trip; no gain
measured.) Another thread that faults on a page whose edit is still queued
has the queue flushed and the instruction retried.

Threading: ptrace requests are only accepted from the thread that traces a
stub, so every call on an AddressSpace and its Context must come from the
thread that created it. Measured on this VM (limits/RESULTS.md), a wake-up
that crosses CPUs costs 15-20 µs, five times the work of a stop, so that
thread pins itself and its stub to one CPU.
"""

import errno
import mmap
import os
import struct
import threading
import time

from pyvisor import _fastpath, confine, seccomp
from pyvisor.abi.flags import (CLONE_FILES, CLONE_FS, CLONE_PARENT, CLONE_SIGHAND, CLONE_SYSVSEM,
                               CLONE_THREAD, CLONE_VM, PR_SET_NO_NEW_PRIVS,
                               SECCOMP_SET_MODE_FILTER)
from pyvisor.abi.numbers import NR_clone, NR_prctl, NR_seccomp
from pyvisor.platform.base import (EXIT_GONE, EXIT_INTERRUPT, EXIT_SIGNAL, AddressSpace, Context,
                                   Exit, Platform)

STUB_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_stub")
MAP_SHARED, MAP_FIXED = 0x01, 0x10
SYS_MMAP, SYS_MPROTECT, SYS_MUNMAP = 9, 10, 11
PROT_READ = 1
USER_TOP = 0x7FFFFFFFF000   # x86-64 TASK_SIZE with 4-level page tables
PAGE = 4096
BATCH_MAX = PAGE // 64        # entries of 8 words in one control page
_ENTRY = struct.Struct("<8q")
CTRL_SLOTS = 16384            # control pages: one per live stub process
SIGSEGV, SIGBUS, SIGKILL = 11, 7, 9
# The stub's syscall instructions, as offsets from _start of the address just
# after each (what seccomp sees as the instruction pointer); checked against
# the stub binary when the platform starts.
STUB_SITES = {"edit": 0x02, "clone": 0x12, "pdeathsig": 0x28, "pause": 0x2f, "batch": 0x69}
_ZEROS = memoryview(bytes(PAGE))


class ControlFile:
    """One page per stub process for batches of edits, in a memfd of the platform's own.

    Every stub maps it as fd STUB_CTRLFD; the Sentry writes a batch here and
    the stub reads it, with a ptrace stop in between.
    """

    def __init__(self):
        self.fd = os.memfd_create("pyvisor-ctrl", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, CTRL_SLOTS * PAGE)
        self.map = mmap.mmap(self.fd, CTRL_SLOTS * PAGE)
        self._free = list(range(CTRL_SLOTS - 1, -1, -1))
        self._lock = threading.Lock()

    def take(self):
        """A free page's offset, or None when all are in use."""
        with self._lock:
            return self._free.pop() * PAGE if self._free else None

    def give(self, off):
        with self._lock:
            self._free.append(off // PAGE)


def _stub_entry(path):
    """The stub's entry point, after checking that each of STUB_SITES follows a syscall."""
    with open(path, "rb") as f:
        image = f.read()
    if image[:4] != b"\x7fELF":
        raise OSError(errno.ENOEXEC, "bad stub binary %s" % path)
    entry, phoff = struct.unpack_from("<QQ", image, 24)
    phentsize, phnum = struct.unpack_from("<HH", image, 54)
    for i in range(phnum):
        ptype, _flags, off, vaddr, _pa, filesz = struct.unpack_from("<IIQQQQ", image, phoff + i * phentsize)
        if ptype == 1 and vaddr <= entry < vaddr + filesz:
            code = image[off + entry - vaddr:off + filesz]
            if all(code[at - 2:at] == b"\x0f\x05" for at in STUB_SITES.values()):
                return entry
    raise OSError(errno.ENOEXEC, "stub binary %s does not match STUB_SITES" % path)


def stub_filter(entry):
    """The stub's seccomp program (seccomp.stub_filter) for a stub whose _start is ``entry``."""
    sites = {name: entry + at for name, at in STUB_SITES.items()}
    return seccomp.stub_filter(sites, _fastpath.STUB_MEMFD, _fastpath.STUB_CTRLFD,
                               control_page(entry))


def control_page(entry):
    """Where a stub maps its control page: the page after its code."""
    return (entry & ~(PAGE - 1)) + PAGE


class PtracePlatform(Platform):
    name = "ptrace"

    def __init__(self, memfile, pin_cpu=True):
        if not os.path.exists(STUB_PATH):
            raise OSError(errno.ENOENT, "ptrace stub missing: %s (was the package built?)" % STUB_PATH)
        self.memfile = memfile
        self.entry = _stub_entry(STUB_PATH)
        self.ctrl = ControlFile()
        self.filter = seccomp.encode(stub_filter(self.entry))
        self.syscall_regs = None     # whether `syscall` writes rcx/r11 here (probed once)
        self.cpu = None
        if pin_cpu:
            # Stay where the scheduler put us; the stub and every later
            # Sentry thread inherit the mask.
            self.cpu = _current_cpu()
            os.sched_setaffinity(0, {self.cpu})

    def new_address_space(self):
        """The first address space: a stub exec'd by this thread, which becomes its tracer."""
        root = confine.empty_root_fd
        if root is None:
            pid = _fastpath.spawn_stub(STUB_PATH.encode(), self.memfile.fd, self.ctrl.fd)
        else:
            # Chrooted into the Sentry's empty root (confine.py), the stub is
            # exec'd by name from its directory, opened only for this.
            where = os.open(os.path.dirname(STUB_PATH), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                pid = _fastpath.spawn_stub(os.path.basename(STUB_PATH).encode(), self.memfile.fd,
                                           self.ctrl.fd, where, root)
            finally:
                os.close(where)
        aspace = PtraceAddressSpace(pid, self.ctrl, self.entry)
        aspace.add(_fastpath.Tracee(pid, self.entry))
        try:
            aspace.clear(keep=self.entry)
            aspace.map_control()
            aspace.confine(self.filter)
            if self.syscall_regs is None:
                self.syscall_regs = aspace.tracee.probe_syscall_regs()
        except BaseException:
            aspace.kill()
            raise
        return aspace

    def adopt_process(self, pid):
        """A new, empty address space from a stub made by ``clone_process``; the caller becomes its tracer.

        The clone starts with its parent's mappings, which need not be what
        the Sentry will attach (an exec after vfork, or a thread's munmap
        racing the fork): they all go, as for a new stub.
        """
        aspace = PtraceAddressSpace(pid, self.ctrl, self.entry)
        aspace.add(_fastpath.seize(pid, self.entry))
        aspace.clear(keep=self.entry)
        aspace.map_control()
        return aspace

    def adopt_thread(self, aspace, tid):
        """A new Context in ``aspace`` from a stub thread made by ``clone_thread``."""
        return aspace.add(_fastpath.seize(tid, self.entry))


def _current_cpu():
    with open("/proc/thread-self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[36])  # field 39 (processor), counted after the comm


HOST_THREAD_FLAGS = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM
SYS_CLONE = NR_clone


class PtraceAddressSpace(AddressSpace):
    """One stub process. Each Sentry thread reaches it through its own tracee (thread).

    Edits are injected through the calling Sentry thread's tracee: ptrace
    accepts requests only from a tracee's own tracer, and every thread of the
    stub shares the one host address space, so any of them will do.
    """

    def __init__(self, pid, ctrl, entry):
        self.pid = pid
        self._tracees = {}          # Sentry thread ident -> Tracee; guarded by the GIL
        self._contexts = {}
        self.injected = 0
        self._ctrl = ctrl
        self._ctrl_off = None        # our page in the control file, once mapped
        self._ctrl_addr = control_page(entry)
        self._pending = []           # queued edits: (nr, a0..a5)
        self._lock = threading.Lock()

    def add(self, tracee):
        tracee.flusher = self.flush
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
        """Run one host call in the stub now, after every queued edit."""
        self.flush()
        self.injected += 1
        r = self.tracee.inject(nr, *args, at=at)
        if -4096 < r < 0:
            raise OSError(-r, "injected syscall %d failed: %s" % (nr, os.strerror(-r)))
        return r

    def map_control(self):
        """Map a control page of this process's own over whatever is at its address."""
        off = self._ctrl.take()
        if off is None:
            return      # none left: edits go one by one
        try:
            # Read-only in the stub: the application runs in that address space.
            # It holds a batch only while the batch runs (flush zeroes it after).
            self._inject(SYS_MMAP, self._ctrl_addr, PAGE, PROT_READ, MAP_SHARED | MAP_FIXED,
                         _fastpath.STUB_CTRLFD, off)
        except BaseException:
            self._ctrl.give(off)
            raise
        self._ctrl_off = off

    def confine(self, prog):
        """Install the stub's seccomp filter (bytes of sock_filter), with no_new_privs.

        Before any application instruction runs, in a stub that holds only
        its code page and its control page. The program goes through the
        control page (the kernel copies it), which is zeroed after. Processes
        made later by an injected clone inherit the filter.
        """
        if self._ctrl_off is None:
            raise OSError(errno.ENOMEM, "no control page left for a new stub")
        m, base = self._ctrl.map, self._ctrl_off
        if 16 + len(prog) > PAGE:
            raise ValueError("stub filter larger than a page")
        m[base:base + 16] = struct.pack("<H6xQ", len(prog) // 8, self._ctrl_addr + 16)
        m[base + 16:base + 16 + len(prog)] = prog
        try:
            self._inject(NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            self._inject(NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, self._ctrl_addr)
        finally:
            m[base:base + 16 + len(prog)] = _ZEROS[:16 + len(prog)]

    def _queue(self, nr, *args):
        mine = self._tracees.get(threading.get_ident())
        if mine is None:
            # From a thread that does not trace this stub (another process's
            # task, whose shared file's EOF moved): only its own tracers may
            # run the edit, before their task next runs (Context.run) or
            # when a fault finds it pending.
            with self._lock:
                self._pending.append((nr,) + args)
            for tracee in list(self._tracees.values()):
                tracee.need_flush = True
            return
        if self._ctrl_off is None:
            self._inject(nr, *args)
            return
        with self._lock:
            self._pending.append((nr,) + args)
            full = len(self._pending) >= BATCH_MAX
        if full:
            self.flush()
        else:
            mine.need_flush = True

    def sync(self):
        self.flush()

    def flush(self):
        """Run every queued edit in the stub, in batches; True if there were any."""
        with self._lock:
            pending, self._pending = self._pending, []
            if not pending:
                return False
            for i in range(0, len(pending), BATCH_MAX):
                self._run_batch(pending[i:i + BATCH_MAX])
        return True

    def _run_batch(self, batch):
        """One injected call runs ``batch`` (at most BATCH_MAX edits). Precondition: lock held."""
        m, base = self._ctrl.map, self._ctrl_off
        for i, e in enumerate(batch):
            _ENTRY.pack_into(m, base + 64 * i, *e, 0)
        self.injected += 1
        try:
            r = self.tracee.inject(0, len(batch), self._ctrl_addr, at=_fastpath.STUB_BATCH)
        finally:
            # Nothing of the Sentry's stays where the application might read it.
            m[base:base + 64 * len(batch)] = _ZEROS[:64 * len(batch)]
        if -4096 < r < 0:
            raise OSError(-r, "a batched edit failed: %s (batch %r)" % (os.strerror(-r), batch))

    def clear(self, keep):
        """Unmap everything in the stub but the code page holding ``keep``.

        Two munmaps around that page: munmap over holes succeeds, and no
        /proc read is needed (the Sentry cannot open files once confined).
        """
        page = keep & ~0xFFF
        self._inject(SYS_MUNMAP, 0, page)
        self._inject(SYS_MUNMAP, page + 0x1000, USER_TOP - page - 0x1000)

    def map(self, addr, length, prot, fileoff):
        self._queue(SYS_MMAP, addr, length, prot, MAP_SHARED | MAP_FIXED,
                    _fastpath.STUB_MEMFD, fileoff)

    def unmap(self, addr, length):
        self._queue(SYS_MUNMAP, addr, length, 0, 0, 0, 0)

    def protect(self, addr, length, prot):
        self._queue(SYS_MPROTECT, addr, length, prot, 0, 0, 0)

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
        me = threading.get_ident()
        if me in self._tracees and len(self._tracees) > 1:
            self.flush()      # the process lives on: this thread's edits must land
        t = self._tracees.pop(me, None)
        self._contexts.pop(me, None)
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
        with self._lock:
            self._pending = []
            off, self._ctrl_off = self._ctrl_off, None
        if off is not None:
            self._ctrl.give(off)
        if not self._sigkill():
            return
        deadline = time.monotonic() + patience
        delay = 50e-6    # a killed stub is usually gone within 100 µs: poll fast at first
        while True:
            try:
                pid, _status = os.waitpid(self.pid, 0x40000000 | os.WNOHANG)   # __WALL
            except ChildProcessError:
                return
            if pid or time.monotonic() > deadline:
                return
            time.sleep(delay)
            delay = min(delay * 2, 0.002)

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
        try:
            self.aspace.flush()
            kind = self.tracee.run(dispatch, sig)
        except ProcessLookupError:          # ESRCH: the stub was killed from outside
            return Exit(EXIT_GONE, status=SIGKILL)
        if kind == EXIT_SIGNAL:
            signo, code, addr = self.tracee.siginfo()
            if signo in (SIGSEGV, SIGBUS) and self.aspace.flush():
                return Exit(EXIT_INTERRUPT)    # another thread's edit had not landed: retry
            return Exit(EXIT_SIGNAL, signo, code, addr)
        if kind == EXIT_INTERRUPT:
            return Exit(EXIT_INTERRUPT)
        return Exit(EXIT_GONE, status=self.tracee.status)

    def interrupt(self):
        """From any thread: make run() return soon, with a SIGSTOP stop the Sentry absorbs."""
        self.tracee.kick(self.aspace.pid)
