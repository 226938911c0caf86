"""The one error type a syscall handler raises."""

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
