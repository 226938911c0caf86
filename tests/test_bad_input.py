"""Input at the edges that must not crash the Sentry: huge and malformed
timeouts, and kill(-1). Each C probe runs natively and in the sandbox (ptrace
and kvm) and must print the same lines.

- tests/c/timeouts.c: tv_sec = 0x7fffffffffffffff in every call that takes a
  timeout or timer value. Linux clamps such a value to KTIME_MAX ("forever"),
  so each wait ends only by a 50 ms SIGALRM (EINTR); a negative time or a
  sub-second field out of range is EINVAL. These once raised OverflowError
  in the Sentry (exit 70).
- tests/c/killall.c: kill(-1, sig) reaches every process but init and the
  caller; ESRCH when nobody is left. Natively it runs as pid 1 of a new pid
  namespace (unshare), never against the host's processes.
"""

import os
import shutil
import subprocess

import pytest
from conftest import TESTS_DIR

HERE = TESTS_DIR


def probe(build_c, name):
    return build_c(os.path.join(HERE, "c", name + ".c"))


@pytest.mark.parametrize("part", ["nanosleep", "select", "poll", "futex", "timers", "sockets"])
def test_huge_and_bad_timeouts(sandbox, build_c, part):
    prog = probe(build_c, "timeouts")
    native = sandbox.native([prog, part], timeout=30)
    assert native.returncode == 0, native.stderr
    boxed = sandbox.run([prog, part], timeout=60)
    assert boxed.stderr == b"", boxed.stderr.decode(errors="replace")
    assert boxed.stdout.decode().splitlines() == native.stdout.decode().splitlines()
    assert boxed.returncode == 0


KILLALL_EXPECTED = """\
kill(-1) = 0 
kid 0: exit 42
kid 1: exit 42
kid 2: exit 42
caller hits 0
kill(-1) alone = -1 ESRCH
caller hits 0
caller status 0
init hits 0
""".splitlines()


def test_kill_minus_one_spares_caller_and_init(sandbox, build_c):
    prog = probe(build_c, "killall")
    boxed = sandbox.run([prog], timeout=60)
    assert boxed.returncode == 0, boxed.stderr.decode(errors="replace")
    assert boxed.stdout.decode().splitlines() == KILLALL_EXPECTED


def test_killall_native_in_pid_namespace(build_c):
    """The expectation above is Linux's: the probe as pid 1 of its own pid namespace."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("needs unshare(1) and root for a pid namespace")
    prog = probe(build_c, "killall")
    native = subprocess.run([unshare, "--pid", "--fork", "--mount-proc", prog],
                            capture_output=True, timeout=30)
    assert native.returncode == 0, native.stderr
    assert native.stdout.decode().splitlines() == KILLALL_EXPECTED


@pytest.mark.parametrize("case", ["altstack", "mxcsr", "settid", "reparent", "settls",
                                  "forkstorm"])
def test_fuzzer_findings(sandbox, build_c, case):
    """Each input the syscall fuzzer found to crash or wedge the Sentry
    (tests/c/fuzz_found.c says what each does) behaves as natively."""
    prog = probe(build_c, "fuzz_found")
    native = sandbox.native([prog, case], timeout=30)
    boxed = sandbox.run([prog, case], timeout=60)
    assert b"Sentry failure" not in boxed.stderr, boxed.stderr.decode(errors="replace")
    # pyvisor exits 128+N when the program dies of signal N, as a shell reports it.
    native_status = native.returncode if native.returncode >= 0 else 128 - native.returncode
    assert (boxed.stdout, boxed.returncode) == (native.stdout, native_status), boxed.stderr
