"""Per-call cost of getpid(2), as a user pays it.

Each figure comes from running bench/c/getpid_loop.c at two N and dividing
the difference in wall time by the difference in N, so start-up cancels out:

- native: the program on the host;
- pyvisor: ``pyvisor run -- getpid_loop N`` (no taskset: pinning is the
  sandbox's job);
- floor: bench/c/ptrace_floor.c, the least any ptrace sandbox pays per call
  (SYSEMU stop, GETREGS, SETREGS, pinned to one CPU), measured inside it;
- kvm floor: bench/c/kvm_floor.c, the least the KVM platform pays per call
  (SYSCALL -> trampoline -> MMIO exit, registers through sync regs);
- runsc: gVisor's ``runsc --platform=ptrace --network=none do``, if present.

No assertions on speed: these are measurements. pytest-benchmark times the
run at the larger N; ``extra_info["ns_per_call"]`` holds the figure.
"""

import os
import shutil
import statistics
import subprocess
import sys
import time

import pytest

N1, N2 = 2000, 22000
REPEATS = 3         # median of this many runs at each N


def wall_time(cmd):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, timeout=120)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        pytest.fail("%s exited %d: %s" % (cmd, proc.returncode, proc.stderr.decode()[-2000:]))
    return elapsed


def ns_per_call(command_for):
    """Median wall time at N2 minus that at N1, per call, in ns."""
    t1 = statistics.median(wall_time(command_for(N1)) for _ in range(REPEATS))
    t2 = statistics.median(wall_time(command_for(N2)) for _ in range(REPEATS))
    return (t2 - t1) * 1e9 / (N2 - N1)


def record(benchmark, results, label, command_for, ns):
    results[label] = ns
    benchmark.extra_info["ns_per_call"] = round(ns, 1)
    benchmark.extra_info["n"] = [N1, N2]
    benchmark.pedantic(wall_time, args=(command_for(N2),), rounds=1, iterations=1)


@pytest.fixture(scope="module")
def loop(build_c):
    return build_c("getpid_loop", static=True)


def test_getpid_native(benchmark, results, loop):
    def command(n):
        return [loop, str(n)]
    record(benchmark, results, "native", command, ns_per_call(command))


def test_getpid_pyvisor(benchmark, results, loop):
    def command(n):
        return [sys.executable, "-m", "pyvisor", "run", "--", loop, str(n)]
    record(benchmark, results, "pyvisor", command, ns_per_call(command))


def test_getpid_ptrace_floor(benchmark, results, build_c):
    floor = build_c("ptrace_floor", static=False)

    def command(n):
        return [floor, str(n)]

    # The floor program times its own loop: no process start-up to subtract.
    samples = [float(subprocess.run(command(N2), capture_output=True, check=True,
                                    timeout=60).stdout) for _ in range(REPEATS)]
    record(benchmark, results, "floor", command, statistics.median(samples))


def test_getpid_runsc(benchmark, results, loop):
    runsc = shutil.which("runsc")
    if runsc is None:
        pytest.skip("runsc (gVisor) not on PATH")
    if os.geteuid() != 0:
        pytest.skip("runsc do needs root")

    def command(n):
        return [runsc, "--platform=ptrace", "--network=none", "do", loop, str(n)]
    record(benchmark, results, "runsc", command, ns_per_call(command))



def test_getpid_kvm_floor(benchmark, results, build_c):
    """bench/c/kvm_floor.c: LSTAR -> user trampoline -> MMIO exit, sync regs; no Sentry."""
    from pyvisor.platform import kvm_usable
    ok, why = kvm_usable()
    if not ok:
        pytest.skip(why)
    floor = build_c("kvm_floor", static=False)

    def command(n):
        return [floor, str(n)]

    # Like the ptrace floor, it times its own loop.
    samples = [float(subprocess.run(command(N2), capture_output=True, check=True,
                                    timeout=60).stdout) for _ in range(REPEATS)]
    record(benchmark, results, "kvm floor", command, statistics.median(samples))
