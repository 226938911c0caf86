"""The syscall fuzzer (tests/c/fuzz.c) against the Sentry: no input crashes it.

The fuzzer makes random system calls with random arguments in forked
children, from a fixed seed, and prints a summary line. A run passes when
pyvisor exits with the fuzzer's own status (0), printed no Sentry failure or
traceback, the summary counts the calls asked for, and (the runner checks)
no process is left behind. docs/security.md records longer runs.

The fuzzer must refuse to run natively: as root it would change the host's
files and credentials at random.
"""

import os
import re
import subprocess

import pytest
from conftest import TESTS_DIR

HERE = TESTS_DIR
SUMMARY = re.compile(rb"^fuzz: seed (\d+) calls (\d+) children (\d+) signaled (\d+) "
                     rb"watchdog (\d+) seconds ([\d.]+)$", re.M)
# (calls, seed) per platform. ptrace serves about 10,000 calls a second
# here; KVM is slower per call.
RUNS = {"ptrace": (100_000, 1), "kvm": (50_000, 1)}


@pytest.fixture(scope="module")
def fuzz(build_c):
    return build_c(os.path.join(HERE, "c", "fuzz.c"))


def test_refuses_to_run_natively(fuzz, tmp_path):
    seed = "987654321"
    scratch = "/tmp/fuzz-" + seed               # what a run would make first
    assert not os.path.exists(scratch)
    proc = subprocess.run([fuzz, seed, "1000", "10"], cwd=str(tmp_path), capture_output=True,
                          env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"}, timeout=30)
    assert proc.returncode != 0
    assert b"refusing to run: not inside pyvisor" in proc.stderr
    assert proc.stdout == b""                   # no summary: not a single call made
    assert not os.path.exists(scratch)           # not even its scratch directory
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_fuzz_does_not_crash_the_sentry(sandbox, fuzz):
    calls, seed = RUNS[sandbox.platform]
    proc = sandbox.run([fuzz, str(seed), str(calls), "200"], timeout=240)
    err = proc.stderr.decode(errors="replace")
    assert b"Sentry failure" not in proc.stderr, err
    assert b"Traceback" not in proc.stderr, err
    assert proc.returncode == 0, err
    m = SUMMARY.search(proc.stdout)
    assert m, proc.stdout
    assert proc.stdout == m.group(0) + b"\n"        # the batches' own output went to /dev/null
    assert int(m.group(1)) == seed
    assert int(m.group(2)) == calls, proc.stdout     # all of them, within the time bound
    assert int(m.group(3)) >= calls // 500           # batches of at most 500 calls
