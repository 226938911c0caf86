"""`--file-access-mounts exclusive` against `shared`: what revalidation costs.

    python bench/file_access_modes.py [--platform ptrace|kvm] [--runs N]

In a volume (-v DIR:/mnt/vol): stat(2) of a file two directories down
(/mnt/vol/d1/d2/file) and open+close of it, each per call (bench/c/
micro.c run at two counts, the difference in wall time divided by the
difference in count, so start-up cancels out); and the wall time of tar x
of a small tarball (/usr/include/linux, about 600 files) into the volume,
then rm -rf of what it made. Native rows run the same programs on the same
directory. docs/performance.md has the figures.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

MICRO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyvisor", "bench", "c",
                     "micro.c")
N1, N2 = 1000, 6000
MNT = "/mnt/vol"


def _timed(argv):
    start = time.monotonic()
    r = subprocess.run(argv, cwd="/", capture_output=True)
    if r.returncode:
        raise SystemExit("%s: exit %d: %s" % (argv, r.returncode, r.stderr.decode()[-300:]))
    return time.monotonic() - start


def _wrap(platform, mode, vol, argv):
    if mode == "native":
        return argv
    return [sys.executable, "-m", "pyvisor", "run", "--platform", platform, "-v",
            vol + ":" + MNT, "--file-access-mounts", mode, "--", *argv]


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--platform", default="ptrace", choices=["ptrace", "kvm"])
    p.add_argument("--runs", type=int, default=3, help="runs of each (the median is shown)")
    args = p.parse_args()
    where = tempfile.mkdtemp(prefix="pyvisor-fa-bench-", dir="/var/tmp")
    try:
        micro = os.path.join(where, "micro")
        subprocess.run(["gcc", "-O2", "-static", "-o", micro, MICRO, "-lpthread"], check=True)
        vol = os.path.join(where, "vol")
        os.makedirs(os.path.join(vol, "d1", "d2"))
        with open(os.path.join(vol, "d1", "d2", "file"), "w") as f:
            f.write("x" * 100)
        tarball = os.path.join(where, "linux.tar")
        subprocess.run(["tar", "cf", tarball, "-C", "/usr/include", "linux"], check=True)
        print("| %s, median of %d | native | exclusive | shared | shared/exclusive |"
              % (args.platform, args.runs))
        print("|---|---|---|---|---|")
        for op in ("stat", "open"):
            row = {}
            for mode in ("native", "exclusive", "shared"):
                path = os.path.join(vol if mode == "native" else MNT, "d1", "d2", "file")

                def per_call():
                    t1 = _timed(_wrap(args.platform, mode, vol, [micro, op, str(N1), path]))
                    t2 = _timed(_wrap(args.platform, mode, vol, [micro, op, str(N2), path]))
                    return (t2 - t1) / (N2 - N1) * 1e6
                row[mode] = _median([per_call() for _ in range(args.runs)])
            print("| %s of a volume file, us/call | %.2f | %.1f | %.1f | %.2f |" % (
                op, row["native"], row["exclusive"], row["shared"],
                row["shared"] / row["exclusive"]), flush=True)
        row = {}
        for mode in ("native", "exclusive", "shared"):
            dest = vol if mode == "native" else MNT
            script = "tar xf %s -C %s && rm -rf %s/linux" % (tarball, dest, dest)
            row[mode] = _median([_timed(_wrap(args.platform, mode, vol, ["/bin/sh", "-c", script]))
                                 for _ in range(args.runs)])
        print("| tar x of /usr/include/linux + rm -rf, s | %.2f | %.2f | %.2f | %.2f |" % (
            row["native"], row["exclusive"], row["shared"], row["shared"] / row["exclusive"]))
    finally:
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
