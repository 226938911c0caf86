"""netstack's one error type.

A socket call that fails raises ``NetError`` with the errno Linux gives for
the same input (``tests/netstack/test_netstack_socket.py`` checks them against the
host kernel). netstack is a library: it knows no system calls, so its
error is its own, and the Sentry's socket layer turns it into a
``SyscallError`` in one place (``sentry/socket/netstack.py``: leaving
``with net:``), as gVisor's socket layer translates netstack's ``tcpip.Error``
(``pkg/syserr/netstack.go``). The value is the Linux errno itself, so the
translation is ``SyscallError(e.errno)``.
"""

import errno as _errno
import os


class NetError(Exception):
    """A netstack socket call failed with a Linux errno (``.errno``)."""

    __slots__ = ("errno",)

    def __init__(self, err):
        super().__init__(err)
        self.errno = err

    def __str__(self):
        return "%s (%s)" % (_errno.errorcode.get(self.errno, self.errno), os.strerror(self.errno))


__all__ = ["NetError"]
