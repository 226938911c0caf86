"""The Gofer's process, seen from the Sentry: start it, watch it, stop it.

The Sentry starts the Gofer first (it needs the host's file system, which
the Sentry never opens itself) and talks 9P to it over one end of a
socketpair (client.py); the other end is the Gofer's ``--fd``. This module
runs in the Sentry's process and imports nothing of the Sentry: the kernel
holds a `GoferProcess` and hands its socket to a `GoferClient`.
"""

import os
import socket
import subprocess
import sys
import threading

import pyvisor
from pyvisor import confine


def volume_aname(index: int) -> bytes:
    """The attach name the Gofer serves the index-th volume under."""
    return b"vol%d" % index


class GoferProcess:
    """The Gofer process and our end of its socket.

    Started with ``-S`` (no site module: its .pth files cost tens of ms) and
    the package's own directory on sys.path: start-up of the sandbox waits
    for this process.
    """

    def __init__(self, root, volumes=()):
        """`volumes`: (host directory, read_only) for each volume, served
        under volume_aname(index)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        top = os.path.dirname(os.path.dirname(os.path.abspath(pyvisor.__file__)))
        boot = "import sys; sys.path.insert(0, %r); from pyvisor.gofer.__main__ import main; " \
               "sys.exit(main())" % top
        cmd = [sys.executable, "-S", "-c", boot, "--fd", str(theirs.fileno()), "--root", root]
        for i, (path, read_only) in enumerate(volumes):
            cmd += ["--mount", "%s=%s%s" % (volume_aname(i).decode(), path,
                                            ":ro" if read_only else "")]
        if confine.under_runner:
            cmd.append("--private-proc")
        self.proc = subprocess.Popen(cmd, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                     close_fds=True)
        theirs.close()
        self.sock = ours
        self.stopping = False

    def watch(self):
        """Start watching the process (once the Sentry has confined itself
        with one thread: capabilities are per thread)."""
        threading.Thread(target=self._watch, name="gofer-watch", daemon=True).start()

    def _watch(self):
        """Say once, on stderr, that the Gofer died before the sandbox ended:
        from then on the program's file calls fail with EIO (client.py)."""
        code = self.proc.wait()
        if not self.stopping:
            how = "killed by signal %d" % -code if code < 0 else "exit status %d" % code
            sys.stderr.write("pyvisor: the file server (Gofer) died, %s: file access in the "
                             "sandbox now fails with EIO\n" % how)

    def stop(self):
        # It holds nothing to flush: every write it served went to the host
        # kernel (pwrite) before its reply, so no need to wait for it to
        # notice the closed socket.
        self.stopping = True
        try:
            self.sock.close()
        finally:
            self.proc.kill()
            self.proc.wait()


__all__ = ["GoferProcess", "volume_aname"]
