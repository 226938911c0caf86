"""What a run reports: ratios, the table (rich if installed), markdown,
pytest-benchmark-compatible JSON, the regression check against a
baseline, and the chart (matplotlib)."""

import json
import os
import platform as host_platform
import shutil
import statistics
import subprocess
import sys

from pyvisor.bench.figures import UNITS, labels
from pyvisor.bench.run import PLATFORM_ORDER, PYVISOR_PLATFORMS

REGRESSION_LIMIT = 1.25         # a ratio to native this much larger than the baseline's fails
REPO_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --- ratios, table, JSON -----------------------------------------------------

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
        out.write("quick run: one run per figure; tar archives /usr/include/linux only; the "
                  "volume rows use /usr/include/linux, 500 files and 64 MiB\n")
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
        rev = subprocess.run(["git", "-C", REPO_DIR, "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", REPO_DIR, "status",
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
