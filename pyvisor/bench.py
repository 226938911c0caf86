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
import platform as host_platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

EX_OK, EX_REGRESSION, EX_USAGE = 0, 1, 2
SOURCE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


def _c_dir():
    """The benchmark C sources: installed with the package (setup.py copies
    bench/c to pyvisor/bench_c), or bench/c of a source checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    for d in (os.path.join(here, "bench_c"), os.path.join(SOURCE_DIR, "c")):
        if os.path.isdir(d):
            return d
    return os.path.join(SOURCE_DIR, "c")


C_DIR = _c_dir()
REGRESSION_LIMIT = 1.25         # a ratio to native this much larger than the baseline's fails
TIMEOUT = 60                    # seconds before one process counts as hung
SCRATCH = "/var/tmp"            # the sandbox's / is the host's, read-only; its /tmp is its own


# --- what is measured -------------------------------------------------------

@dataclass(frozen=True)
class Micro:
    """One microbenchmark: ``micro OP N [ARG]``; n is the starting N (full run)."""
    key: str
    label: str
    op: str
    n: int
    arg: str = ""
    pinning_matters: bool = False


MICROS = (
    Micro("getpid", "getpid", "getpid", 2000),
    Micro("pipe_rw_1", "pipe write+read 1 B", "pipe_1", 1000),
    Micro("pipe_rw_64k", "pipe write+read 64 KiB", "pipe_64k", 500),
    Micro("open_gofer", "openat+close, Gofer root", "open", 1000, "/etc/passwd"),
    Micro("open_tmpfs", "openat+close, tmpfs", "open_tmpfs", 1000),
    Micro("stat", "stat", "stat", 1000, "/etc/passwd"),
    Micro("mmap_4k", "mmap+touch+munmap 4 KiB", "mmap_4k", 1000),
    Micro("mmap_1m", "mmap+touch+munmap 1 MiB", "mmap_1m", 50),
    Micro("clock_gettime", "clock_gettime", "clock_gettime", 5000),
    Micro("fork_wait", "fork+wait", "fork", 50, pinning_matters=True),
    Micro("fork_exec_wait", "fork+exec+wait /bin/true", "exec", 20, pinning_matters=True),
    Micro("thread", "thread create+join", "thread", 200, pinning_matters=True),
    Micro("futex_pingpong", "futex ping-pong, 2 threads", "futex_pingpong", 500,
          pinning_matters=True),
    Micro("pipe_pingpong", "pipe ping-pong, 2 processes", "pipe_pingpong", 500,
          pinning_matters=True),
    Micro("signal", "signal delivery round trip", "signal", 1000),
)

FLOORS = (
    ("floor_1cpu", "syscall floor, C, 1 CPU"),
    ("floor_2cpu", "syscall floor, C, 2 CPUs"),
)

WORKLOADS = (
    ("startup", "start-up: /bin/true"),
    ("python_pass", "python3 -c pass"),
    ("python_import", "python3 -c 'import json, sqlite3, hashlib'"),
    ("sqlite_10k", "sqlite3: 10k inserts, file in /tmp"),
    ("gzip_10m", "gzip -9 of 10 MB"),
    ("busybox_loop", "busybox sh: 1,000-iteration loop"),
    ("gcc_hello", "gcc hello.c"),
    ("make_j2", "make -j2, small project"),
    ("tar_include", "tar c /usr/include"),
)
MEMORY = ("memory", "memory: RSS while running sleep 2")

UNITS = {"micro": "us", "floor": "us", "workload": "ms", "memory": "MB"}


@dataclass
class Result:
    """One figure on one platform: a value, or why there is none."""
    status: str                 # "ok" | "failed" | "skipped"
    value: float = 0.0
    samples: list = field(default_factory=list)
    reason: str = ""
    extra: dict = field(default_factory=dict)


class Failed(Exception):
    """A measured process failed; the message holds its command and stderr tail."""


# --- platforms ---------------------------------------------------------------

@dataclass(frozen=True)
class Platform:
    """How to run a host argv on one platform: prefix + argv."""
    name: str
    prefix: tuple
    pyvisor: bool = False

    def command(self, argv):
        return list(self.prefix) + list(argv)


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
            raise Failed("%s: exit %d: %s" % (" ".join(cmd), proc.returncode, _tail(err.read())))
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


def _tail(data, lines=5):
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
                raise Failed("%s: %s" % (" ".join(cmd), _tail(proc.stderr)))
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


def _scratch_name(tag):
    """A fresh name under /tmp: the sandbox's own tmpfs, the host's /tmp natively."""
    return "/tmp/pyvisor-bench-%s-%d-%d" % (tag, os.getpid(), time.monotonic_ns())


def workload_argv(key, paths, quick=False):
    """(argv, stdin path or None, drain stdout, scratch path to remove) for workload KEY.

    quick: tar archives /usr/include/linux only (the same kind of work, less of it)."""
    py = shutil.which("python3") or sys.executable
    out = _scratch_name(key)
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
        try:
            if stdin:
                with open(stdin, "rb") as f:
                    samples.append(run_timed(plat.command(argv), stdin=f, drain=drain,
                                             timeout=settings.timeout) * 1e3)
            else:
                samples.append(run_timed(plat.command(argv), drain=drain,
                                         timeout=settings.timeout) * 1e3)
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
                                          proc.returncode, _tail(err)))
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


def _rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# --- the suite ---------------------------------------------------------------

class Suite:
    """Runs every figure on every platform; results[figure][platform] = Result."""

    def __init__(self, platforms, skipped, settings, only=None, log=None):
        self.want = set(only) if only else set(labels())
        self.platforms = platforms
        self.skipped = skipped
        self.settings = settings
        self.log = log or (lambda msg: None)
        self.results = {}
        self.kinds = {}
        self.startups = {}

    def run(self):
        work = Workdir()
        try:
            micro = self._build(work, "micro")
            self._floors(work)
            paths = generate_inputs(work)
            for m in MICROS:
                if m.key in self.want:
                    self._micro(m, micro)
            for key, _ in WORKLOADS:
                if key in self.want:
                    self._each(key, "workload",
                               lambda p, k=key: time_workload(p, k, paths, self.settings))
            if MEMORY[0] in self.want:
                self._each(MEMORY[0], "memory", memory_mb)
        finally:
            work.close()
        return self.results

    def _build(self, work, name, **kw):
        try:
            return work.build(name, **kw)
        except Failed as e:
            self.log("cannot build %s: %s" % (name, e))
            return None

    def _set(self, key, kind, plat, result):
        self.kinds[key] = kind
        self.results.setdefault(key, {})[plat] = result
        shown = "%.4g" % result.value if result.status == "ok" else result.status
        self.log("%-16s %-12s %s %s" % (key, plat, shown, result.reason[-200:]))

    def _each(self, key, kind, fn):
        for plat in self.platforms:
            self._set(key, kind, plat.name, measure(lambda p=plat: fn(p)))

    def _micro(self, m, binary):
        n = max(1, int(m.n * self.settings.scale))
        for plat in self.platforms:
            if binary is None:
                self._set(m.key, "micro", plat.name, Result("failed", reason="micro.c not built"))
                continue

            def command_for(count, p=plat):
                return p.command([binary, m.op, str(count)] + ([m.arg] if m.arg else []))

            def fn(p=plat):
                startup = self._startup(p, binary) if self.settings.shared_startup else None
                us, samples, ns = per_op_us(command_for, n, self.settings, startup)
                return us, samples, {"n": ns}
            result = measure(fn)
            if result.status == "failed" and "not a positive figure" in result.reason:
                result = measure(fn)        # a burst of load from elsewhere: once more
            self._set(m.key, "micro", plat.name, result)

    def _startup(self, plat, binary):
        """Seconds to start micro and do nothing on plat: median of 3, measured once."""
        if plat.name not in self.startups:
            self.startups[plat.name] = statistics.median(
                run_timed(plat.command([binary, "getpid", "0"]), timeout=self.settings.timeout)
                for _ in range(3))
        return self.startups[plat.name]

    def _floors(self, work):
        """The C floors, under the platform column they bound."""
        names = {p.name for p in self.platforms}
        n = str(int(20000 * max(self.settings.scale, 0.25)))
        if "ptrace" in names:
            floor = self._build(work, "ptrace_floor", static=False)
            for key, extra in (("floor_1cpu", []), ("floor_2cpu", ["unpinned"])):
                if key not in self.want:
                    continue
                self._set(key, "floor", "ptrace", measure(
                    lambda e=extra: self._self_timed(floor, [n] + e)))
        if "kvm" in names and "floor_1cpu" in self.want:
            floor = self._build(work, "kvm_floor", static=False)
            self._set("floor_1cpu", "floor", "kvm",
                      measure(lambda: self._self_timed(floor, [n])))

    def _self_timed(self, binary, args):
        """µs per call, median over repeats, from a program that prints ns per call."""
        if binary is None:
            raise Failed("floor program not built")
        samples = []
        for _ in range(max(self.settings.repeats, 1)):
            proc = subprocess.run([binary] + args, capture_output=True, timeout=TIMEOUT)
            if proc.returncode != 0:
                raise Failed("%s: exit %d: %s" % (binary, proc.returncode, _tail(proc.stderr)))
            samples.append(float(proc.stdout) / 1e3)
        return statistics.median(samples), samples, {}


# --- ratios, table, JSON -----------------------------------------------------

def labels():
    """figure key -> label, in table order."""
    out = {m.key: m.label for m in MICROS}
    out.update(dict(FLOORS))
    out.update(dict(WORKLOADS))
    out[MEMORY[0]] = MEMORY[1]
    return out


def value(figures, key, plat):
    """The ok value of figure key on plat, or None."""
    r = figures.get(key, {}).get(plat)
    return r["value"] if r and r.get("status") == "ok" else None


def ratio(figures, key, plat, other, other_key=None):
    a, b = value(figures, key, plat), value(figures, other_key or key, other)
    return a / b if a and b else None


def ratio_columns(platforms):
    """[(title, plat, reference plat, reference figure or None)] for the table."""
    cols = []
    for p in platforms:
        if p not in PYVISOR_PLATFORMS:
            continue
        cols.append(("%s÷native" % p, p, "native", None))
        if "runsc" in platforms:
            cols.append(("%s÷runsc" % p, p, "runsc", None))
        cols.append(("%s÷floor" % p, p, p, "floor_1cpu"))
    return cols


def table_rows(doc):
    """(header, rows) of strings: one row per figure, values then ratios."""
    figures = doc["figures"]
    plats = [p for p in PLATFORM_ORDER if p in doc["platforms"]]
    cols = ratio_columns(plats)
    header = ["figure", "unit"] + plats + [c[0] for c in cols]
    rows = []
    for key, label in labels().items():
        if key not in figures:
            continue
        row = [label, doc["units"][key]]
        for p in plats:
            r = figures[key].get(p)
            row.append(_cell(r))
        for _, p, ref, ref_key in cols:
            if ref_key and key != "getpid":
                row.append("")
                continue
            x = ratio(figures, key, p, ref, ref_key)
            row.append("%.2fx" % x if x else "")
        rows.append(row)
    return header, rows


def _cell(r):
    if r is None:
        return ""
    if r["status"] != "ok":
        return r["status"]
    v = r["value"]
    return "%.3g" % v if v < 100 else "%.0f" % v


def render_table(doc, out=None):
    """Prints the table with rich if it is installed, else as plain text."""
    out = out or sys.stdout
    header, rows = table_rows(doc)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
        for r in [header] + rows:
            out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")
    else:
        t = Table(title="pyvisor bench: µs per operation, ms per workload (median)")
        for i, h in enumerate(header):
            t.add_column(h, justify="left" if i < 2 else "right", no_wrap=True)
        for r in rows:
            t.add_row(*r)
        width = sum(max(len(r[i]) for r in [header] + rows) + 3 for i in range(len(header)))
        Console(file=out, width=max(width + 1, shutil.get_terminal_size().columns)).print(t)
    _notes(doc, out)


def _notes(doc, out):
    if doc.get("mode") == "quick":
        out.write("quick run: one run per figure; tar archives /usr/include/linux only\n")
    for p, why in doc["skipped"].items():
        out.write("skipped %s: %s\n" % (p, why))
    for key, per in doc["figures"].items():
        for p, r in per.items():
            if r["status"] == "failed":
                out.write("FAILED %s on %s: %s\n" % (key, p, r["reason"]))


def markdown_table(doc):
    header, rows = table_rows(doc)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def machine_info():
    info = {"node": host_platform.node(), "processor": _cpu_model(), "cpus": os.cpu_count(),
            "machine": host_platform.machine(), "system": host_platform.system(),
            "release": host_platform.release(),
            "python_implementation": host_platform.python_implementation(),
            "python_version": host_platform.python_version()}
    runsc = shutil.which("runsc")
    if runsc:
        try:
            info["runsc"] = subprocess.run([runsc, "--version"], capture_output=True, text=True,
                                           timeout=30).stdout.splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            pass
    return info


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return host_platform.processor()


def document(suite, settings_name, started):
    """The JSON document: pytest-benchmark's layout plus a "pyvisor" summary."""
    figures = {k: {p: _result_json(r) for p, r in per.items()} for k, per in suite.results.items()}
    units = {k: UNITS[suite.kinds[k]] for k in suite.results}
    doc = {"figures": figures, "units": units, "kinds": dict(suite.kinds),
           "platforms": [p.name for p in suite.platforms], "skipped": dict(suite.skipped),
           "mode": settings_name}
    return {"machine_info": machine_info(), "commit_info": _commit_info(),
            "benchmarks": _benchmarks(suite, units), "datetime": started,
            "version": _pytest_benchmark_version(), "pyvisor": doc}


