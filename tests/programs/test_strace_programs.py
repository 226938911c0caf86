"""`pyvisor run --strace` against real strace(1) for the same program
(tests/c/strace_sig.c): the lines people read most — execve, sigaction
structs, signal delivery (`--- SIG {siginfo} ---`), wait4's status, exits
(`+++ exited with N +++`, `+++ killed by SIG +++`) — must read the same
once addresses, pids and the environment's size are normalised."""

import os
import re
import shutil
import subprocess

import pytest

from conftest import BASE_ENV, TESTS_DIR

STRACE = shutil.which("strace")
pytestmark = pytest.mark.skipif(STRACE is None, reason="strace not installed (Debian package strace)")

# The calls compared (the loader's and libc's start-up differ between a host
# and a sandbox, and are not what this test is about).
KEEP = re.compile(r"^(execve|rt_sigaction\(SIG(USR1|PIPE)|kill|tgkill|wait4|fadvise64|"
                  r"exit_group|rt_sigreturn|---|\+\+\+)")


def normalise(text, native):
    """Lines of one strace output in a comparable form: no pid prefix (the
    native `-o` file's "PID " or our "[pid N] "), pids as P, addresses as A,
    the environment's size as N."""
    pids = {}
    out = []
    for line in text.splitlines():
        if native:
            pid, _, line = line.partition(" ")
            line = line.lstrip()
        else:
            m = re.match(r"\[pid +(\d+)\] (.*)", line)
            pid, line = (m.group(1), m.group(2)) if m else ("1", line)
        if not KEEP.match(line):
            continue
        line = re.sub(r"0x[0-9a-f]+", "A", line)
        line = re.sub(r"/\* \d+ vars \*/", "/* N vars */", line)
        line = re.sub(r"si_pid=\d+", "si_pid=P", line)
        line = re.sub(r"^(t?g?kill)\(\d+(, \d+)?", lambda m: m.group(1) + "(P" + (", P" if m.group(2) else ""), line)
        line = re.sub(r"^wait4\(\d+(.*) = \d+$", r"wait4(P\1 = P", line)
        line = re.sub(r" {2,}= ", " = ", line)
        pids.setdefault(pid, len(pids))
        out.append((pids[pid], line))
    return sorted(out)


def run_both(sandbox, build_c, tmp_path, *args):
    prog = build_c(os.path.join(TESTS_DIR, "c", "strace_sig.c"))
    native_out = tmp_path / "native.txt"
    ours_out = tmp_path / "ours.txt"
    native = subprocess.run([STRACE, "-f", "-o", str(native_out), prog, *args],
                            env=BASE_ENV, capture_output=True, timeout=60)
    ours = sandbox.run([prog, *args], options=("--strace=%s" % ours_out,))
    # strace kills itself with the signal that killed its tracee; pyvisor exits 128+N.
    want = 128 - native.returncode if native.returncode < 0 else native.returncode
    assert ours.returncode == want, ours.stderr.decode()[-2000:]
    return (normalise(native_out.read_text(), True), normalise(ours_out.read_text(), False))


def test_signals_children_and_exit_read_as_strace(sandbox, build_c, tmp_path):
    native, ours = run_both(sandbox, build_c, tmp_path)
    assert [line for _, line in ours] == [line for _, line in native]
    lines = [line for _, line in ours]
    prog = build_c(os.path.join(TESTS_DIR, "c", "strace_sig.c"))
    first = [line for line in lines if line.startswith('execve("%s", [' % prog)]
    assert len(first) == 1 and first[0].endswith("], A /* N vars */) = 0")   # the loader's exec
    assert "+++ exited with 5 +++" in lines and "+++ killed by SIGTERM +++" in lines
    assert "wait4(P, [{WIFEXITED(s) && WEXITSTATUS(s) == 3}], 0, NULL) = P" in lines


def test_a_fault_reads_as_strace(sandbox, build_c, tmp_path):
    native, ours = run_both(sandbox, build_c, tmp_path, "crash")
    assert [line for _, line in ours] == [line for _, line in native]
    assert "--- SIGSEGV {si_signo=SIGSEGV, si_code=SEGV_MAPERR, si_addr=NULL} ---" in \
        [line for _, line in ours]
