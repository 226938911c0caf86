"""Entry point of the Gofer process:
``python -m pyvisor.gofer --fd N --root DIR [--mount NAME=DIR[:ro]]...``.

Serves DIR read-only (attach name "" or "/"), and each --mount DIR
read-write (or read-only with ``:ro``) under the attach name NAME, over 9P2000.L on the inherited Unix socket N until the
socket closes, chrooted into DIR (every mounted DIR is opened before, and served
relative to its fd) with only CAP_DAC_READ_SEARCH (in the
sandbox's user namespace), no_new_privs and its seccomp filter. It dies
with its parent (PR_SET_PDEATHSIG) and ignores SIGINT: a Ctrl-C at the
terminal reaches the whole process group, and it is the Sentry that
decides what it means for the sandbox. With ``--private-proc`` (in the
sandbox's namespaces) it first mounts a procfs of the sandbox's own pid
namespace over /proc in a mount namespace of its own: the /proc/self/fd
it keeps open across the chroot then leads to no host process.
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
    parser.add_argument("--mount", action="append", default=[], metavar="NAME=DIR[:ro]",
                        help="also serve DIR, read-write unless :ro, under attach name NAME")
    parser.add_argument("--private-proc", action="store_true",
                        help="mount the pid namespace's own procfs first (needs CAP_SYS_ADMIN)")
    args = parser.parse_args(argv)
    mounts = {}
    for spec in args.mount:
        name, sep, path = spec.partition("=")
        read_only = path.endswith(":ro")
        path = path[:-3] if read_only else path
        if not sep or not name or not path or name.encode() in mounts:
            parser.error("--mount wants NAME=DIR[:ro] with a new NAME, got %r" % spec)
        mounts[os.fsencode(name)] = (path, read_only)
    writable = any(not ro for _, ro in mounts.values())

    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if args.private_proc:
        from pyvisor.confine import private_proc
        private_proc()

    from .server import serve
    sock = socket.socket(fileno=args.fd)
    from pyvisor.confine import CAP_DAC_READ_SEARCH, drop_capabilities
    from pyvisor.seccomp import install_gofer_filter

    def confine():
        # The tree and /proc/self/fd are open: from here on the Gofer sees
        # only the tree it serves, keeps only CAP_DAC_READ_SEARCH (in its
        # user namespace: it reads what root would, of the ids mapped there)
        # and serves read-only: no exec, sockets or ptrace. With a
        # read-write volume its filter adds the *at() write calls.
        os.chroot(args.root)
        os.chdir("/")
        drop_capabilities(keep=(CAP_DAC_READ_SEARCH,))
        install_gofer_filter(writable=writable)

    try:
        serve(sock, args.root, confine, mounts)
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
