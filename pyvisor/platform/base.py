"""The platform interface: what the Sentry needs from a way of running application code.

A Platform makes AddressSpaces; an AddressSpace mirrors the Sentry's VMAs
into whatever executes the code (a stub process, a VM's page tables) and
owns the Contexts that run in it. A Context runs the application until a
system call the dispatcher does not absorb, or a signal/fault, or its end.
The platform knows nothing about what a system call means.
"""

from abc import ABC, abstractmethod

from pyvisor.platform._common import ExitKind

# Exit kinds, declared once in platform/_common.pxd (the C run loops return them).
EXIT_SYSCALL = int(ExitKind.EXIT_SYSCALL)
EXIT_SIGNAL = int(ExitKind.EXIT_SIGNAL)
EXIT_GONE = int(ExitKind.EXIT_GONE)
EXIT_INTERRUPT = int(ExitKind.EXIT_INTERRUPT)


class Exit:
    """Why a Context stopped: a signal/fault (signo, code, addr) or the host thread is gone."""

    __slots__ = ("kind", "signo", "code", "addr", "status")

    def __init__(self, kind, signo=0, code=0, addr=0, status=0):
        self.kind = kind
        self.signo = signo
        self.code = code
        self.addr = addr
        self.status = status

    def __repr__(self):
        return "Exit(kind=%d, signo=%d, code=%d, addr=%#x, status=%#x)" % (
            self.kind, self.signo, self.code, self.addr, self.status)


class Platform(ABC):
    name = "abstract"

    @abstractmethod
    def new_address_space(self):
        """A fresh, empty AddressSpace with one Context."""

    @abstractmethod
    def adopt_process(self, handle):
        """The AddressSpace made by clone_process; the calling thread drives its Context."""

    @abstractmethod
    def adopt_thread(self, aspace, handle):
        """A new Context in aspace from clone_thread's handle, driven by the calling thread."""

    def close(self):
        pass


class AddressSpace(ABC):
    """Mirror of the Sentry's VMAs. Preconditions: page-aligned, non-empty ranges."""

    @abstractmethod
    def map(self, addr, length, prot, fileoff):
        """Map memory-file bytes [fileoff, fileoff+length) at addr, replacing what was there."""

    @abstractmethod
    def unmap(self, addr, length):
        pass

    def sync(self):
        """Return once every edit made so far is in force: before the Sentry frees
        pages that an edit stopped mapping. Platforms that edit at once need nothing."""

    @abstractmethod
    def protect(self, addr, length, prot):
        pass

    @abstractmethod
    def release(self):
        """End the address space and everything running in it."""

    # What the Sentry needs for processes and threads. Preconditions: called
    # from the Sentry thread that drives a Context in this address space.

    @property
    @abstractmethod
    def tracee_context(self):
        """The Context the calling Sentry thread drives here."""

    @abstractmethod
    def clone_process(self):
        """A host copy of this address space for fork, paused until adopted; returns its handle."""

    @abstractmethod
    def clone_thread(self):
        """A new host thread in this address space, paused until adopted; returns its handle."""

    @abstractmethod
    def drop(self):
        """The calling thread's task is gone: end its host thread (the last one ends the space)."""

    @abstractmethod
    def kill(self):
        """End the address space at once, from any thread."""


class Context(ABC):
    """Runs one application thread. ``regs`` is its register file (the C
    half's Tracee or Vcpu)."""

    @abstractmethod
    def run(self, dispatch):
        """Run until a stop dispatch does not absorb; return an Exit.

        ``dispatch(nr, a0, ..., a5)`` serves one call and returns rax."""

    def set_fast_answers(self, answers):
        """Calls run() answers in C without dispatch: ``{number: rax}``, at most
        four; {} sends every call to dispatch.

        The Sentry chooses them (calls whose answer is fixed for the task,
        such as getpid); the platform only compares numbers.
        """
        self.regs.set_fast_answers(answers)
