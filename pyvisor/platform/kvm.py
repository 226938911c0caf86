"""The KVM platform: application code runs at CPL3 in a VM whose guest-physical
memory is the Sentry's memory file.

One VM per sandbox (KvmPlatform), one set of 4-level page tables per address
space (KvmAddressSpace), one Context per task thread, run on a bounded pool
of vCPUs (VcpuPool). The machinery lives in ``pyvisor._kvm``; docs/kvm.md
explains the guest and the kvm_pvm quirks it works around
(limits/RESULTS.md, "KVM under kvm_pvm").

Threading: each Sentry thread drives its own Context (the kernel finds it
with ``aspace.tracee_context``). A Context takes a vCPU from the pool when
it enters the guest and keeps it, idle, while the Sentry serves its calls;
a task that blocks in a call therefore holds nothing another task cannot
take. When every vCPU is in the guest and tasks wait, the one that has run
longest past a time slice is taken back. Page-table edits are serialised
by the MemoryManager's lock and reach running vCPUs through the host (see
``_kvm.PageTables``).
"""

import collections
import os
import threading
import time

from pyvisor import _kvm
from pyvisor.platform.base import (EXIT_GONE, EXIT_INTERRUPT, EXIT_SIGNAL, AddressSpace, Context,
                                   Exit, Platform)

KvmError = _kvm.KvmError
SIGKILL_WSTATUS = 9


def kvm_usable():
    """(True, "") if this host can run the KVM platform, else (False, one-sentence reason)."""
    if not os.path.exists("/dev/kvm"):
        return False, "/dev/kvm does not exist (no KVM on this host)"
    return _kvm.probe()


class _NewProcess:
    """What clone_process hands to adopt_process: nothing to carry on KVM."""


class _NewThread:
    """What clone_thread hands to adopt_thread."""


def default_pool_size():
    """Two vCPUs per host CPU this process may use, at least two."""
    return max(2, 2 * len(os.sched_getaffinity(0)))


class VcpuPool:
    """A bounded set of vCPUs (``_kvm.Hw``) shared by every Context.

    ``acquire(ctx)`` gives ``ctx`` a vCPU marked busy: its own if idle, a
    free one, a new one while fewer than ``size`` exist, else an idle one
    bound to another context (one the Sentry is serving or blocking: its
    state moves to that context); otherwise ``ctx`` queues (first come, first
    served) and, every ``slice_s``, the pool takes back the vCPU that has
    been in the guest longest if that is longer than the slice.
    ``release(hw)`` hands a vCPU to the first waiter, or makes it free.
    A waiter whose context is interrupted (``wake(ctx)``) stops waiting:
    ``acquire`` returns None, and the context's run() returns
    EXIT_INTERRUPT without a vCPU, so the Sentry acts on the signal at once
    instead of after a time slice.

    Lock: ``_cond`` guards the queue and ``free``. A Hw's ``busy`` flag is
    claimed with ``try_claim`` (atomic under the GIL), by the pool or by a
    context taking back its own idle vCPU without the pool.
    """

    def __init__(self, vm, size=None, slice_s=0.010):
        self.vm = vm
        self.size = size or default_pool_size()
        self.slice_s = slice_s
        self._cond = threading.Condition()
        self._queue = collections.deque()      # [ctx, hw or None] per waiter
        self.free = []
        self.preemptions = 0
        self.free.append(vm.new_hw())          # contexts copy its initial FPU state

    def acquire(self, ctx):
        with self._cond:
            hw = None if self._queue else self._take(ctx)
            if hw is not None:
                return hw
            ticket = [ctx, None]
            self._queue.append(ticket)
            self.vm.waiters += 1
            try:
                while ticket[1] is None:
                    if ctx.interrupt_requested:
                        return None
                    if not self._cond.wait(self.slice_s) and ticket[1] is None:
                        self._preempt()
                    if ticket[1] is None and self._queue[0] is ticket:
                        ticket[1] = self._take(ctx)
            finally:
                self.vm.waiters -= 1
                if ticket in self._queue:
                    self._queue.remove(ticket)
            return ticket[1]

    def _take(self, ctx):
        """A vCPU for ctx, marked busy, or None. Precondition: _cond held."""
        for hw in self.vm.hws:
            if hw.owner_context is ctx and hw not in self.free and hw.try_claim():
                return hw               # its own, idle: no state to move
        if self.free:
            hw = self.free.pop()
            hw.busy = True
            return hw
        if len(self.vm.hws) < self.size:
            hw = self.vm.new_hw()
            hw.busy = True
            return hw
        for hw in self.vm.hws:          # idle, bound to a task the Sentry serves
            if hw.try_claim():
                return hw
        return None

    def _preempt(self):
        """Every vCPU is in use: take back the one in the guest longest, past a slice."""
        now = time.monotonic_ns()
        running = [h for h in self.vm.hws if h.busy and h.running]
        if not running:
            return
        hw = min(running, key=lambda h: h.entered_ns)
        if now - hw.entered_ns >= self.slice_s * 1e9:
            hw.take_back()
            self.preemptions += 1

    def wake(self, ctx):
        """``ctx`` was interrupted: if it waits in acquire, that returns None now."""
        with self._cond:
            if any(ticket[0] is ctx for ticket in self._queue):
                self._cond.notify_all()

    def release(self, hw):
        """``hw`` is no longer any context's: to the first waiter, or free."""
        with self._cond:
            if self._queue:
                hw.busy = True
                self._queue.popleft()[1] = hw
                self._cond.notify_all()
            else:
                hw.busy = False
                self.free.append(hw)


