"""How a figure is measured: the platforms, timing whole processes from
outside, and the programs and inputs the workloads run."""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from pyvisor.bench.figures import Failed, Result



def _c_dir():
    """The benchmark C programs: installed with the package (setup.py copies
    the checkout's bench/c into pyvisor/bench/c), or bench/c of a checkout
    (a build in place). A .c file under pyvisor/ in git reads as generated."""
    here = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(here, "c")
    checkout = os.path.join(os.path.dirname(os.path.dirname(here)), "bench", "c")
    return installed if os.path.isdir(installed) else checkout


C_DIR = _c_dir()
TIMEOUT = 60                    # seconds before one process counts as hung
SCRATCH = "/var/tmp"            # the sandbox's / is the host's, read-only; its /tmp is its own


# --- platforms ---------------------------------------------------------------

@dataclass(frozen=True)
class Platform:
    """How to run a host argv on one platform: prefix + argv."""
    name: str
    prefix: tuple
    pyvisor: bool = False

    def command(self, argv, volume=None):
        """volume: a host directory the program reaches at the same path,
        served read-write as a volume (pyvisor -v; runsc do has no bind
        mount option, so its root is written through to the host instead:
        --force-overlay=false; natively it is just there)."""
        prefix = list(self.prefix)
        if volume is not None:
            if self.pyvisor:
                prefix[-1:] = ["-v", "%s:%s" % (volume, volume), "--"]
            elif self.name.startswith("runsc"):
                prefix.append("--force-overlay=false")
        return prefix + list(argv)


PLATFORM_ORDER = ("native", "native-1cpu", "ptrace", "kvm", "runsc", "runsc-1cpu")
PYVISOR_PLATFORMS = ("ptrace", "kvm")
QUICK_PLATFORMS = ("native", "ptrace", "runsc")     # --quick: CI smoke, under 2 minutes


def available_platforms(wanted):
    """([Platform], {name: reason skipped}) for the platform names in wanted."""
    found, skipped = [], {}
    taskset = shutil.which("taskset")
    for name in PLATFORM_ORDER:
        if name not in wanted:
            continue
        why = _why_not(name, taskset)
        if why:
            skipped[name] = why
            continue
        pin = (taskset, "-c", str(_first_cpu())) if name.endswith("-1cpu") else ()
        if name.startswith("native"):
            found.append(Platform(name, pin))
        elif name in PYVISOR_PLATFORMS:
            found.append(Platform(name, (sys.executable, "-m", "pyvisor", "run", "--platform",
                                         name, "--"), pyvisor=True))
        else:
            found.append(Platform(name, pin + (shutil.which("runsc"), "--platform=ptrace",
                                               "--network=none", "do")))
    return found, skipped


def _why_not(name, taskset):
    """Why platform NAME cannot run here, or "" if it can."""
    if name.endswith("-1cpu") and taskset is None:
        return "taskset (util-linux) is not installed"
    if name == "kvm":
        from pyvisor.platform import kvm_usable
        ok, why = kvm_usable()
        return "" if ok else why
    if name.startswith("runsc"):
        if shutil.which("runsc") is None:
            return "runsc (gVisor) is not on PATH"
        if os.geteuid() != 0:
            return "runsc do needs root"
    return ""


def _first_cpu():
    return min(os.sched_getaffinity(0))


# --- running and timing ------------------------------------------------------

def run_timed(cmd, stdin=None, drain=False, timeout=TIMEOUT):
    """Wall seconds for cmd to run to exit 0. Raises Failed otherwise.

    drain: read stdout through a pipe and discard it (so a program cannot
    notice that it writes to /dev/null, as GNU tar does, and skip the work).
    A command still running after timeout seconds is killed with its whole
    process group (it runs in a session of its own) and reported as failed.
    stderr goes to a file, so that a chatty program cannot block on it.
    """
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(cmd, stdin=stdin or subprocess.DEVNULL, stderr=err,
                                    stdout=subprocess.PIPE if drain else subprocess.DEVNULL,
                                    start_new_session=True)
        except OSError as e:
            raise Failed("%s: %s" % (" ".join(cmd), e)) from e
        try:
            if drain:
                _drain(proc.stdout, t0 + timeout)
            proc.wait(timeout=max(t0 + timeout - time.perf_counter(), 0.01))
        except subprocess.TimeoutExpired as e:
            _kill_group(proc)
            raise Failed("%s: timed out after %d s (killed)" % (" ".join(cmd), timeout)) from e
        finally:
            if proc.stdout:
                proc.stdout.close()
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            err.seek(0)
            raise Failed("%s: exit %d: %s" % (" ".join(cmd), proc.returncode, stderr_tail(err.read())))
    return elapsed


