"""Programs on files in a volume (-v HOST:PATH), pytest-benchmark: the
`vol_*` workloads of `pyvisor bench` (pyvisor/bench/run.py makes the inputs
and the command lines), natively and on each pyvisor platform. The smaller
(--quick) inputs unless PYVISOR_BENCH_FULL=1: /usr/include/linux's tarball,
500 files, 64 MiB. docs/performance.md has a full run's figures.
"""

import os

import pytest

from pyvisor.bench.figures import WORKLOADS
from pyvisor.bench.run import (Workdir, available_platforms, generate_inputs,
                               generate_volume_inputs, run_timed, workload_argv, _remove)

QUICK = os.environ.get("PYVISOR_BENCH_FULL") != "1"
KEYS = [k for k, _ in WORKLOADS if k.startswith("vol_")]
PLATFORMS, _SKIPPED = available_platforms({"native", "ptrace", "kvm"})


@pytest.fixture(scope="module")
def inputs():
    work = Workdir()
    try:
        paths = generate_inputs(work)
        paths.update(generate_volume_inputs(work, QUICK))
        yield paths
    finally:
        work.close()


@pytest.mark.parametrize("plat", PLATFORMS, ids=[p.name for p in PLATFORMS])
@pytest.mark.parametrize("key", KEYS)
def test_volume_workload(benchmark, inputs, key, plat):
    def run():
        argv, stdin, drain, out = workload_argv(key, inputs, QUICK)
        try:
            if stdin:
                with open(stdin, "rb") as f:
                    return run_timed(plat.command(argv, inputs["vol"]), stdin=f, drain=drain,
                                     timeout=600)
            return run_timed(plat.command(argv, inputs["vol"]), drain=drain, timeout=600)
        finally:
            _remove(out)
    seconds = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update({"platform": plat.name, "quick": QUICK})
    assert seconds > 0
