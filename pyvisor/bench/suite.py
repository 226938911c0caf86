"""The suite: every figure on every platform, with each failure recorded
and the rest still run."""

import statistics
import subprocess

from pyvisor.bench.figures import MEMORY, MICROS, WORKLOADS, Failed, Result, labels
from pyvisor.bench.run import (TIMEOUT, Workdir, generate_inputs, generate_volume_inputs, measure,
                               memory_mb, per_op_us, run_timed, stderr_tail, time_workload)

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
            if any(k.startswith("vol_") and k in self.want for k, _ in WORKLOADS):
                try:
                    paths.update(generate_volume_inputs(work, self.settings.quick))
                except (Failed, OSError) as e:
                    self.log("cannot make the volume inputs: %s" % e)
                    paths["vol"] = None
            for m in MICROS:
                if m.key in self.want:
                    self._micro(m, micro)
            for key, _ in WORKLOADS:
                if key.startswith("vol_") and key in self.want and paths.get("vol") is None:
                    for plat in self.platforms:
                        self._set(key, "workload", plat.name,
                                  Result("failed", reason="no volume inputs"))
                    continue
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
                raise Failed("%s: exit %d: %s" % (binary, proc.returncode, stderr_tail(proc.stderr)))
            samples.append(float(proc.stdout) / 1e3)
        return statistics.median(samples), samples, {}