def _result_json(r):
    out = {"status": r.status}
    if r.status == "ok":
        out["value"] = round(r.value, 4)
        out["samples"] = [round(s, 4) for s in r.samples]
    else:
        out["reason"] = r.reason
    if r.extra:
        out["extra"] = r.extra
    return out


def _benchmarks(suite, units):
    """pytest-benchmark "benchmarks" entries; stats in seconds, as it keeps them."""
    scale = {"us": 1e-6, "ms": 1e-3, "MB": 1.0}
    out = []
    for key, per in suite.results.items():
        for plat, r in per.items():
            if r.status != "ok":
                continue
            xs = sorted(s * scale[units[key]] for s in (r.samples or [r.value]))
            med = r.value * scale[units[key]]
            q1, q3 = xs[len(xs) // 4], xs[(3 * len(xs)) // 4]
            out.append({
                "group": key, "name": "%s[%s]" % (key, plat),
                "fullname": "pyvisor bench::%s[%s]" % (key, plat),
                "params": {"platform": plat}, "param": plat,
                "extra_info": dict(r.extra, unit=units[key], value=r.value, kind=suite.kinds[key]),
                "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": len(xs),
                            "max_time": 0, "min_time": 0, "warmup": False},
                "stats": {"min": xs[0], "max": xs[-1], "mean": statistics.fmean(xs),
                          "stddev": statistics.stdev(xs) if len(xs) > 1 else 0.0,
                          "rounds": len(xs), "median": med, "iqr": q3 - q1, "q1": q1, "q3": q3,
                          "iqr_outliers": 0, "stddev_outliers": 0, "outliers": "0;0",
                          "ld15iqr": xs[0], "hd15iqr": xs[-1], "ops": 1 / med if med else 0,
                          "total": sum(xs), "data": xs, "iterations": 1},
            })
    return out