def _drain(pipe, deadline):
    """Reads pipe to EOF and drops the data; TimeoutExpired past deadline."""
    import selectors
    with selectors.DefaultSelector() as sel:
        sel.register(pipe, selectors.EVENT_READ)
        while True:
            left = deadline - time.perf_counter()
            if left <= 0 or not sel.select(left):
                raise subprocess.TimeoutExpired("drain", 0)
            if not os.read(pipe.fileno(), 1 << 16):
                return


def _kill_group(proc):
    try:
        os.killpg(proc.pid, 9)
    except ProcessLookupError:
        pass
    proc.wait()


def stderr_tail(data, lines=5):
    text = data.decode(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:]) if text else "(no stderr)"


@dataclass(frozen=True)
class Settings:
    """How hard to try: repeats per point and the least loop time to trust."""
    repeats: int
    min_delta: float            # seconds the N2 run must take longer than N1
    scale: float                # times the starting N of each microbenchmark
    workload_repeats: int
    quick: bool = False         # smaller inputs where a workload is long (tar)
    timeout: float = TIMEOUT    # seconds before one process counts as hung
    shared_startup: bool = False  # subtract one start-up per platform, not a run at N1


FULL = Settings(repeats=3, min_delta=0.3, scale=1.0, workload_repeats=3)
QUICK = Settings(repeats=1, min_delta=0.1, scale=1.0, workload_repeats=1, quick=True,
                 timeout=60, shared_startup=True)


def per_op_us(command_for, n, settings, startup=None):
    """(µs per operation, [samples], [N1, N2]) from wall time at two N.

    Full runs time N and 5N, several times each. Quick runs time 5N once and
    take N1 = 0 from startup (seconds, the platform's start-up measured once
    with N = 0) instead, which halves the process starts. N grows (up to 64x)
    until the difference reaches min_delta, so that the loop, not start-up
    noise, dominates it.
    """
    def low(count):
        return startup if startup is not None else run_timed(command_for(count),
                                                             timeout=settings.timeout)
    for attempt in range(4):
        t1 = low(n)
        t2 = run_timed(command_for(5 * n), timeout=settings.timeout)
        if t2 - t1 >= settings.min_delta or attempt == 3:
            break
        n *= 4
    lows, highs = [t1], [t2]
    for _ in range(settings.repeats - 1):
        lows.append(low(n))
        highs.append(run_timed(command_for(5 * n), timeout=settings.timeout))
    n1 = 0 if startup is not None else n
    # Each pair runs back to back, so it shares the machine's load of the moment.
    samples = [(h - l) * 1e6 / (5 * n - n1) for l, h in zip(lows, highs)]
    return statistics.median(samples), samples, [n1, 5 * n]


def measure(fn):
    """Result from fn() -> (value, samples, extra); Failed becomes status failed."""
    try:
        value, samples, extra = fn()
    except Failed as e:
        return Result("failed", reason=str(e)[:1500])
    if not value > 0:
        return Result("failed", reason="measured %r: not a positive figure (too noisy?)" % value)
    return Result("ok", value, samples, extra=extra)


# --- the programs ------------------------------------------------------------

class Workdir:
    """Built binaries and generated inputs, under /var/tmp so sandboxes see them."""

    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="pyvisor-bench-", dir=SCRATCH)
        os.chmod(self.path, 0o755)

    def file(self, name):
        return os.path.join(self.path, name)

    def build(self, name, static=True, libs=()):
        """Path of bench/c/NAME.c built with gcc -O2. Raises Failed."""
        gcc = shutil.which("gcc")
        if gcc is None:
            raise Failed("gcc is not installed")
        out = self.file(name)
        if not os.path.exists(out):
            cmd = [gcc, "-O2", "-Wall", "-pthread", "-o", out,
                   os.path.join(C_DIR, name + ".c")] + list(libs)
            proc = subprocess.run(cmd + (["-static"] if static else []), capture_output=True)
            if proc.returncode != 0:
                raise Failed("%s: %s" % (" ".join(cmd), stderr_tail(proc.stderr)))
        return out

    def close(self):
        shutil.rmtree(self.path, ignore_errors=True)


