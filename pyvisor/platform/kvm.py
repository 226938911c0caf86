"""The KVM platform: application code runs at CPL3 in a VM whose guest-physical
memory is the Sentry's memory file.

One VM per sandbox (KvmPlatform), one set of 4-level page tables per address
space (KvmAddressSpace), one vCPU per Context, i.e. per task thread. The
machinery lives in ``pyvisor._kvm``; docs/kvm.md explains the guest and the
kvm_pvm quirks it works around (limits/RESULTS.md, "KVM under kvm_pvm").

Threading: each Sentry thread drives its own Context (the kernel finds it
with ``aspace.tracee_context``); unlike a ptrace tracee, a vCPU could be
driven from any thread, one at a time. Edits of an address space are
serialised by the MemoryManager's lock; an edit stops the other vCPUs of
that address space that are inside KVM_RUN and waits for them (the
shootdown, in ``_kvm.PageTables``). vCPUs of dropped contexts go back to a
pool and are reused, since KVM cannot destroy a vCPU before its VM.
"""

import os
import threading

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


class KvmPlatform(Platform):
    name = "kvm"

    def __init__(self, memfile, pin_cpu=True):
        ok, why = kvm_usable()
        if not ok:
            raise OSError("KVM platform unusable: %s" % why)
        self.memfile = memfile
        self.vm = _kvm.Vm(memfile.fd, memfile.size)
        self._idle_vcpus = []       # guarded by _lock
        self._lock = threading.Lock()
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
        with self._lock:
            vcpu = self._idle_vcpus.pop() if self._idle_vcpus else None
        if vcpu is None:
            return self.vm.new_vcpu(tables)
        try:
            vcpu.attach(tables)
        except BaseException:
            self._vcpu_done(vcpu)
            raise
        return vcpu

    def _vcpu_done(self, vcpu):
        vcpu.detach()
        with self._lock:
            self._idle_vcpus.append(vcpu)

    def close(self):
        with self._lock:
            self._idle_vcpus = []


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

    @property
    def fast_pid(self):
        return self.vcpu.fast_pid

    @fast_pid.setter
    def fast_pid(self, pid):
        self.vcpu.fast_pid = pid

    def run(self, dispatch, sig=0):
        """Run until a fault, an interrupt() or a raising dispatch; KvmError if the VM breaks."""
        if self.aspace.dead or self.vcpu is None:
            return Exit(EXIT_GONE, status=SIGKILL_WSTATUS)
        kind = self.vcpu.run(dispatch, sig)
        if kind == _kvm.EXIT_INTERRUPT:
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
