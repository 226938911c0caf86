"""Build the Cython extensions and the ptrace stub program.

Every ``.pyx`` under ``pyvisor/`` becomes an extension module; the ``.pxd``
files beside them (declarations the ``.pyx`` files cimport:
``pyvisor/platform/_common.pxd``, ``pyvisor/netstack/_wire.pxd``) are read
from the tree when it is built and installed with the package, so that
the sdist rebuilds and other Cython code can cimport them. The stub is a
tiny static program with no libc (``pyvisor/platform/stub.S``) that the ptrace
platform runs as the host process for each address space; it is assembled
here and installed as package data (``pyvisor/platform/_stub``). So is the
small waiter that `pyvisor run` becomes once the Sentry runs
(``csrc/waiter.c`` -> ``pyvisor/_waiter``; see pyvisor/confine.py).
"""

import glob
import shutil
import os
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from Cython.Build import cythonize

HERE = os.path.dirname(os.path.abspath(__file__))
STUB_SRC = os.path.join("pyvisor", "platform", "stub.S")
STUB_ADDR = "0x7fffffe00000"
WAITER_SRC = os.path.join("csrc", "waiter.c")


def build_stub(out):
    os.makedirs(os.path.dirname(out), exist_ok=True)
    subprocess.check_call([
        os.environ.get("CC", "gcc"), "-nostdlib", "-static", "-no-pie",
        "-Wl,--build-id=none", "-Wl,-z,noexecstack",
        "-Wl,-Ttext-segment=" + STUB_ADDR, "-o", out, STUB_SRC,
    ])


def build_waiter(out):
    """Static where the C library allows it: no dynamic loader or libc.so in every sandbox."""
    os.makedirs(os.path.dirname(out), exist_ok=True)
    cc = os.environ.get("CC", "gcc")
    if subprocess.call([cc, "-O2", "-static", "-o", out, WAITER_SRC]) != 0:
        subprocess.check_call([cc, "-O2", "-o", out, WAITER_SRC])


class BuildExtWithStub(build_ext):
    def run(self):
        super().run()
        build_stub(os.path.join(self.build_lib, "pyvisor", "platform", "_stub"))
        build_waiter(os.path.join(self.build_lib, "pyvisor", "_waiter"))
        # `pyvisor bench` builds its programs from these sources (bench/c).
        bench_c = os.path.join(self.build_lib, "pyvisor", "bench", "c")
        os.makedirs(bench_c, exist_ok=True)
        for src in glob.glob(os.path.join(HERE, "bench", "c", "*.c")):
            shutil.copy(src, bench_c)
        if self.inplace:
            build_stub(os.path.join(HERE, "pyvisor", "platform", "_stub"))
            build_waiter(os.path.join(HERE, "pyvisor", "_waiter"))


def extensions():
    exts = []
    for pyx in sorted(glob.glob("pyvisor/**/*.pyx", recursive=True)):
        name = pyx[:-4].replace(os.sep, ".")
        exts.append(Extension(name, [pyx], extra_compile_args=["-O2"]))
    return cythonize(exts, language_level=3, compiler_directives={
        "boundscheck": False, "wraparound": False, "cdivision": True,
    })


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExtWithStub},
      package_data={"": ["*.pxd"]})