def _commit_info():
    try:
        rev = subprocess.run(["git", "-C", os.path.dirname(SOURCE_DIR), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", os.path.dirname(SOURCE_DIR), "status",
                                "--porcelain"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"id": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip()), "project": "pyvisor"}


def _pytest_benchmark_version():
    try:
        from importlib.metadata import version
        return version("pytest-benchmark")
    except Exception:       # noqa: BLE001 - not installed: the layout is still its 4.x one
        return "4.0.0"


# --- regression tracking -----------------------------------------------------

class BadBaseline(Exception):
    """The baseline file is missing or is not a pyvisor bench document."""


def load_baseline(path):
    """The "pyvisor" part of a bench JSON document. Raises BadBaseline."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError as e:
        raise BadBaseline("cannot read baseline %s: %s" % (path, e.strerror)) from e
    except ValueError as e:
        raise BadBaseline("baseline %s is not JSON: %s" % (path, e)) from e
    summary = doc.get("pyvisor") if isinstance(doc, dict) else None
    if not isinstance(summary, dict) or not isinstance(summary.get("figures"), dict):
        raise BadBaseline("baseline %s has no pyvisor bench figures "
                          "(write one with pyvisor bench --json FILE)" % path)
    for key, per in summary["figures"].items():
        if not isinstance(per, dict) or not all(isinstance(r, dict) for r in per.values()):
            raise BadBaseline("baseline %s: figure %r is malformed" % (path, key))
    return summary


def compare(current, baseline, limit=REGRESSION_LIMIT):
    """[(figure, platform, base ratio, now ratio, change, regressed)] for every
    figure and non-native platform that has a ratio to native in both runs."""
    out = []
    for key, per in current["figures"].items():
        for plat in per:
            if plat == "native":
                continue
            now = ratio(current["figures"], key, plat, "native")
            base = ratio(baseline["figures"], key, plat, "native")
            if now is None or base is None:
                continue
            change = now / base
            out.append((key, plat, base, now, change, change > limit))
    return out


def print_comparison(rows, out):
    out.write("\nChange of each ratio to native against the baseline "
              "(regression: more than %d%% slower)\n" % round((REGRESSION_LIMIT - 1) * 100))
    for key, plat, base, now, change, bad in rows:
        out.write("  %-16s %-12s %8.2fx -> %8.2fx  %+6.0f%%%s\n"
                  % (key, plat, base, now, (change - 1) * 100, "  REGRESSION" if bad else ""))


# --- plot --------------------------------------------------------------------

def plot(doc, path):
    """A log-scale bar chart: µs per operation, then ms per workload."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plats = [p for p in PLATFORM_ORDER if p in doc["platforms"]]
    kinds = doc["kinds"]
    groups = [("micro", "µs per operation"), ("workload", "ms per run")]
    fig, axes = plt.subplots(2, 1, figsize=(11, 8.5))
    width = 0.8 / max(len(plats), 1)
    names = labels()
    for ax, (kind, unit) in zip(axes, groups):
        keys = [k for k in names if kinds.get(k) == kind and k in doc["figures"]]
        for i, p in enumerate(plats):
            xs = [j + i * width for j in range(len(keys))]
            ys = [value(doc["figures"], k, p) or 0 for k in keys]
            ax.bar(xs, ys, width, label=p)
        ax.set_yscale("log")
        ax.set_ylabel(unit)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(keys))])
        ax.set_xticklabels([names[k] for k in keys], rotation=30, ha="right", fontsize=7)
        ax.grid(axis="y", which="major", alpha=0.3)
    axes[0].legend(fontsize=8, ncol=len(plats))
    axes[0].set_title("pyvisor bench (log scale; lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


# --- the command -------------------------------------------------------------

def main(args):
    """Runs `pyvisor bench`; returns the exit code (0, 1 on regression, 2 on bad input)."""
    if not os.path.isdir(C_DIR):
        sys.stderr.write("pyvisor bench: the benchmark sources (%s) are missing: run it "
                         "from a source checkout\n" % SOURCE_DIR)
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
