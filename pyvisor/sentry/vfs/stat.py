"""File attributes and the exact x86-64 layouts Linux copies them out in.

`Stat` is the one attribute record every filesystem returns; the packers
turn it into `struct stat` (144 bytes), `struct statx` (256 bytes), and
`struct statfs` (120 bytes); `pack_dirent64` builds one `linux_dirent64`.
"""

import stat as _st
import struct

from ...fields import Fields

S_IFMT = 0o170000
S_IFDIR = _st.S_IFDIR
S_IFREG = _st.S_IFREG
S_IFLNK = _st.S_IFLNK
S_IFCHR = _st.S_IFCHR
S_IFBLK = _st.S_IFBLK
S_IFIFO = _st.S_IFIFO
S_IFSOCK = _st.S_IFSOCK

# d_type values of linux_dirent64 (include/linux/fs_types.h).
DT_UNKNOWN, DT_FIFO, DT_CHR, DT_DIR, DT_BLK, DT_REG, DT_LNK, DT_SOCK = 0, 1, 2, 4, 6, 8, 10, 12

_DTYPE = {S_IFIFO: DT_FIFO, S_IFCHR: DT_CHR, S_IFDIR: DT_DIR, S_IFBLK: DT_BLK,
          S_IFREG: DT_REG, S_IFLNK: DT_LNK, S_IFSOCK: DT_SOCK}

# statx mask bits (include/uapi/linux/stat.h).
STATX_TYPE, STATX_MODE, STATX_NLINK, STATX_UID, STATX_GID = 0x1, 0x2, 0x4, 0x8, 0x10
STATX_ATIME, STATX_MTIME, STATX_CTIME, STATX_INO, STATX_SIZE, STATX_BLOCKS = (
    0x20, 0x40, 0x80, 0x100, 0x200, 0x400)
STATX_BASIC_STATS = 0x7FF
STATX_MNT_ID = 0x1000

# f_type magic numbers (include/uapi/linux/magic.h).
TMPFS_MAGIC = 0x01021994
PROC_SUPER_MAGIC = 0x9FA0
OVERLAYFS_SUPER_MAGIC = 0x794C7630
V9FS_MAGIC = 0x01021997
PIPEFS_MAGIC = 0x50495045
DEVPTS_SUPER_MAGIC = 0x1CD1


def dtype_of(mode):
    """d_type for a st_mode value."""
    return _DTYPE.get(mode & S_IFMT, DT_UNKNOWN)


def makedev(major, minor):
    """Linux's new_encode_dev() layout of a dev_t."""
    return ((major & 0xFFF) << 8) | (minor & 0xFF) | ((minor & ~0xFF) << 12) | ((major & ~0xFFF) << 32)


def major(dev):
    return ((dev >> 8) & 0xFFF) | ((dev >> 32) & ~0xFFF)


def minor(dev):
    return (dev & 0xFF) | ((dev >> 12) & ~0xFF)


class Stat(Fields):
    """What stat(2) reports; times are nanoseconds since the epoch."""

    __slots__ = ("st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_rdev",
                 "st_size", "st_blksize", "st_blocks", "st_atime_ns", "st_mtime_ns",
                 "st_ctime_ns", "mnt_id")

    def __init__(self, st_mode, st_ino=0, st_dev=0, st_nlink=1, st_uid=0, st_gid=0, st_rdev=0,
                 st_size=0, st_blksize=4096, st_blocks=0, st_atime_ns=0, st_mtime_ns=0,
                 st_ctime_ns=0, mnt_id=0):
        self.st_mode = st_mode
        self.st_ino = st_ino
        self.st_dev = st_dev
        self.st_nlink = st_nlink
        self.st_uid = st_uid
        self.st_gid = st_gid
        self.st_rdev = st_rdev
        self.st_size = st_size
        self.st_blksize = st_blksize
        self.st_blocks = st_blocks
        self.st_atime_ns = st_atime_ns
        self.st_mtime_ns = st_mtime_ns
        self.st_ctime_ns = st_ctime_ns
        self.mnt_id = mnt_id


class StatFs(Fields):
    """What statfs(2) reports."""

    __slots__ = ("f_type", "f_bsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree",
                 "f_fsid", "f_namelen", "f_frsize", "f_flags")

    def __init__(self, f_type, f_bsize=4096, f_blocks=0, f_bfree=0, f_bavail=0, f_files=0,
                 f_ffree=0, f_fsid=(0, 0), f_namelen=255, f_frsize=4096, f_flags=0):
        self.f_type = f_type
        self.f_bsize = f_bsize
        self.f_blocks = f_blocks
        self.f_bfree = f_bfree
        self.f_bavail = f_bavail
        self.f_files = f_files
        self.f_ffree = f_ffree
        self.f_fsid = f_fsid
        self.f_namelen = f_namelen
        self.f_frsize = f_frsize
        self.f_flags = f_flags


