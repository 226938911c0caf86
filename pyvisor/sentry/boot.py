"""The sandbox's start-up: builds the syscall table and hands it to the
kernel, relays the host's signals to the sandbox's init, runs it to the end.
"""

import signal
import threading

from pyvisor import confine
from pyvisor.sentry.kernel import Kernel
from pyvisor.sentry.syscalls.table import build_table
from pyvisor.abi.signals import siginfo_bytes

HOST_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGWINCH,
                signal.SIGUSR1, signal.SIGUSR2)


class _HostSignals:
    """Signals sent to the Sentry from outside (Ctrl-C, kill) go to the sandbox's init, as to a container."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, HOST_SIGNALS + tuple(confine.RELAYED))
        self.thread = None

    def start(self):
        """Start forwarding; signals that came before wait, blocked, until now.

        Started after Kernel.start: the Sentry drops its capabilities while
        it has one thread (they are per thread).
        """
        self.thread = threading.Thread(target=self._loop, name="host-signals", daemon=True)
        self.thread.start()

    def _loop(self):
        waited = HOST_SIGNALS + tuple(confine.RELAYED)
        while True:
            info = signal.sigwaitinfo(waited)
            signo = confine.RELAYED.get(info.si_signo, info.si_signo)
            if confine.under_runner and signo == info.si_signo and info.si_code <= 0:
                # `pyvisor run` relays what is sent to it as a real-time
                # signal; a kill(2) of the whole process group reached us
                # too: one is enough. The terminal's signals (si_code
                # SI_KERNEL) come here only.
                continue
            k = self.kernel
            if k.init is not None:
                k.send_signal(k.init, signo, siginfo_bytes(signo, 0))

    def close(self):
        signal.pthread_sigmask(signal.SIG_SETMASK, self.old_mask)


def run_sandbox(config):
    """Start, run and stop a sandbox; return its exit code. Raises LaunchError, SentryCrash."""
    k = Kernel(config, build_table())
    host = _HostSignals(k)
    try:
        k.start()
        host.start()
        return k.run()
    finally:
        k.stop()
        host.close()
