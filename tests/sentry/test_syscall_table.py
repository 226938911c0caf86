"""The one syscall table (pyvisor/sentry/syscalls/table.py): every x86-64
number has exactly one row, written one way; docs/syscalls.md is generated
from it; the kernel reads names and ENOSYS reasons from it."""

import errno
import importlib.util
import subprocess
from pathlib import Path

import pytest

from conftest import BASE_ENV, PYVISOR, REPO_ROOT
from pyvisor.abi import numbers
from pyvisor.sentry.syscalls import table
from pyvisor.sentry.syscalls.table import (PARTIAL, ROWS, SUPPORTED, UNIMPLEMENTED, Partial,
                                           Supported, Unimplemented, build_table)

ROOT = Path(REPO_ROOT)


def _gen():
    spec = importlib.util.spec_from_file_location("gen_syscalls_doc",
                                                  ROOT / "tools" / "gen_syscalls_doc.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_number_has_exactly_one_row_in_order():
    got = [r.number for r in ROWS]
    assert got == sorted(numbers.NAMES)                     # each once, in number order
    assert all(numbers.NAMES[r.number] == r.name for r in ROWS)


def test_rows_are_written_one_way():
    for r in ROWS:
        assert r.level in (SUPPORTED, PARTIAL, UNIMPLEMENTED)
        assert (r.handler is None) == (r.level == UNIMPLEMENTED), r.name
        if r.level != SUPPORTED:
            assert r.note, r.name                            # partial and ENOSYS say why
        if r.handler is not None:
            doc = r.handler.__doc__ or ""
            assert doc.startswith("Implements Linux syscall"), r.name
            assert r.name + "(2)" in doc, r.name             # the man page it keeps


def test_handlers_live_in_the_module_of_their_area():
    area = {r.name: r.handler.__module__.rsplit(".", 1)[1] for r in ROWS if r.handler}
    assert area["eventfd2"] == area["eventfd"] == "eventfd"
    assert area["signalfd4"] == area["signalfd"] == "signalfd"
    assert area["sched_getaffinity"] == area["sched_setaffinity"] == area["getcpu"] == "sched"
    assert area["epoll_wait"] == area["ppoll"] == "poll"


def test_a_bad_row_is_refused():
    with pytest.raises(ValueError):
        Partial("read", lambda *a: 0, "")                    # partial with no note
    with pytest.raises(ValueError):
        Unimplemented("read", "")
    with pytest.raises(AttributeError):
        Supported("no_such_call", lambda *a: 0)
    row = Supported("read", lambda *a: 0)
    with pytest.raises(ValueError):
        build_table((row, row))                              # one number, two rows
    with pytest.raises(ValueError):
        row.replace(handler=None)                            # supported without a handler


def test_the_flat_list_the_dispatcher_indexes():
    t = build_table()
    assert len(t.handlers) == table.SIZE > max(numbers.NAMES)
    assert t.handlers[numbers.NR_read] is ROWS[0].handler
    assert t.handlers[numbers.NR_mincore] is None
    assert t.handlers[numbers.NR_rseq] is None
    assert t.handlers[500] is None and t.name(500) == "syscall_500"
    assert t.name(numbers.NR_openat) == "openat"
    assert "System V" in t.unimplemented_reason(numbers.NR_shmget)
    assert t.unimplemented_reason(500) == "not a Linux x86-64 system call"
    assert t.count(SUPPORTED) + t.count(PARTIAL) + t.count(UNIMPLEMENTED) == len(numbers.NAMES)


def test_syscalls_page_is_current():
    gen = _gen()
    page = (ROOT / "docs" / "syscalls.md").read_text()
    assert gen.render() == page
    t = build_table()
    assert ("%d calls: %d supported, %d partially supported, %d unimplemented (ENOSYS)."
            % (len(ROWS), t.count(SUPPORTED), t.count(PARTIAL), t.count(UNIMPLEMENTED))) in page
    assert "| 27 | mincore | Unimplemented (ENOSYS) | not implemented |" in page


def test_the_generator_checks(tmp_path):
    gen = _gen()
    out = tmp_path / "syscalls.md"
    assert gen.main(["--output", str(out), "--check"]) == 1     # missing
    assert gen.main(["--output", str(out)]) == 0 and out.read_text() == gen.render()
    assert gen.main(["--output", str(out), "--check"]) == 0
    out.write_text(out.read_text().replace("| 0 | read | Supported |", "| 0 | read | Partial |"))
    assert gen.main(["--output", str(out), "--check"]) == 1


PROBE = ("import ctypes, os; libc = ctypes.CDLL(None, use_errno=True); "
         "r = libc.syscall(%d, 0, 0, 0); print(r, ctypes.get_errno())")


@pytest.mark.parametrize("number,name,why", [
    (numbers.NR_mincore, "mincore", "not implemented"),
    (numbers.NR_shmget, "shmget", "System V IPC is not implemented"),
    (499, "syscall_499", "not a Linux x86-64 system call"),
])
def test_enosys_debug_line_reads_the_table(sandbox, number, name, why):
    """An unimplemented call answers ENOSYS, and --debug says once which and why."""
    p = subprocess.run(PYVISOR + ["run", "--platform", sandbox.platform, "--debug", "--",
                                  "/usr/bin/python3", "-S", "-c", PROBE % number],
                       capture_output=True, timeout=120, env=BASE_ENV, cwd="/")
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    assert p.stdout.split() == [b"-1", str(errno.ENOSYS).encode()]
    line = "pyvisor: debug: unimplemented syscall %s (%d): ENOSYS (%s)" % (name, number, why)
    assert p.stderr.decode().count(line) == 1, p.stderr.decode()[-2000:]
