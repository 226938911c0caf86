"""`pyvisor bench`: the command's contract, not the machine's speed.

No test here depends on how fast anything is. The end-to-end test runs the
real command (``--quick``, native and ptrace) and checks that every figure
is there and positive and that the table renders; the rest check the pieces
that decide what is reported: floors, micro.c's operations, failures,
skipped platforms, the JSON layout and ``--compare``.
"""

import io
import json
import math
import os
import shutil
import subprocess
import sys
import time

import pytest

from pyvisor.bench import figures, report, run, suite
from pyvisor.cli import main
from conftest import BASE_ENV, PYVISOR, REPO_ROOT

ROOT = REPO_ROOT
# The installed package, as users run it (during development PYTHONPATH points
# at a built checkout); never the checkout's own sources from its cwd: CI's
# checkout has no compiled extensions.
ENV = dict(os.environ, **{k: v for k, v in BASE_ENV.items() if k == "PYTHONPATH"})
CWD = "/"


def pyvisor_bench(*args, timeout=300):
    return subprocess.run([*PYVISOR, "bench", *args], cwd=CWD, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def work():
    w = run.Workdir()
    yield w
    w.close()


def _doc(figures, platforms=("native", "ptrace")):
    """A minimal "pyvisor" summary: figures = {key: {plat: value or 'failed'}}."""
    out = {}
    for key, per in figures.items():
        out[key] = {p: {"status": "ok", "value": v} if isinstance(v, float)
                    else {"status": v, "reason": "why"} for p, v in per.items()}
    return {"figures": out, "units": {k: "us" for k in figures}, "kinds":
            {k: "micro" for k in figures}, "platforms": list(platforms), "skipped": {}}


# --- end to end ----------------------------------------------------------------

@pytest.mark.slow
def test_quick_run_has_every_figure_for_native_and_ptrace(tmp_path):
    out = tmp_path / "bench.json"
    md = tmp_path / "table.md"
    proc = pyvisor_bench("--quick", "--platform", "ptrace", "--json", str(out),
                         "--markdown", str(md), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    got = doc["pyvisor"]["figures"]
    expected = [m.key for m in figures.MICROS] + [k for k, _ in figures.WORKLOADS] + ["memory"]
    missing = []
    for key in expected:
        for plat in ("native", "ptrace"):
            r = got.get(key, {}).get(plat)
            if r is None or r["status"] != "ok" or not r["value"] > 0:
                missing.append((key, plat, r))
    assert not missing, missing
    for key in ("floor_1cpu", "floor_2cpu"):
        assert got[key]["ptrace"]["value"] > 0
    # The table rendered: a header and one line per figure, with the ratio column.
    assert "ptrace÷native" in proc.stdout
    for m in figures.MICROS:
        assert m.label in proc.stdout
    assert md.read_text().count("\n") == len(expected) + 2 + 2     # + header, rule, floors
    # pytest-benchmark's layout: its own compare command reads the file.
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(doc)
    assert all(b["stats"]["median"] > 0 for b in doc["benchmarks"])
    if shutil.which("pytest-benchmark"):
        cmp = subprocess.run(["pytest-benchmark", "compare", str(out)], capture_output=True,
                             text=True, timeout=60)
        assert cmp.returncode == 0, cmp.stderr[-2000:]
        assert "getpid[ptrace]" in cmp.stdout


# --- floors and the microbenchmark program -------------------------------------------------

def test_ptrace_floor_prints_positive_ns_pinned_and_unpinned(work):
    floor = work.build("ptrace_floor", static=False)
    for extra in ([], ["unpinned"]):
        proc = subprocess.run([floor, "2000"] + extra, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert float(proc.stdout) > 0


def test_kvm_floor_prints_positive_ns(work):
    from pyvisor.platform import kvm_usable
    ok, why = kvm_usable()
    if not ok:
        pytest.skip(why)
    proc = subprocess.run([work.build("kvm_floor", static=False), "2000"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout) > 0


def test_every_micro_op_runs_natively(work):
    micro = work.build("micro")
    for m in figures.MICROS:
        cmd = [micro, m.op, "3"] + ([m.arg] if m.arg else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, (m.op, proc.stderr)


def test_micro_rejects_unknown_op_and_missing_args(work):
    micro = work.build("micro")
    bad = subprocess.run([micro, "nonesuch", "3"], capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2 and "unknown OP" in bad.stderr
    short = subprocess.run([micro], capture_output=True, text=True, timeout=10)
    assert short.returncode == 2 and "usage" in short.stderr


def test_micro_reports_a_failing_call(work):
    proc = subprocess.run([work.build("micro"), "open", "3", "/nonexistent/file"],
                          capture_output=True, text=True, timeout=10)
    assert proc.returncode == 1 and "/nonexistent/file" in proc.stderr


def test_per_op_us_keeps_n_when_the_loop_dominates(work):
    micro = work.build("micro")
    us, samples, ns = run.per_op_us(lambda k: [micro, "getpid", str(k)], 20000,
                                      run.Settings(2, 0.0, 1.0, 1))
    assert ns == [20000, 100000] and len(samples) == 2
    assert math.isfinite(us) and all(math.isfinite(s) for s in samples)


def test_per_op_us_grows_n_when_start_up_dominates():
    # `true` ignores its argument: the difference never reaches min_delta.
    _, _, ns = run.per_op_us(lambda k: ["true", str(k)], 3, run.Settings(1, 10.0, 1.0, 1))
    assert ns == [3 * 4 ** 3, 5 * 3 * 4 ** 3]


def test_per_op_us_with_a_shared_start_up_times_one_n():
    ran = []

    def command_for(k):
        ran.append(k)
        return ["sleep", "0.2"]
    us, samples, ns = run.per_op_us(command_for, 1000, run.QUICK, startup=0.0)
    assert ran == [5000] and ns == [0, 5000]
    assert us == pytest.approx(samples[0]) and us > 0.2e6 / 5000


def test_a_figure_that_is_not_positive_is_failed_not_zero():
    for bad in (-1.0, 0.0):
        r = run.measure(lambda: (bad, [], {}))
        assert r.status == "failed" and "not a positive figure" in r.reason


# --- failures and skipped platforms ----------------------------------------------------

def test_failed_command_reports_its_stderr_tail():
    r = run.measure(lambda: (run.run_timed(["sh", "-c", "echo boom >&2; exit 3"]), [], {}))
    assert r.status == "failed"
    assert "exit 3" in r.reason and "boom" in r.reason


def test_missing_program_is_a_failure_not_a_crash():
    r = run.measure(lambda: (run.run_timed(["/nonexistent/prog"]), [], {}))
    assert r.status == "failed" and "/nonexistent/prog" in r.reason


def test_a_failing_platform_does_not_stop_the_others():
    broken = run.Platform("broken", ("sh", "-c", "echo it broke >&2; exit 9", "sh"))
    native = run.Platform("native", ())
    s = suite.Suite([native, broken], {}, run.QUICK, only=["startup", "python_pass"])
    results = s.run()
    for key in ("startup", "python_pass"):
        assert results[key]["native"].status == "ok" and results[key]["native"].value > 0
        assert results[key]["broken"].status == "failed"
        assert "it broke" in results[key]["broken"].reason


def test_platform_without_runsc_on_path_is_skipped_with_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    found, skipped = run.available_platforms({"native", "runsc", "runsc-1cpu"})
    assert [p.name for p in found] == ["native"]
    assert "runsc" in skipped["runsc"] and skipped["runsc-1cpu"]


def test_skipped_and_failed_are_listed_under_the_table():
    doc = _doc({"getpid": {"native": 0.1, "ptrace": "failed"}})
    doc["skipped"] = {"kvm": "no /dev/kvm"}
    out = io.StringIO()
    report.render_table(doc, out)
    text = out.getvalue()
    assert "skipped kvm: no /dev/kvm" in text
    assert "FAILED getpid on ptrace: why" in text


def test_plain_table_when_rich_is_missing(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "rich", None)
    monkeypatch.setitem(sys.modules, "rich.console", None)
    monkeypatch.setitem(sys.modules, "rich.table", None)
    report.render_table(_doc({"getpid": {"native": 0.25, "ptrace": 10.0}}))
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["figure", "unit", "native", "ptrace",
                                           "ptrace÷native", "ptrace÷floor"]
    assert "40.00x" in out


def test_rich_table_renders_every_figure(capsys):
    pytest.importorskip("rich")
    report.render_table(_doc({"getpid": {"native": 0.25, "ptrace": 10.0},
                             "stat": {"native": 1.0, "ptrace": "failed"}}))
    out = capsys.readouterr().out
    assert "getpid" in out and "stat" in out and "40.00x" in out and "failed" in out


# --- command-line bad input ---------------------------------------------------------

@pytest.mark.parametrize("content, message", [
    (None, "cannot read baseline"),
    ("{not json", "is not JSON"),
    ('{"benchmarks": []}', "has no pyvisor bench figures"),
    ('[1, 2]', "has no pyvisor bench figures"),
    ('{"pyvisor": {"figures": {"getpid": 3}}}', "is malformed"),
])
def test_compare_with_a_bad_baseline_exits_2(tmp_path, capsys, content, message):
    path = tmp_path / "baseline.json"
    if content is not None:
        path.write_text(content)
    assert main(["bench", "--quick", "--compare", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_plot_without_matplotlib_exits_2():
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from pyvisor.cli import main; sys.exit(main(['bench', '--plot', 'x.png']))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=CWD, env=ENV, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "--plot needs matplotlib" in proc.stderr


def test_unknown_figure_exits_2(capsys):
    assert main(["bench", "--only", "nonesuch"]) == 2
    assert "unknown figure(s) nonesuch" in capsys.readouterr().err


def test_unknown_platform_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "--platform", "vmware"])
    assert e.value.code == 2


def test_run_does_not_import_bench():
    proc = subprocess.run([sys.executable, "-c", "import sys, pyvisor.cli; "
                           "pyvisor.cli._parser().parse_args(['run', '--', '/bin/true']); "
                           "print('pyvisor.bench' in sys.modules, 'rich' in sys.modules)"],
                          cwd=CWD, env=ENV, capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["False", "False"]


# --- regression tracking -------------------------------------------------------------

def test_compare_flags_only_ratios_more_than_25_percent_slower():
    base = _doc({"getpid": {"native": 0.1, "ptrace": 10.0},
                 "stat": {"native": 1.0, "ptrace": 20.0},
                 "fork_wait": {"native": 100.0, "ptrace": 1000.0}})
    # getpid: native twice as fast, ptrace unchanged: ratio doubles -> regression.
    # stat: everything 3x slower (a noisy machine): same ratio -> fine.
    # fork_wait: ratio 10 -> 12 (+20%) -> fine.
    now = _doc({"getpid": {"native": 0.05, "ptrace": 10.0},
                "stat": {"native": 3.0, "ptrace": 60.0},
                "fork_wait": {"native": 100.0, "ptrace": 1200.0}})
    rows = {(r[0], r[1]): r for r in report.compare(now, base)}
    assert rows[("getpid", "ptrace")][-1] is True
    assert rows[("getpid", "ptrace")][4] == pytest.approx(2.0)
    assert rows[("stat", "ptrace")][-1] is False
    assert rows[("fork_wait", "ptrace")][-1] is False
    assert ("getpid", "native") not in rows


def test_compare_skips_figures_missing_or_failed_on_either_side():
    base = _doc({"getpid": {"native": 0.1, "ptrace": 10.0}, "stat": {"native": 1.0}})
    now = _doc({"getpid": {"native": 0.1, "ptrace": "failed"},
                "stat": {"native": 1.0, "ptrace": 5.0}})
    assert report.compare(now, base) == []


def test_committed_baseline_loads_and_names_its_machine():
    path = os.path.join(ROOT, "bench", "baseline.json")
    if not os.path.exists(path):
        pytest.skip("no committed baseline yet")
    summary = report.load_baseline(path)
    assert summary["figures"]["getpid"]["native"]["value"] > 0
    with open(path) as f:
        assert json.load(f)["machine_info"]["processor"]


def test_json_document_is_pytest_benchmark_shaped():
    s = suite.Suite([run.Platform("native", ())], {"kvm": "no"}, run.QUICK)
    s.results = {"getpid": {"native": figures.Result("ok", 0.2, [0.1, 0.2, 0.3]),
                                "ptrace": figures.Result("failed", reason="boom")}}
    s.kinds = {"getpid": "micro"}
    doc = report.document(s, "quick", "2026-01-01T00:00:00+00:00")
    (entry,) = doc["benchmarks"]        # failed figures are not benchmarks
    assert entry["name"] == "getpid[native]" and entry["group"] == "getpid"
    assert entry["stats"]["median"] == pytest.approx(0.2e-6)
    assert entry["stats"]["min"] == pytest.approx(0.1e-6)
    assert doc["pyvisor"]["figures"]["getpid"]["ptrace"] == {"status": "failed",
                                                             "reason": "boom"}
    assert doc["pyvisor"]["skipped"] == {"kvm": "no"}
    json.dumps(doc)


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    doc = _doc({"getpid": {"native": 0.1, "ptrace": 10.0}})
    doc["figures"]["startup"] = {"native": {"status": "ok", "value": 2.0},
                                 "ptrace": {"status": "failed", "reason": "x"}}
    doc["kinds"]["startup"] = "workload"
    out = tmp_path / "chart.png"
    report.plot(doc, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_hung_command_is_killed_with_its_children_and_failed(tmp_path):
    # sh starts a second sleeper: the whole process group must go.
    pidfile = tmp_path / "pid"
    t0 = time.monotonic()
    with pytest.raises(figures.Failed, match="timed out after 1 s"):
        run.run_timed(["sh", "-c", "sleep 30 & echo $! > %s; wait" % pidfile], timeout=1)
    assert time.monotonic() - t0 < 10
    pid = int(pidfile.read_text())
    for _ in range(100):            # killed; its new parent reaps it shortly
        try:
            with open("/proc/%d/stat" % pid) as f:
                if f.read().rpartition(")")[2].split()[0] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the background sleep %d survived the timeout" % pid)


def test_drained_output_is_read_and_timed():
    assert run.run_timed(["head", "-c", "5000000", "/dev/zero"], drain=True) > 0


def test_compare_exits_1_on_a_regression_and_0_without(tmp_path):
    # native-1cpu against native: the ratio is about 1 on an idle machine
    # (hundreds when CPU 0 is busy); a baseline that says 0.01 makes it a
    # regression, one that says a million does not.
    for base_ratio, code in ((0.01, 1), (1e6, 0)):
        path = tmp_path / "baseline.json"
        path.write_text(json.dumps({"pyvisor": dict(
            _doc({"startup": {"native": 1.0, "native-1cpu": base_ratio}}), mode="quick")}))
        proc = pyvisor_bench("--quick", "--platform", "native-1cpu", "--only", "startup",
                             "--compare", str(path), timeout=120)
        assert proc.returncode == code, proc.stdout + proc.stderr
        assert "startup" in proc.stdout and ("REGRESSION" in proc.stdout) == (code == 1)
