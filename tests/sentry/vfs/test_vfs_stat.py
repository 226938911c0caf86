"""The struct layouts against the host kernel's own: the same file's
attributes packed by us and filled in by the host must be equal bytes."""

import ctypes
import os
import struct

import pytest

from pyvisor.sentry.vfs.stat import (Stat, StatFs, major, makedev, minor, pack_dirent64,
                                     pack_stat, pack_statfs, pack_statx, unpack_stat)

libc = ctypes.CDLL(None, use_errno=True)


def host_stat_bytes(path):
    buf = ctypes.create_string_buffer(144)
    # glibc >= 2.33 exports stat(); the struct is the kernel's on x86-64.
    assert libc.stat(path, buf) == 0, os.strerror(ctypes.get_errno())
    return buf.raw


def ours_from_os(path):
    h = os.stat(path)
    return Stat(st_mode=h.st_mode, st_ino=h.st_ino, st_dev=h.st_dev, st_nlink=h.st_nlink,
                st_uid=h.st_uid, st_gid=h.st_gid, st_rdev=h.st_rdev, st_size=h.st_size,
                st_blksize=h.st_blksize, st_blocks=h.st_blocks, st_atime_ns=h.st_atime_ns,
                st_mtime_ns=h.st_mtime_ns, st_ctime_ns=h.st_ctime_ns)


@pytest.mark.parametrize("path", [b"/", b"/dev/null", b"/proc/self/exe"])
def test_struct_stat_matches_host(path):
    if not hasattr(libc, "stat"):
        pytest.skip("libc without a stat symbol")
    assert pack_stat(ours_from_os(path)) == host_stat_bytes(path)


def test_unpack_roundtrip():
    s = Stat(st_mode=0o100644, st_ino=7, st_dev=9, st_nlink=2, st_uid=1, st_gid=2, st_rdev=3,
             st_size=12345, st_blksize=4096, st_blocks=32, st_atime_ns=1_500_000_001,
             st_mtime_ns=2_000_000_002, st_ctime_ns=3_000_000_003)
    assert unpack_stat(pack_stat(s)) == s


def test_statx_layout_matches_host(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x" * 5000)
    buf = ctypes.create_string_buffer(256)
    AT_FDCWD, STATX_BASIC = -100, 0x7FF
    if libc.statx(AT_FDCWD, bytes(p), 0, STATX_BASIC, buf) != 0:
        pytest.skip("no statx on the host")
    host = buf.raw
    ours = pack_statx(ours_from_os(str(p)))
    # Same offsets for every basic field (mask may differ by mnt_id/btime bits).
    for off, fmt in [(4, "I"), (16, "I"), (20, "I"), (24, "I"), (28, "H"), (32, "Q"),
                     (40, "Q"), (48, "Q"), (64, "q"), (72, "I"), (96, "q"), (112, "q"),
                     (120, "I"), (136, "I"), (140, "I")]:
        assert struct.unpack_from("<" + fmt, ours, off) == struct.unpack_from("<" + fmt, host, off), off
    assert len(ours) == 256


def test_statfs_layout_matches_host():
    buf = ctypes.create_string_buffer(120)
    assert libc.statfs(b"/", buf) == 0
    f_type, bsize = struct.unpack_from("<qq", buf.raw, 0)
    namelen, frsize = struct.unpack_from("<qq", buf.raw, 64)
    ours = pack_statfs(StatFs(f_type=f_type, f_bsize=bsize, f_namelen=namelen, f_frsize=frsize))
    assert len(ours) == 120
    assert struct.unpack_from("<qq", ours, 0) == (f_type, bsize)
    assert struct.unpack_from("<qq", ours, 64) == (namelen, frsize)


def test_dirent64_layout():
    rec = pack_dirent64(42, 3, 8, b"name")
    assert len(rec) == 24 and len(rec) % 8 == 0
    assert struct.unpack_from("<QqHB", rec) == (42, 3, 24, 8)
    assert rec[19:24] == b"name\0"
    assert len(pack_dirent64(1, 1, 8, b"x" * 5)) == 32       # 19+5+1 = 25 -> 32


def test_dev_encoding_matches_host():
    for maj, mnr in [(1, 3), (5, 0), (259, 70000), (4095, 255)]:
        dev = makedev(maj, mnr)
        assert dev == os.makedev(maj, mnr)
        assert (major(dev), minor(dev)) == (maj, mnr)