# struct stat, arch/x86/include/uapi/asm/stat.h: dev, ino, nlink (u64 each),
# mode, uid, gid, pad (u32 each), rdev, size, blksize, blocks (64-bit),
# atime, mtime, ctime as (sec, nsec) pairs, then 3 unused longs.
_STAT = struct.Struct("<QQQIIIiQqqqqqqqqq24x")
assert _STAT.size == 144

# struct statx, include/uapi/linux/stat.h.
_STATX_HEAD = struct.Struct("<IIQIIIHHQQQQ")            # 64 bytes
_STATX_TS = struct.Struct("<qIi")                       # 16 bytes
_STATX_TAIL = struct.Struct("<IIIIQII")                 # 32 bytes, then spare
STATX_SIZE_BYTES = 256

# struct statfs (x86-64): 7 longs, fsid (2 ints), namelen, frsize, flags, spare[4].
_STATFS = struct.Struct("<qqqqqqqiiqqq32x")
assert _STATFS.size == 120

_DIRENT_HEAD = struct.Struct("<QqHB")                   # 19 bytes, then the name
_OLD_DIRENT_HEAD = struct.Struct("<QQH")                # 18 bytes, then name, NUL, d_type


_NS = 1_000_000_000


def pack_stat(s):
    """`struct stat` bytes for `s`."""
    a, m, c = divmod(s.st_atime_ns, _NS), divmod(s.st_mtime_ns, _NS), divmod(s.st_ctime_ns, _NS)
    return _STAT.pack(s.st_dev, s.st_ino, s.st_nlink, s.st_mode, s.st_uid, s.st_gid, 0,
                      s.st_rdev, s.st_size, s.st_blksize, s.st_blocks,
                      a[0], a[1], m[0], m[1], c[0], c[1])


def unpack_stat(data):
    """Inverse of pack_stat, for tests and tools."""
    v = _STAT.unpack(data)
    return Stat(st_dev=v[0], st_ino=v[1], st_nlink=v[2], st_mode=v[3], st_uid=v[4], st_gid=v[5],
                st_rdev=v[7], st_size=v[8], st_blksize=v[9], st_blocks=v[10],
                st_atime_ns=v[11] * 10**9 + v[12], st_mtime_ns=v[13] * 10**9 + v[14],
                st_ctime_ns=v[15] * 10**9 + v[16])


def pack_statx(s):
    """`struct statx` bytes for `s`, with every basic field valid."""
    mask = STATX_BASIC_STATS | STATX_MNT_ID
    head = _STATX_HEAD.pack(mask, s.st_blksize, 0, s.st_nlink, s.st_uid, s.st_gid,
                            s.st_mode & 0xFFFF, 0, s.st_ino, s.st_size, s.st_blocks, 0)
    a, m, c = divmod(s.st_atime_ns, _NS), divmod(s.st_mtime_ns, _NS), divmod(s.st_ctime_ns, _NS)
    # btime is not in the mask; it is written as zero.
    times = (_STATX_TS.pack(a[0], a[1], 0) + _STATX_TS.pack(0, 0, 0)
             + _STATX_TS.pack(c[0], c[1], 0) + _STATX_TS.pack(m[0], m[1], 0))
    tail = _STATX_TAIL.pack(major(s.st_rdev), minor(s.st_rdev), major(s.st_dev), minor(s.st_dev),
                            s.mnt_id, 0, 0)
    out = head + times + tail
    return out + bytes(STATX_SIZE_BYTES - len(out))


def pack_statfs(f):
    """`struct statfs` bytes for `f`."""
    return _STATFS.pack(f.f_type, f.f_bsize, f.f_blocks, f.f_bfree, f.f_bavail, f.f_files,
                        f.f_ffree, f.f_fsid[0], f.f_fsid[1], f.f_namelen, f.f_frsize, f.f_flags)


def pack_dirent64(ino, next_off, dtype, name):
    """One `linux_dirent64`, NUL-terminated and padded to 8 bytes."""
    reclen = (_DIRENT_HEAD.size + len(name) + 1 + 7) & ~7
    rec = _DIRENT_HEAD.pack(ino, next_off, reclen, dtype) + name
    return rec + bytes(reclen - len(rec))


def pack_dirent(ino, next_off, dtype, name):
    """One old `linux_dirent` (getdents(2)): d_type is the record's last byte."""
    reclen = (_OLD_DIRENT_HEAD.size + len(name) + 2 + 7) & ~7
    rec = _OLD_DIRENT_HEAD.pack(ino, next_off, reclen) + name
    return rec + bytes(reclen - len(rec) - 1) + bytes([dtype])
