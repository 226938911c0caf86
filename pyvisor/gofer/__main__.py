"""Entry point of the Gofer process: ``python -m pyvisor.gofer --fd N --root DIR``.

Serves DIR read-only over 9P2000.L on the inherited Unix socket N until the
socket closes. It dies with its parent (PR_SET_PDEATHSIG) and ignores
SIGINT: a Ctrl-C at the terminal reaches the whole process group, and it is
the Sentry that decides what it means for the sandbox.
Kept small: start-up time of the sandbox includes this process.
"""

import argparse
import ctypes
import os
import signal
import socket
import sys

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    # The parent may have died before prctl took effect: we were reparented.
    if os.getppid() != parent:
        sys.exit(1)


def main(argv=None) -> int:
    parent = os.getppid()
    parser = argparse.ArgumentParser(prog="python -m pyvisor.gofer",
                                     description="Serve DIR read-only over 9P2000.L on socket fd N.")
    parser.add_argument("--fd", type=int, required=True, help="connected Unix stream socket")
    parser.add_argument("--root", required=True, help="directory tree to serve")
    args = parser.parse_args(argv)

    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    from .server import serve
    sock = socket.socket(fileno=args.fd)
    from pyvisor.seccomp import install_gofer_filter
    install_gofer_filter()   # from here on: read-only service, no exec/sockets/ptrace
    try:
        serve(sock, args.root)
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
