"""Fixtures for the benchmarks: C programs built on demand, and a summary table.

Benchmarks are not part of the default test run (testpaths = tests); run them
with ``pytest bench/``. Figures go into ``benchmark.extra_info`` and into
``RESULTS``, which the terminal summary prints as a table of ratios.
"""

import os
import shutil
import subprocess
import tempfile

import pytest

from pyvisor.bench.run import C_DIR

RESULTS = {}        # label -> ns per call, filled by the benchmarks


@pytest.fixture(scope="session")
def results():
    """The label -> ns-per-call dict that the terminal summary prints."""
    return RESULTS


@pytest.fixture(scope="session")
def build_c():
    """build_c(name, static=True) -> path of bench/c/NAME.c built with gcc -O2.

    Built below /var/tmp: a sandbox's /tmp is its own tmpfs, /var/tmp is the host's."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not installed")
    outdir = tempfile.mkdtemp(prefix="pyvisor-bench-", dir="/var/tmp")

    def build(name, static=True):
        out = os.path.join(outdir, name)
        if not os.path.exists(out):
            cmd = [gcc, "-O2", "-Wall", "-o", out, os.path.join(C_DIR, name + ".c")]
            subprocess.run(cmd + (["-static"] if static else []), check=True, capture_output=True)
        return out

    yield build
    shutil.rmtree(outdir, ignore_errors=True)


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("getpid: ns per call")
    for label, ns in RESULTS.items():
        write("  %-22s %10.0f ns" % (label, ns))
    ours = RESULTS.get("pyvisor")
    for other in ("floor", "runsc", "native"):
        if ours and RESULTS.get(other):
            write("  pyvisor / %-11s %10.2fx" % (other, ours / RESULTS[other]))
