"""The one error type a syscall handler raises, Linux's partial-count rule,
and the error for an option the sandbox cannot use."""

import errno as _errno
import os


class SyscallError(Exception):
    """A system call failed with a Linux errno; the dispatcher writes -errno to rax."""

    __slots__ = ("errno",)

    def __init__(self, err):
        super().__init__(err)
        self.errno = err

    def __str__(self):
        return "%s (%s)" % (_errno.errorcode.get(self.errno, self.errno), os.strerror(self.errno))


class UsageError(Exception):
    """An option names something the sandbox cannot use (a --cwd that is not
    a directory in it, a mount point that cannot be made): one line for the
    user, and `pyvisor run` exits 2, before the program starts."""


def partial(done, exc):
    """Linux's rule for a transfer cut short (read(2), write(2), send(2),
    getrandom(2), sendmmsg(2)): the count already moved wins over the error;
    only a call that moved nothing raises `exc` (a SyscallError, or
    waiting.Interrupted). Use: ``return partial(done, e)``."""
    if done:
        return done
    raise exc
