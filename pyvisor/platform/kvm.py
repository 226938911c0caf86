"""The KVM platform: application code runs at CPL3 in a VM whose guest-physical
memory is the Sentry's memory file.

One VM per sandbox (KvmPlatform), one set of 4-level page tables per address
space (KvmAddressSpace), one vCPU per Context. The machinery lives in
``pyvisor._kvm``; docs/kvm.md explains the guest and the kvm_pvm quirks it
works around (limits/RESULTS.md, "KVM under kvm_pvm").

Threading: a Context is driven by one thread at a time; an AddressSpace is
edited only while its Context is not inside ``run`` (the Sentry serves a
syscall with the vCPU stopped, so mmap/munmap/mprotect from a handler are
fine). vCPUs of released address spaces are kept and reused, since KVM
cannot destroy a vCPU before the VM.
"""

import os

from pyvisor import _kvm
from pyvisor.platform.base import (EXIT_INTERRUPT, EXIT_SIGNAL, AddressSpace, Context, Exit,
                                   Platform)

KvmError = _kvm.KvmError


def kvm_usable():
    """(True, "") if this host can run the KVM platform, else (False, one-sentence reason)."""
    if not os.path.exists("/dev/kvm"):
        return False, "/dev/kvm does not exist (no KVM on this host)"
    return _kvm.probe()


class KvmPlatform(Platform):
    name = "kvm"

    def __init__(self, memfile, pin_cpu=True):
        ok, why = kvm_usable()
        if not ok:
            raise OSError("KVM platform unusable: %s" % why)
        self.memfile = memfile
        self.vm = _kvm.Vm(memfile.fd, memfile.size)
        self._idle_vcpus = []
        self.cpu = None
        if pin_cpu:
            # A vCPU thread that migrates pays for reloading the vCPU; stay put.
            self.cpu = _current_cpu()
            os.sched_setaffinity(0, {self.cpu})

    def new_address_space(self):
        tables = self.vm.new_tables()
        try:
            if self._idle_vcpus:
                vcpu = self._idle_vcpus.pop()
                vcpu.attach(tables)
            else:
                vcpu = self.vm.new_vcpu(tables)
        except BaseException:
            tables.release()
            raise
        return KvmAddressSpace(self, tables, vcpu)

    def _vcpu_done(self, vcpu):
        self._idle_vcpus.append(vcpu)

    def close(self):
        self._idle_vcpus = []


def _current_cpu():
    with open("/proc/thread-self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[36])


class KvmAddressSpace(AddressSpace):
    """Page tables of one address space and the Context that runs in it."""

    def __init__(self, platform, tables, vcpu):
        self.platform = platform
        self.tables = tables
        self.context = KvmContext(vcpu, self)

    @property
    def tracee_context(self):
        """The Context the calling Sentry thread drives (the kernel's name, from ptrace)."""
        return self.context

    def map(self, addr, length, prot, fileoff):
        self.tables.map(addr, length, prot, fileoff)

    def unmap(self, addr, length):
        self.tables.unmap(addr, length)

    def protect(self, addr, length, prot):
        self.tables.protect(addr, length, prot)

    def drop(self):
        """The calling Sentry thread's task is gone; with one Context, so is the space."""
        self.release()

    def kill(self):
        """End everything running here (from any thread): stop the vCPU; release frees it."""
        if self.context is not None:
            self.context.interrupt()

    def release(self):
        ctx, self.context = self.context, None
        if ctx is not None:
            self.platform._vcpu_done(ctx.vcpu)
            ctx.vcpu = None
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
        """Run until a fault or a syscall dispatch raises; raises KvmError if the VM breaks."""
        if self.vcpu.run(dispatch, sig) == _kvm.EXIT_INTERRUPT:
            return Exit(EXIT_INTERRUPT)
        signo, code, addr = self.vcpu.siginfo()
        return Exit(EXIT_SIGNAL, signo, code, addr)

    def interrupt(self):
        """From any thread: make run() return Exit(EXIT_INTERRUPT) soon."""
        vcpu = self.vcpu
        if vcpu is not None:
            vcpu.interrupt()
