"""Real programs with more threads than vCPUs (tests/c/kvm_threads.c), run
natively and sandboxed on both platforms. On KVM the pool has two vCPUs per
host CPU: compute-bound threads beyond that must be preempted to run, and
threads blocked in a call must not hold one."""

import os
import subprocess

import pytest
from conftest import TESTS_DIR

HERE = TESTS_DIR


def _program(build_c):
    return build_c(os.path.join(HERE, "c", "kvm_threads.c"), static=True, extra=("-pthread",))


def _pool_size():
    from pyvisor.platform.kvm import default_pool_size
    return default_pool_size()


def _same(sandbox, argv, expect):
    native = sandbox.native(argv, timeout=60)
    boxed = sandbox.run(argv, timeout=120)
    assert (boxed.stdout, boxed.returncode) == (native.stdout, native.returncode), boxed.stderr
    assert boxed.stdout == expect


def test_more_spinning_threads_than_vcpus_all_progress(sandbox, build_c):
    n = 2 * _pool_size()
    _same(sandbox, [_program(build_c), "spin", str(n)], b"spin %d: all progressed\n" % n)


def test_64_threads_blocked_in_read(sandbox, build_c):
    _same(sandbox, [_program(build_c), "pipes", "64"], b"pipes 64: ok sum=2080\n")


@pytest.mark.parametrize("argv", [["spin"], ["spin", "0"], ["walk", "3"], ["pipes", "999"]])
def test_bad_arguments_are_refused(build_c, argv):
    """The program's own checks (natively: they do not depend on a platform)."""
    out = subprocess.run([_program(build_c)] + argv, capture_output=True, timeout=10)
    assert out.returncode == 2 and out.stderr and not out.stdout
