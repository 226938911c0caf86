"""pyvisor/abi/signals.py against the host's own values (this is x86-64
Linux): the numbers, and the layouts' sizes as the kernel's headers give them."""

import signal

from pyvisor.abi import signals as S


def test_numbers_are_the_hosts():
    for name in ("SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS",
                 "SIGFPE", "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM",
                 "SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN",
                 "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH",
                 "SIGPOLL", "SIGPWR", "SIGSYS"):
        assert getattr(S, name) == getattr(signal, name), name
    assert (S.SIGRTMIN, S.SIGRTMAX) == (32, 64) == (signal.SIGRTMIN - 2, signal.SIGRTMAX)
    assert S.SIG_DFL == signal.SIG_DFL and S.SIG_IGN == signal.SIG_IGN


def test_default_actions_and_masks():
    assert S.UNBLOCKABLE == (1 << 8) | (1 << 18)
    assert S.STOP_BY_DEFAULT == {19, 20, 21, 22}
    assert S.IGNORE_BY_DEFAULT == {17, 23, 28}
    assert not (S.CORE_BY_DEFAULT & S.STOP_BY_DEFAULT) and S.FAULT_SIGNALS <= S.CORE_BY_DEFAULT


def test_layouts():
    assert (S.SIGINFO_SIZE, S.SIGACTION.size, S.STACK_T.size) == (128, 32, 24)
    info = S.siginfo_bytes(S.SIGCHLD, 1, pid=7, uid=1000, status=3)
    assert len(info) == 128
    assert S.SIGINFO_HEAD.unpack_from(info) == (17, 0, 1)
    assert info[16:28] == (7).to_bytes(4, "little") + (1000).to_bytes(4, "little") \
        + (3).to_bytes(4, "little")
    fault = S.siginfo_bytes(S.SIGSEGV, 1, addr=0xdead000)
    assert int.from_bytes(fault[16:24], "little") == 0xdead000
    timer = bytearray(128)
    S.SIGINFO_TIMER.pack_into(timer, 0, 34, 0, S.SI_TIMER, 5, 9, 42)
    assert int.from_bytes(timer[S.SIGINFO_OVERRUN_OFFSET:S.SIGINFO_OVERRUN_OFFSET + 4],
                          "little") == 9