def generate_inputs(work):
    """Writes the workloads' inputs into work; returns {name: path}."""
    paths = {"gzip": work.file("data.txt"), "sql": work.file("insert.sql"),
             "hello": work.file("hello.c"), "make": work.file("proj")}
    with open(paths["gzip"], "wb") as f:          # 10 MB of text-like, compressible data
        line = 0
        while f.tell() < 10 * 1000 * 1000:
            f.write(b"%08d the quick brown fox %x jumps over %d lazy dogs\n"
                    % (line, line * 2654435761 % (1 << 32), line % 977))
            line += 1
    with open(paths["sql"], "w") as f:
        f.write("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n INTEGER);\nBEGIN;\n")
        for i in range(10000):
            f.write("INSERT INTO t (name, n) VALUES ('row %d', %d);\n" % (i, i * 7 % 1000))
        f.write("COMMIT;\nSELECT count(*) FROM t;\n")
    hello = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'
    with open(paths["hello"], "w") as f:
        f.write(hello)
    _write_make_project(paths["make"])
    return paths


def _write_make_project(root):
    """A small C project whose Makefile writes every output under $(OUT)."""
    os.makedirs(root, exist_ok=True)
    names = ["util", "list", "hash", "parse", "main"]
    for name in names[:-1]:
        with open(os.path.join(root, name + ".c"), "w") as f:
            f.write("#include <stdio.h>\n#include <string.h>\n#include <stdlib.h>\n")
            f.write("int %s_fn(int x) { char b[64]; snprintf(b, sizeof b, \"%%d\", x);"
                    " return (int)strlen(b) + atoi(b); }\n" % name)
    with open(os.path.join(root, "main.c"), "w") as f:
        f.write("#include <stdio.h>\n")
        f.write("".join("int %s_fn(int);\n" % n for n in names[:-1]))
        f.write("int main(void) { printf(\"%%d\\n\", %s); return 0; }\n"
                % " + ".join("%s_fn(3)" % n for n in names[:-1]))
    objs = " ".join("$(OUT)/%s.o" % n for n in names)
    with open(os.path.join(root, "Makefile"), "w") as f:
        f.write("OUT ?= /tmp/proj\nCFLAGS = -O2 -Wall\n\n$(OUT)/prog: %s\n"
                "\t$(CC) -o $@ $^\n\n$(OUT)/%%.o: %%.c | $(OUT)\n\t$(CC) $(CFLAGS) -c -o $@ $<\n\n"
                "$(OUT):\n\tmkdir -p $(OUT)\n" % objs)


def generate_volume_inputs(work, quick=False):
    """The volume workloads' inputs, in work: the volume directory, a
    tarball of /usr/include (quick: /usr/include/linux), a committed git
    repository of 5,000 files in the volume (quick: 500) and a file to read
    of 1 GiB (quick: 64 MiB). Returns {name: path}."""
    vol = work.file("vol")
    os.makedirs(vol, exist_ok=True)
    paths = {"vol": vol, "tarball": work.file("include.tar"), "repo": os.path.join(vol, "repo"),
             "big": os.path.join(vol, "big-read")}
    _check_run(["tar", "cf", paths["tarball"], "-C", "/",
                "usr/include/linux" if quick else "usr/include"])
    _write_git_repo(paths["repo"], 500 if quick else 5000)
    chunk = bytes(range(256)) * 4096                   # 1 MiB
    with open(paths["big"], "wb") as f:
        for _ in range(VOLUME_MB_QUICK if quick else VOLUME_MB):
            f.write(chunk)
    return paths


VOLUME_MB, VOLUME_MB_QUICK = 1024, 64
_GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid",
        "-c", "safe.directory=*", "-c", "gc.auto=0"]


def _check_run(cmd, cwd=None):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True)
    if proc.returncode != 0:
        raise Failed("%s: exit %d: %s" % (" ".join(cmd), proc.returncode, stderr_tail(proc.stderr)))


