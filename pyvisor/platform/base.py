"""The platform interface: what the Sentry needs from a way of running application code.

A Platform makes AddressSpaces; an AddressSpace mirrors the Sentry's VMAs
into whatever executes the code (a stub process, a VM's page tables) and
owns the Contexts that run in it. A Context runs the application until a
system call the dispatcher does not absorb, or a signal/fault, or its end.
The platform knows nothing about what a system call means.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass

EXIT_SYSCALL, EXIT_SIGNAL, EXIT_GONE, EXIT_INTERRUPT = 0, 1, 2, 3


@dataclass(frozen=True)
class Exit:
    """Why a Context stopped: a signal/fault (signo, code, addr) or the host thread is gone."""
    kind: int
    signo: int = 0
    code: int = 0
    addr: int = 0
    status: int = 0


class Platform(ABC):
    name = "abstract"

    @abstractmethod
    def new_address_space(self):
        """A fresh, empty AddressSpace with one Context."""

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

    @abstractmethod
    def protect(self, addr, length, prot):
        pass

    @abstractmethod
    def release(self):
        """End the address space and everything running in it."""


class Context(ABC):
    @abstractmethod
    def run(self, dispatch):
        """Run until a stop dispatch does not absorb; return an Exit."""
