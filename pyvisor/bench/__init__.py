"""`pyvisor bench`: what a system call and a real program cost, against native.

Every figure is measured the way a user pays it: whole processes, started
from the host and timed from outside by wall clock.

- **Microbenchmarks** (``bench/c/micro.c``): one operation, N times inside
  one process. Each runs at two N; the difference in wall time over the
  difference in N is the cost of one operation, so start-up cancels out.
  Reported in µs per operation, the median of several runs at each N.
- **Floors**: C programs that do only the round trip a platform needs, with
  no Sentry at all (``bench/c/ptrace_floor.c``, ``bench/c/kvm_floor.c``).
  They time their own loop and print ns per call.
- **Workloads**: real programs, whole-process wall time in ms (median), plus
  start-up (``/bin/true``) and memory (sum of RSS of every process of the
  sandbox while it runs ``sleep 2``, in MB).

Platforms (columns): ``native``; ``native-1cpu`` (``taskset -c 0``, the
pinned figure: a wake-up across CPUs costs 15-20 µs on these VMs);
``ptrace`` and ``kvm`` (``python -m pyvisor run --platform X --``, exactly
as users run it; pyvisor pins itself); ``runsc`` and ``runsc-1cpu`` (gVisor,
``runsc --platform=ptrace --network=none do``). A platform that cannot run
here is skipped with its reason, and a figure that fails is recorded as
failed with the tail of its stderr: the rest of the suite still runs.

Output: a table (rich if installed), pytest-benchmark-compatible JSON, an
optional PNG chart (matplotlib) and markdown, and ``--compare BASELINE``
which exits 1 when a ratio to native grew by more than 25%.

Heavy imports (rich, matplotlib) stay inside functions: ``pyvisor run``
imports cli.py, never this module.
"""

import datetime
import json
import os
import sys
import time

from pyvisor.bench.figures import labels
from pyvisor.bench.report import (BadBaseline, compare, document, load_baseline, markdown_table,
                                  plot, print_comparison, render_table)
from pyvisor.bench.run import C_DIR, PLATFORM_ORDER, QUICK_PLATFORMS, FULL, QUICK, available_platforms
from pyvisor.bench.suite import Suite

EX_OK, EX_REGRESSION, EX_USAGE = 0, 1, 2


# --- the command -------------------------------------------------------------

def main(args):
    """Runs `pyvisor bench`; returns the exit code (0, 1 on regression, 2 on bad input)."""
    if not os.path.isdir(C_DIR):
        sys.stderr.write("pyvisor bench: the benchmark sources (%s) are missing: "
                         "install pyvisor again\n" % C_DIR)
        return EX_USAGE
    baseline = None
    if args.compare:
        try:
            baseline = load_baseline(args.compare)
        except BadBaseline as e:
            sys.stderr.write("pyvisor bench: %s\n" % e)
            return EX_USAGE
    if args.plot and not _have_matplotlib():
        sys.stderr.write("pyvisor bench: --plot needs matplotlib "
                         "(pip install 'pyvisor[plot]')\n")
        return EX_USAGE
    unknown = set(args.only or ()) - set(labels())
    if unknown:
        sys.stderr.write("pyvisor bench: unknown figure(s) %s; known: %s\n"
                         % (", ".join(sorted(unknown)), ", ".join(labels())))
        return EX_USAGE
    wanted = set(args.platform or (QUICK_PLATFORMS if args.quick else PLATFORM_ORDER))
    wanted.add("native")
    platforms, skipped = available_platforms(wanted)
    settings = QUICK if args.quick else FULL
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    suite = Suite(platforms, skipped, settings, only=args.only, log=_stderr_log)
    suite.run()
    doc = document(suite, "quick" if args.quick else "full", started)
    render_table(doc["pyvisor"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown_table(doc["pyvisor"]))
    if args.plot:
        plot(doc["pyvisor"], args.plot)
    if baseline is not None:
        if baseline.get("mode") != doc["pyvisor"]["mode"]:
            sys.stdout.write("note: the baseline is a %s run, this is a %s run; quick runs use "
                             "smaller inputs for some workloads\n"
                             % (baseline.get("mode", "unknown"), doc["pyvisor"]["mode"]))
        rows = compare(doc["pyvisor"], baseline)
        print_comparison(rows, sys.stdout)
        if any(r[-1] for r in rows):
            return EX_REGRESSION
    return EX_OK



def _have_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


_T0 = time.monotonic()


def _stderr_log(msg):
    sys.stderr.write("bench %5.0fs: %s\n" % (time.monotonic() - _T0, msg))
    sys.stderr.flush()