def _write_git_repo(root, files):
    """A repository of `files` small files, 100 to a directory, committed;
    git status run once so that its index holds every file's stat data."""
    os.makedirs(root)
    for i in range(files):
        d = os.path.join(root, "d%03d" % (i // 100))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "f%05d.c" % i), "w") as f:
            f.write("int f%d(void) { return %d; }\n" % (i, i * 7 % 1000))
    _check_run(_GIT + ["init", "-q"], cwd=root)
    _check_run(_GIT + ["add", "."], cwd=root)
    _check_run(_GIT + ["commit", "-q", "-m", "bench"], cwd=root)
    _check_run(_GIT + ["status", "-s"], cwd=root)


def _scratch_name(tag):
    """A fresh name under /tmp: the sandbox's own tmpfs, the host's /tmp natively."""
    return "/tmp/pyvisor-bench-%s-%d-%d" % (tag, os.getpid(), time.monotonic_ns())


def workload_argv(key, paths, quick=False):
    """(argv, stdin path or None, drain stdout, scratch path to remove) for workload KEY.

    quick: tar archives /usr/include/linux only (the same kind of work, less of it).
    A volume workload's scratch path is in the volume (paths["vol"])."""
    py = shutil.which("python3") or sys.executable
    out = _scratch_name(key)
    if key.startswith("vol_"):
        out = os.path.join(paths["vol"], os.path.basename(out))
        mb = VOLUME_MB_QUICK if quick else VOLUME_MB
        dd = shutil.which("dd") or "dd"
        vol_table = {
            "vol_tar_x": ([shutil.which("tar") or "tar", "xf", paths["tarball"], "-C", out],
                          None, False),
            "vol_git_status": ([shutil.which("git") or "git", *_GIT[1:], "-C", paths["repo"],
                                "status"], None, True),
            "vol_sqlite_10k": ([shutil.which("sqlite3") or "sqlite3", out + ".db"], paths["sql"],
                               False),
            "vol_write_1g": ([dd, "if=/dev/zero", "of=" + out, "bs=1M", "count=%d" % mb,
                              "status=none"], None, False),
            "vol_read_1g": ([dd, "if=" + paths["big"], "of=/dev/null", "bs=1M", "status=none"],
                            None, False),
        }
        argv, stdin, drain = vol_table[key]
        if key == "vol_tar_x":
            os.mkdir(out)
        return argv, stdin, drain, out
    table = {
        "startup": (["/bin/true"], None, False),
        "python_pass": ([py, "-c", "pass"], None, False),
        "python_import": ([py, "-c", "import json, sqlite3, hashlib"], None, False),
        "sqlite_10k": ([shutil.which("sqlite3") or "sqlite3", out + ".db"], paths["sql"], False),
        "gzip_10m": ([shutil.which("gzip") or "gzip", "-9", "-c", paths["gzip"]], None, True),
        "busybox_loop": ([shutil.which("busybox") or "busybox", "sh", "-c",
                          "i=0; while [ $i -lt 1000 ]; do i=$((i+1)); echo $i >/dev/null; done"],
                         None, False),
        "gcc_hello": ([shutil.which("gcc") or "gcc", "-o", out, paths["hello"]], None, False),
        "make_j2": ([shutil.which("make") or "make", "-s", "-C", paths["make"], "-j2",
                     "OUT=" + out], None, False),
        "tar_include": ([shutil.which("tar") or "tar", "cf", "-",
                         "/usr/include/linux" if quick else "/usr/include"], None, True),
    }
    argv, stdin, drain = table[key]
    return argv, stdin, drain, out


def time_workload(plat, key, paths, settings):
    """Median wall ms of workload KEY on plat."""
    samples = []
    for _ in range(settings.workload_repeats):
        argv, stdin, drain, out = workload_argv(key, paths, settings.quick)
        cmd = plat.command(argv, paths["vol"] if key.startswith("vol_") else None)
        try:
            if stdin:
                with open(stdin, "rb") as f:
                    samples.append(run_timed(cmd, stdin=f, drain=drain,
                                             timeout=settings.timeout) * 1e3)
            else:
                samples.append(run_timed(cmd, drain=drain, timeout=settings.timeout) * 1e3)
        finally:
            _remove(out)
    return statistics.median(samples), samples, {}


def _remove(path):
    """Removes what a native run left under /tmp (a sandbox's tmpfs goes with it)."""
    for p in (path, path + ".db"):
        if os.path.isdir(p):
            shutil.rmtree(p, ignore_errors=True)
        elif os.path.exists(p):
            os.unlink(p)


def memory_mb(plat):
    """Sum of VmRSS (MB) of the process tree running ``sleep 2``, sampled at 1.2 s."""
    sleep = shutil.which("sleep") or "/bin/sleep"
    proc = subprocess.Popen(plat.command([sleep, "2"]), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(1.2)
        pids = [proc.pid] + _descendants(proc.pid)
        kb = sum(_rss_kb(pid) for pid in pids)
        _, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        proc.kill()
        proc.communicate()
        raise Failed("sleep 2: timed out") from e
    if proc.returncode != 0:
        raise Failed("%s: exit %d: %s" % (" ".join(plat.command([sleep, "2"])),
                                          proc.returncode, stderr_tail(err)))
    return kb / 1024, [kb / 1024], {"processes": len(pids)}


def _descendants(root):
    """Every live descendant of pid root, from /proc/*/stat."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def pyvisor_pids(root):
    """root and its descendants that are pyvisor's own processes (the Sentry; not the Gofer)."""
    pids = []
    for pid in [root, *_descendants(root)]:
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"pyvisor" in cmd and b"gofer" not in cmd:
            pids.append(pid)
    return pids


def _rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
