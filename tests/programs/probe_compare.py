"""One shape for "a C probe prints the same lines natively and in the
sandbox": build it, run it natively (it must end with "done"), then in the
sandbox once per argument list, and compare every line."""

import os

from conftest import TESTS_DIR


def assert_probe_matches_native(sandbox, build_c, name, native_args=(), boxed_args=((),)):
    prog = build_c(os.path.join(TESTS_DIR, "c", name + ".c"))
    native = sandbox.native([prog, *native_args])
    assert native.returncode == 0, native.stderr
    assert native.stdout.endswith(b"done\n")
    for args in boxed_args:
        boxed = sandbox.run([prog, *args], cwd="/var/tmp")
        assert boxed.stdout.decode() == native.stdout.decode(), (args, boxed.stderr.decode())
        assert boxed.returncode == 0