class KvmPlatform(Platform):
    name = "kvm"

    def __init__(self, memfile, pin_cpu=True, pool_size=None):
        ok, why = kvm_usable()
        if not ok:
            raise OSError("KVM platform unusable: %s" % why)
        self.memfile = memfile
        self.vm = _kvm.Vm(memfile.fd, memfile.size)
        self.pool = VcpuPool(self.vm, pool_size)
        self.cpu = None
        if pin_cpu:
            # A vCPU thread that migrates pays for reloading the vCPU; stay put.
            self.cpu = _current_cpu()
            os.sched_setaffinity(0, {self.cpu})

    def new_address_space(self):
        """A fresh, empty address space; its Context belongs to the calling thread."""
        tables = self.vm.new_tables()
        aspace = KvmAddressSpace(self, tables)
        try:
            aspace._add_context()
        except BaseException:
            tables.release()
            raise
        return aspace

    def adopt_process(self, token):
        """The address space for a process made by ``clone_process`` (empty: the
        Sentry's MemoryManager.attach fills it)."""
        if not isinstance(token, _NewProcess):
            raise TypeError("not a KVM clone_process result: %r" % (token,))
        return self.new_address_space()

    def adopt_thread(self, aspace, token):
        """A new Context in ``aspace`` for the calling thread (``clone_thread``)."""
        if not isinstance(token, _NewThread):
            raise TypeError("not a KVM clone_thread result: %r" % (token,))
        return aspace._add_context()

    def _vcpu_for(self, tables):
        return self.vm.new_vcpu(tables, self.pool)

    def _vcpu_done(self, vcpu):
        vcpu.release()

    def close(self):
        pass


def _current_cpu():
    with open("/proc/thread-self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[36])


class KvmAddressSpace(AddressSpace):
    """Page tables of one address space and the Contexts (vCPUs) running in it."""

    def __init__(self, platform, tables):
        self.platform = platform
        self.tables = tables
        self.dead = False
        self.context = None         # the first Context: what a one-task user drives
        self._contexts = {}         # Sentry thread ident -> KvmContext; GIL-guarded

    def _add_context(self):
        ctx = KvmContext(self.platform._vcpu_for(self.tables), self)
        self._contexts[threading.get_ident()] = ctx
        if self.context is None:
            self.context = ctx
        return ctx

    @property
    def tracee_context(self):
        """The Context the calling Sentry thread drives (the kernel's name, from ptrace)."""
        return self._contexts.get(threading.get_ident(), self.context)

    def map(self, addr, length, prot, fileoff):
        self.tables.map(addr, length, prot, fileoff)

    def unmap(self, addr, length):
        self.tables.unmap(addr, length)

    def protect(self, addr, length, prot):
        self.tables.protect(addr, length, prot)

    def clone_process(self):
        """fork(2): the new address space is built by adopt_process, in the child's thread."""
        return _NewProcess()

    def clone_thread(self):
        """clone(CLONE_VM): the new vCPU is made by adopt_thread, in the child's thread."""
        return _NewThread()

    def drop(self):
        """The calling Sentry thread's task is gone: free its vCPU; the last one ends the space."""
        ctx = self._contexts.pop(threading.get_ident(), None)
        if ctx is None and not self._contexts and self.context is not None:
            ctx = self.context          # dropped from another thread than the one that made it
        if ctx is not None:
            ctx._retire()
            if ctx is self.context:
                self.context = next(iter(self._contexts.values()), None)
        if not self._contexts and self.context is None:
            self.tables.release()

    def kill(self):
        """From any thread: everything running here stops and gets EXIT_GONE."""
        self.dead = True
        for ctx in list(self._contexts.values()) + [self.context]:
            if ctx is not None:
                ctx.interrupt()

    def release(self):
        """End the address space: every vCPU back to the pool, every table retired."""
        self.dead = True
        ctxs = set(self._contexts.values())
        if self.context is not None:
            ctxs.add(self.context)
        self._contexts.clear()
        self.context = None
        for ctx in ctxs:
            ctx._retire()
        self.tables.release()


class KvmContext(Context):
    def __init__(self, vcpu, aspace):
        self.vcpu = vcpu
        self.aspace = aspace
        self.regs = vcpu   # register properties live on the Vcpu, as on the Tracee

    def run(self, dispatch, sig=0):
        """Run until a fault, an interrupt() or a raising dispatch; KvmError if the VM breaks."""
        if self.aspace.dead or self.vcpu is None:
            return Exit(EXIT_GONE, status=SIGKILL_WSTATUS)
        kind = self.vcpu.run(dispatch, sig)
        if kind == EXIT_INTERRUPT:
            if self.aspace.dead:
                return Exit(EXIT_GONE, status=SIGKILL_WSTATUS)
            return Exit(EXIT_INTERRUPT)
        signo, code, addr = self.vcpu.siginfo()
        return Exit(EXIT_SIGNAL, signo, code, addr)

    def interrupt(self):
        """From any thread: make run() return Exit(EXIT_INTERRUPT) soon."""
        vcpu = self.vcpu
        if vcpu is not None:
            vcpu.interrupt()

    def _retire(self):
        vcpu, self.vcpu = self.vcpu, None
        if vcpu is not None:
            self.aspace.platform._vcpu_done(vcpu)
