"""pyvisor/fields.py: the value classes that stand in for dataclasses."""

import pytest

from pyvisor.config import SandboxConfig
from pyvisor.sentry.auth import Credentials
from pyvisor.sentry.vfs.stat import Stat


def test_fields_compare_copy_and_print_by_value():
    a = Stat(0o100644, st_ino=7, st_size=3)
    assert a == Stat(0o100644, st_ino=7, st_size=3) and a != Stat(0o100644, st_ino=8)
    b = a.replace(st_size=4)
    assert (b.st_size, a.st_size, b.st_ino) == (4, 3, 7)
    assert repr(a).startswith("Stat(st_mode=33188, st_ino=7")
    with pytest.raises(TypeError):
        a.replace(st_colour=1)
    with pytest.raises(TypeError):
        hash(a)                          # mutable: unhashable, as a dataclass


def test_credentials_copy_is_independent():
    c = Credentials.user(1000, 100, [5])
    d = c.copy()
    d.groups.append(6)
    d.euid = 0
    assert c.groups == [5] and c.euid == 1000 and c != d


def test_config_is_frozen_checked_and_hashable():
    c = SandboxConfig(argv=(b"/bin/true",), extra={"k": 1})
    with pytest.raises(AttributeError):
        c.cwd = "/tmp"
    assert c == SandboxConfig(argv=(b"/bin/true",)) and hash(c) == hash(SandboxConfig(argv=(b"/bin/true",)))
    assert c.replace(cwd="/tmp").cwd == "/tmp"
    for bad in ({"argv": ()}, {"argv": (b"x",), "pids_limit": 0}, {"argv": (b"x",), "fork": "lazy"},
                {"argv": (b"x",), "platform": "vmx"}, {"argv": (b"x",), "overlay": "disk"},
                {"argv": (b"x",), "overlay_dir": "/var/tmp"},
                {"argv": (b"x",), "overlay": "file", "overlay_dir": "/nonexistent-pyvisor"}):
        with pytest.raises(ValueError):
            SandboxConfig(**bad)
    with pytest.raises(ValueError):
        c.replace(platform="vmx")
