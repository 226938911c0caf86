"""A bug in the Sentry ends the sandbox with one short report and exit status 70.

The bug is injected by a small launcher that replaces the uname handler with
one that raises (before the syscall table is built from the handlers), then
runs the real CLI; nothing else is mocked.
"""

import subprocess
import sys

LAUNCHER = r"""
import sys
from pyvisor.sentry.syscalls import misc

def broken(t, *args):
    raise RuntimeError("injected Sentry bug")

misc.sys_uname = broken
from pyvisor.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run(sandbox, *args):
    """The CLI with the broken handler; asserts the run left no process behind."""
    before = sandbox.children()
    p = subprocess.run([sys.executable, "-c", LAUNCHER, "run", "--platform", sandbox.platform,
                        *args], capture_output=True, timeout=60, env=sandbox.env, cwd="/")
    sandbox.assert_no_leftovers(before)
    return p


def test_sentry_bug_gives_one_report_and_70(sandbox):
    p = run(sandbox, "--", "/bin/uname", "-n")
    assert p.returncode == 70
    lines = p.stderr.decode().strip().splitlines()
    assert lines[0].startswith("pyvisor: Sentry failure serving uname(")
    assert "RuntimeError: injected Sentry bug" in lines[0]
    assert "Traceback" not in p.stderr.decode()
    assert p.stdout == b""


def test_sentry_bug_with_debug_shows_the_traceback(sandbox):
    p = run(sandbox, "--debug", "--", "/bin/uname", "-n")
    assert p.returncode == 70
    err = p.stderr.decode()
    assert "Traceback" in err and "injected Sentry bug" in err


def test_sentry_bug_in_a_child_process_ends_the_sandbox(sandbox):
    p = run(sandbox, "--", "/bin/sh", "-c", "uname -n; echo unreachable")
    assert p.returncode == 70
    assert b"unreachable" not in p.stdout
    assert b"Sentry failure serving uname(" in p.stderr
