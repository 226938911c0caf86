"""`--overlay memory` against `--overlay file`: wall time and the Sentry's peak RSS.

    python bench/overlay_modes.py [--platform ptrace|kvm] [--runs N]

Three programs write into the overlay's /tmp: 1 GiB written with dd and
read back through sha256sum; sqlite3 doing 10,000 inserts, each its own
transaction; tar x of a tarball of /usr/include. The inputs are made once in
a scratch directory below /var/tmp (the sandbox sees the host's /var/tmp
through the Gofer). RSS is the highest VmRSS of the run's pyvisor processes
(not the Gofer), sampled every 50 ms. docs/performance.md has the figures.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from pyvisor.bench.run import _rss_kb, pyvisor_pids

WORKLOADS = {
    "1 GiB write+read": "dd if=/dev/zero of=/tmp/ovl-big bs=1M count=1024 2>/dev/null && "
                        "sha256sum < /tmp/ovl-big && rm /tmp/ovl-big",
    "sqlite 10k inserts": "rm -f /tmp/ovl.db && sqlite3 /tmp/ovl.db < {dir}/inserts.sql",
    "tar x /usr/include": "mkdir /tmp/ovl-inc && tar xf {dir}/include.tar -C /tmp/ovl-inc",
}


def _inputs(where):
    with open(os.path.join(where, "inserts.sql"), "w") as f:
        f.write("create table t(a integer, b text);\n")
        for i in range(10000):
            f.write("insert into t values(%d, '%s');\n" % (i, "x" * 100))
    subprocess.run(["tar", "cf", os.path.join(where, "include.tar"), "-C", "/usr", "include"],
                   check=True)


def run_once(platform, mode, script):
    argv = [sys.executable, "-m", "pyvisor", "run", "--platform", platform, "--overlay", mode,
            "--", "/bin/sh", "-c", script]
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = [0]

    def sample():
        while proc.poll() is None:
            for pid in pyvisor_pids(proc.pid):
                peak[0] = max(peak[0], _rss_kb(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, err = proc.communicate()
    sampler.join()
    if proc.returncode:
        raise SystemExit("%s: exit %d: %s" % (script, proc.returncode, err.decode()[-300:]))
    return time.monotonic() - start, peak[0] / 1024


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--platform", default="ptrace", choices=["ptrace", "kvm"])
    p.add_argument("--runs", type=int, default=2, help="runs of each (the median is shown)")
    args = p.parse_args()
    where = tempfile.mkdtemp(prefix="pyvisor-ovl-bench-", dir="/var/tmp")
    try:
        _inputs(where)
        print("| %s | memory s | file s | memory RSS MiB | file RSS MiB |" % args.platform)
        print("|---|---|---|---|---|")
        for name, script in WORKLOADS.items():
            row = {}
            for mode in ("memory", "file"):
                runs = sorted(run_once(args.platform, mode, script.format(dir=where))
                              for _ in range(args.runs))
                row[mode] = runs[len(runs) // 2]
            print("| %s | %.2f | %.2f | %.0f | %.0f |" % (
                name, row["memory"][0], row["file"][0], row["memory"][1], row["file"][1]),
                flush=True)
    finally:
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
