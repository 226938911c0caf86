"""`pyvisor`'s own messages, as a user meets them: one line naming the option
and the problem, exit 2, before anything starts; a command's own usage for
its misspelt option; `--version`."""

import re
import subprocess
from pathlib import Path

import pytest

from conftest import BASE_ENV, PYVISOR, REPO_ROOT


def pyvisor(*args):
    return subprocess.run(PYVISOR + list(args), capture_output=True, timeout=60, env=BASE_ENV,
                          cwd="/")


def test_version_is_the_packages():
    want = re.search(r'^version = "([^"]+)"', (Path(REPO_ROOT) / "pyproject.toml").read_text(),
                     re.M).group(1)
    p = pyvisor("--version")
    assert p.returncode == 0 and p.stdout.decode() == "pyvisor %s\n" % want


@pytest.mark.parametrize("args,line", [
    (["--cwd", "/nonexistent"], "pyvisor: --cwd /nonexistent: No such file or directory"),
    (["--cwd", "/etc/passwd"], "pyvisor: --cwd /etc/passwd: Not a directory"),
    (["--rootfs", "/nonexistent"], "pyvisor: --rootfs /nonexistent: no such directory"),
    (["--rootfs", "/etc/passwd"], "pyvisor: --rootfs /etc/passwd: not a directory"),
])
def test_a_bad_option_is_one_line_and_exit_2(args, line):
    p = pyvisor("run", *args, "--", "/bin/true")
    assert p.returncode == 2
    assert p.stderr.decode().splitlines() == [line]
    assert p.stdout == b""


def test_a_misspelt_run_option_gets_runs_usage():
    p = pyvisor("run", "--bogus", "--", "/bin/true")
    assert p.returncode == 2
    err = p.stderr.decode()
    assert err.startswith("usage: pyvisor run ") and "unrecognized arguments: --bogus" in err


def test_options_after_the_program_are_the_programs():
    p = pyvisor("run", "--", "/bin/echo", "--bogus", "-x")
    assert p.returncode == 0 and p.stdout == b"--bogus -x\n"
    p = pyvisor("run", "/bin/echo", "--cwd", "/nonexistent")
    assert p.returncode == 0 and p.stdout == b"--cwd /nonexistent\n"
