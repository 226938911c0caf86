"""A sans-I/O codec for 9P2000.L, in the style of h11.

Theory of operation
-------------------
Nothing here touches a socket. `Decoder.feed(data)` takes whatever bytes
arrived (half a message, or three and a bit) and returns the complete
messages as frozen records; `encode(msg)` turns one message into bytes.
Two error types say whose fault a failure is: `RemoteProtocolError` when
the peer sent something malformed (the connection is then dead: the
decoder refuses further input, as h11 moves to ERROR), and
`LocalProtocolError` when our own code tried to encode something that
cannot be put on the wire.

Wire format (9P2000.L, all integers little-endian)::

    size[4] type[1] tag[2] body...

`size` counts the whole message, itself included, and must not exceed the
msize negotiated by Tversion. Strings are ``len[2] bytes``; they are kept
as `bytes` here because Linux names are bytes, not text. A qid is
``type[1] version[4] path[8]``.

Every request 9P2000.L defines is modelled: walk, open, read, readdir,
the write path (lcreate, mkdir, mknod, symlink, link, renameat,
unlinkat, setattr, fsync, write), xattrwalk/xattrcreate, lock/getlock,
and the older rename/remove. `Tunsupported` stays for a type a server
chooses not to serve (`_UNMODELLED_REQUESTS`, empty today): it decodes
without its body, so the server can answer Rlerror instead of dropping
the connection. A type number outside 9P2000.L is a `RemoteProtocolError`.
"""

import struct
from typing import ClassVar, NamedTuple

VERSION = b"9P2000.L"
NOTAG = 0xFFFF
NOFID = 0xFFFFFFFF
MAXWELEM = 16          # at most 16 names in one Twalk (9P spec, walk(5))
HEADER_SIZE = 7        # size[4] type[1] tag[2]
IOHDRSZ = 24           # per-message overhead reserved by Linux's 9p client
DEFAULT_MSIZE = (1 << 20) + IOHDRSZ   # 1 MiB of payload per Rread
MIN_MSIZE = 512

# qid.type bits: the high byte of the Plan 9 mode word.
QTDIR = 0x80
QTSYMLINK = 0x02
QTFILE = 0x00

# Tgetattr request_mask / Rgetattr valid bits (Linux include/net/9p/9p.h).
GETATTR_MODE = 0x00000001
GETATTR_NLINK = 0x00000002
GETATTR_UID = 0x00000004
GETATTR_GID = 0x00000008
GETATTR_RDEV = 0x00000010
GETATTR_ATIME = 0x00000020
GETATTR_MTIME = 0x00000040
GETATTR_CTIME = 0x00000080
GETATTR_INO = 0x00000100
GETATTR_SIZE = 0x00000200
GETATTR_BLOCKS = 0x00000400
GETATTR_BTIME = 0x00000800
GETATTR_GEN = 0x00001000
GETATTR_DATA_VERSION = 0x00002000
GETATTR_BASIC = 0x000007FF
GETATTR_ALL = 0x00003FFF


class ProtocolError(Exception):
    """Base of the two 9P protocol errors."""


class LocalProtocolError(ProtocolError):
    """Our side tried to encode a message that is not valid 9P2000.L."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that are not valid 9P2000.L; the connection is dead."""


class FrozenRecordError(AttributeError):
    """Assignment to a field of a message: messages are values."""


class _Record:
    """Base of the message classes that ``record`` makes: frozen, slotted, compared by value."""

    __slots__ = ()
    _fields = ()
    _defaults = {}

    def __init__(self, *args, **kwargs):
        fields = self._fields
        if len(args) > len(fields):
            raise TypeError("%s takes %d fields, %d given" % (type(self).__name__, len(fields), len(args)))
        setter = object.__setattr__
        for name, value in zip(fields, args):
            setter(self, name, value)
        for name in fields[len(args):]:
            if name in kwargs:
                setter(self, name, kwargs.pop(name))
            elif name in self._defaults:
                setter(self, name, self._defaults[name])
            else:
                raise TypeError("%s: missing field %r" % (type(self).__name__, name))
        if kwargs:
            raise TypeError("%s: no field %r" % (type(self).__name__, next(iter(kwargs))))
        self._check()

    def _check(self):
        """Validation a message class adds (as dataclasses' __post_init__)."""

    def __setattr__(self, name, value):
        raise FrozenRecordError("cannot assign to field %r" % name)

    __delattr__ = __setattr__

    def _values(self):
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self):
        return hash((self.__class__, self._values()))

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__,
                           ", ".join("%s=%r" % (n, getattr(self, n)) for n in self._fields))


def record(cls):
    """A frozen, slotted value class from ``cls``'s annotated fields (ClassVars excluded).

    What ``@dataclass(frozen=True, slots=True)`` gave, without its cost at
    import: dataclasses compiles code for every class, about 1 ms each, and
    this module is imported on the start-up path of both the Sentry and the
    Gofer.
    """
    fields = tuple(name for name, kind in cls.__dict__.get("__annotations__", {}).items()
                   if kind is not ClassVar and getattr(kind, "__origin__", None) is not ClassVar)
    ns = {k: v for k, v in cls.__dict__.items()
          if k not in fields and k not in ("__dict__", "__weakref__")}
    ns["__slots__"] = fields
    ns["_fields"] = fields
    ns["_defaults"] = {name: cls.__dict__[name] for name in fields if name in cls.__dict__}
    ns["__match_args__"] = fields
    return type(cls.__name__, (_Record,), ns)


_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_HEADER = struct.Struct("<IBH")
_QID = struct.Struct("<BIQ")
_FID = struct.Struct("<I")
_FID_FID = struct.Struct("<II")
_FID_U32 = struct.Struct("<II")
_FID_U64 = struct.Struct("<IQ")
_FID_U64_U32 = struct.Struct("<IQI")
_QID_U32 = struct.Struct("<BIQI")
# valid[8] qid[13] mode[4] uid[4] gid[4] nlink[8] rdev[8] size[8] blksize[8]
# blocks[8] atime_sec[8] atime_nsec[8] mtime_sec[8] mtime_nsec[8]
# ctime_sec[8] ctime_nsec[8] btime_sec[8] btime_nsec[8] gen[8] data_version[8]
_RGETATTR = struct.Struct("<QBIQIII" + "Q" * 15)
# Public for clients that unpack a reply's fixed body in place, on hot paths.
HEADER = _HEADER
RGETATTR_BODY = _RGETATTR
# type[4] bsize[4] blocks[8] bfree[8] bavail[8] files[8] ffree[8] fsid[8] namelen[4]
_RSTATFS = struct.Struct("<IIQQQQQQI")
# fid[4] valid[4] mode[4] uid[4] gid[4] size[8] atime[8+8] mtime[8+8]
_TSETATTR = struct.Struct("<IIIIIQQQQQ")
_U32_U32_U32 = struct.Struct("<III")
_U64 = struct.Struct("<Q")
_U64_U32 = struct.Struct("<QI")
_TLOCK = struct.Struct("<IBIQQI")       # fid type flags start length proc_id
_TGETLOCK = struct.Struct("<IBQQI")     # fid type start length proc_id
_RGETLOCK = struct.Struct("<BQQI")      # type start length proc_id
_U8 = struct.Struct("<B")
# qid[13] offset[8] type[1] name[s]: one entry of Rreaddir's data.
_DIRENT = struct.Struct("<BIQQBH")


@record
class Qid:
    """A server's unique identity for a file: type[1] version[4] path[8]."""

    type: int
    version: int
    path: int


class Dirent(NamedTuple):
    """One Rreaddir entry: qid[13] offset[8] type[1] name[s].

    `offset` is the value to pass to the next Treaddir to continue *after*
    this entry; `type` is a Linux DT_* value.
    """

    qid: Qid
    offset: int
    type: int
    name: bytes


# ---------------------------------------------------------------------------
# Messages. Each carries its type number as TYPE; `tag` comes first.

@record
class Tversion:
    """size[4] Tversion tag[2] msize[4] version[s]"""
    TYPE: ClassVar[int] = 100
    tag: int
    msize: int
    version: bytes


@record
class Rversion:
    """size[4] Rversion tag[2] msize[4] version[s]"""
    TYPE: ClassVar[int] = 101
    tag: int
    msize: int
    version: bytes


@record
class Tauth:
    """size[4] Tauth tag[2] afid[4] uname[s] aname[s] n_uname[4]"""
    TYPE: ClassVar[int] = 102
    tag: int
    afid: int
    uname: bytes
    aname: bytes
    n_uname: int


@record
class Rauth:
    """size[4] Rauth tag[2] aqid[13]"""
    TYPE: ClassVar[int] = 103
    tag: int
    aqid: Qid


@record
class Tattach:
    """size[4] Tattach tag[2] fid[4] afid[4] uname[s] aname[s] n_uname[4]"""
    TYPE: ClassVar[int] = 104
    tag: int
    fid: int
    afid: int
    uname: bytes
    aname: bytes
    n_uname: int


@record
class Rattach:
    """size[4] Rattach tag[2] qid[13]"""
    TYPE: ClassVar[int] = 105
    tag: int
    qid: Qid


@record
class Rlerror:
    """size[4] Rlerror tag[2] ecode[4] -- ecode is a Linux errno."""
    TYPE: ClassVar[int] = 7
    tag: int
    ecode: int


@record
class Tflush:
    """size[4] Tflush tag[2] oldtag[2]"""
    TYPE: ClassVar[int] = 108
    tag: int
    oldtag: int


@record
class Rflush:
    """size[4] Rflush tag[2]"""
    TYPE: ClassVar[int] = 109
    tag: int


@record
class Twalk:
    """size[4] Twalk tag[2] fid[4] newfid[4] nwname[2] nwname*(wname[s])"""
    TYPE: ClassVar[int] = 110
    tag: int
    fid: int
    newfid: int
    wnames: tuple

    def _check(self):
        # walk(5): "nwname ... must not exceed MAXWELEM (16)".
        if len(self.wnames) > MAXWELEM:
            raise LocalProtocolError("Twalk with %d names (max %d)" % (len(self.wnames), MAXWELEM))


@record
class Rwalk:
    """size[4] Rwalk tag[2] nwqid[2] nwqid*(wqid[13])"""
    TYPE: ClassVar[int] = 111
    tag: int
    qids: tuple


@record
class Tgetattr:
    """size[4] Tgetattr tag[2] fid[4] request_mask[8]"""
    TYPE: ClassVar[int] = 24
    tag: int
    fid: int
    request_mask: int


@record
class Rgetattr:
    """size[4] Rgetattr tag[2] valid[8] qid[13] mode[4] uid[4] gid[4] nlink[8]
    rdev[8] size[8] blksize[8] blocks[8] atime_sec[8] atime_nsec[8]
    mtime_sec[8] mtime_nsec[8] ctime_sec[8] ctime_nsec[8] btime_sec[8]
    btime_nsec[8] gen[8] data_version[8]"""
    TYPE: ClassVar[int] = 25
    tag: int
    valid: int
    qid: Qid
    mode: int
    uid: int
    gid: int
    nlink: int
    rdev: int
    size: int
    blksize: int
    blocks: int
    atime_sec: int
    atime_nsec: int
    mtime_sec: int
    mtime_nsec: int
    ctime_sec: int
    ctime_nsec: int
    btime_sec: int = 0
    btime_nsec: int = 0
    gen: int = 0
    data_version: int = 0


@record
class Tlopen:
    """size[4] Tlopen tag[2] fid[4] flags[4] -- flags are Linux open(2) flags."""
    TYPE: ClassVar[int] = 12
    tag: int
    fid: int
    flags: int


@record
class Rlopen:
    """size[4] Rlopen tag[2] qid[13] iounit[4]"""
    TYPE: ClassVar[int] = 13
    tag: int
    qid: Qid
    iounit: int


@record
class Tread:
    """size[4] Tread tag[2] fid[4] offset[8] count[4]"""
    TYPE: ClassVar[int] = 116
    tag: int
    fid: int
    offset: int
    count: int


@record
class Rread:
    """size[4] Rread tag[2] count[4] data[count]"""
    TYPE: ClassVar[int] = 117
    tag: int
    data: bytes


@record
class Twrite:
    """size[4] Twrite tag[2] fid[4] offset[8] count[4] data[count]"""
    TYPE: ClassVar[int] = 118
    tag: int
    fid: int
    offset: int
    data: bytes


@record
class Rwrite:
    """size[4] Rwrite tag[2] count[4]"""
    TYPE: ClassVar[int] = 119
    tag: int
    count: int


@record
class Treaddir:
    """size[4] Treaddir tag[2] fid[4] offset[8] count[4]"""
    TYPE: ClassVar[int] = 40
    tag: int
    fid: int
    offset: int
    count: int


@record
class Rreaddir:
    """size[4] Rreaddir tag[2] count[4] data[count]

    `data` is a run of entries (see `Dirent`, `pack_dirent`,
    `unpack_dirents`); an empty run means end of directory.
    """
    TYPE: ClassVar[int] = 41
    tag: int
    data: bytes


@record
class Treadlink:
    """size[4] Treadlink tag[2] fid[4]"""
    TYPE: ClassVar[int] = 22
    tag: int
    fid: int


@record
class Rreadlink:
    """size[4] Rreadlink tag[2] target[s]"""
    TYPE: ClassVar[int] = 23
    tag: int
    target: bytes


@record
class Tstatfs:
    """size[4] Tstatfs tag[2] fid[4]"""
    TYPE: ClassVar[int] = 8
    tag: int
    fid: int


@record
class Rstatfs:
    """size[4] Rstatfs tag[2] type[4] bsize[4] blocks[8] bfree[8] bavail[8]
    files[8] ffree[8] fsid[8] namelen[4]"""
    TYPE: ClassVar[int] = 9
    tag: int
    type: int
    bsize: int
    blocks: int
    bfree: int
    bavail: int
    files: int
    ffree: int
    fsid: int
    namelen: int


@record
class Tclunk:
    """size[4] Tclunk tag[2] fid[4]"""
    TYPE: ClassVar[int] = 120
    tag: int
    fid: int


@record
class Rclunk:
    """size[4] Rclunk tag[2]"""
    TYPE: ClassVar[int] = 121
    tag: int


# -- the write path (9P2000.L, Linux include/net/9p/9p.h and net/9p/client.c)

# Tsetattr valid bits (Linux P9_ATTR_*): ATIME/MTIME without *_SET mean "now".
SETATTR_MODE = 0x00000001
SETATTR_UID = 0x00000002
SETATTR_GID = 0x00000004
SETATTR_SIZE = 0x00000008
SETATTR_ATIME = 0x00000010
SETATTR_MTIME = 0x00000020
SETATTR_CTIME = 0x00000040
SETATTR_ATIME_SET = 0x00000080
SETATTR_MTIME_SET = 0x00000100
AT_REMOVEDIR = 0x200   # Tunlinkat flags, as unlinkat(2)


@record
class Tlcreate:
    """size[4] Tlcreate tag[2] fid[4] name[s] flags[4] mode[4] gid[4]

    Creates `name` in the directory `fid` and opens it: `fid` becomes the
    new file, open with `flags`."""
    TYPE: ClassVar[int] = 14
    tag: int
    fid: int
    name: bytes
    flags: int
    mode: int
    gid: int


@record
class Rlcreate:
    """size[4] Rlcreate tag[2] qid[13] iounit[4]"""
    TYPE: ClassVar[int] = 15
    tag: int
    qid: Qid
    iounit: int


@record
class Tsymlink:
    """size[4] Tsymlink tag[2] fid[4] name[s] symtgt[s] gid[4]"""
    TYPE: ClassVar[int] = 16
    tag: int
    fid: int
    name: bytes
    target: bytes
    gid: int


@record
class Rsymlink:
    """size[4] Rsymlink tag[2] qid[13]"""
    TYPE: ClassVar[int] = 17
    tag: int
    qid: Qid


@record
class Tmknod:
    """size[4] Tmknod tag[2] dfid[4] name[s] mode[4] major[4] minor[4] gid[4]"""
    TYPE: ClassVar[int] = 18
    tag: int
    dfid: int
    name: bytes
    mode: int
    major: int
    minor: int
    gid: int


@record
class Rmknod:
    """size[4] Rmknod tag[2] qid[13]"""
    TYPE: ClassVar[int] = 19
    tag: int
    qid: Qid


@record
class Tsetattr:
    """size[4] Tsetattr tag[2] fid[4] valid[4] mode[4] uid[4] gid[4] size[8]
    atime_sec[8] atime_nsec[8] mtime_sec[8] mtime_nsec[8]"""
    TYPE: ClassVar[int] = 26
    tag: int
    fid: int
    valid: int
    mode: int = 0
    uid: int = 0
    gid: int = 0
    size: int = 0
    atime_sec: int = 0
    atime_nsec: int = 0
    mtime_sec: int = 0
    mtime_nsec: int = 0


@record
class Rsetattr:
    """size[4] Rsetattr tag[2]"""
    TYPE: ClassVar[int] = 27
    tag: int


@record
class Tfsync:
    """size[4] Tfsync tag[2] fid[4] datasync[4]"""
    TYPE: ClassVar[int] = 50
    tag: int
    fid: int
    datasync: int = 0


@record
class Rfsync:
    """size[4] Rfsync tag[2]"""
    TYPE: ClassVar[int] = 51
    tag: int


@record
class Tlink:
    """size[4] Tlink tag[2] dfid[4] fid[4] name[s]"""
    TYPE: ClassVar[int] = 70
    tag: int
    dfid: int
    fid: int
    name: bytes


@record
class Rlink:
    """size[4] Rlink tag[2]"""
    TYPE: ClassVar[int] = 71
    tag: int


@record
class Tmkdir:
    """size[4] Tmkdir tag[2] dfid[4] name[s] mode[4] gid[4]"""
    TYPE: ClassVar[int] = 72
    tag: int
    dfid: int
    name: bytes
    mode: int
    gid: int


@record
class Rmkdir:
    """size[4] Rmkdir tag[2] qid[13]"""
    TYPE: ClassVar[int] = 73
    tag: int
    qid: Qid


@record
class Trenameat:
    """size[4] Trenameat tag[2] olddirfid[4] oldname[s] newdirfid[4] newname[s]"""
    TYPE: ClassVar[int] = 74
    tag: int
    olddirfid: int
    oldname: bytes
    newdirfid: int
    newname: bytes


@record
class Rrenameat:
    """size[4] Rrenameat tag[2]"""
    TYPE: ClassVar[int] = 75
    tag: int


@record
class Tunlinkat:
    """size[4] Tunlinkat tag[2] dirfid[4] name[s] flags[4]"""
    TYPE: ClassVar[int] = 76
    tag: int
    dirfid: int
    name: bytes
    flags: int


@record
class Runlinkat:
    """size[4] Runlinkat tag[2]"""
    TYPE: ClassVar[int] = 77
    tag: int


@record
class Trename:
    """size[4] Trename tag[2] fid[4] dfid[4] name[s] -- the older rename, by fid."""
    TYPE: ClassVar[int] = 20
    tag: int
    fid: int
    dfid: int
    name: bytes


@record
class Rrename:
    """size[4] Rrename tag[2]"""
    TYPE: ClassVar[int] = 21
    tag: int


@record
class Tremove:
    """size[4] Tremove tag[2] fid[4] -- removes the fid's file and clunks the fid."""
    TYPE: ClassVar[int] = 122
    tag: int
    fid: int


@record
class Rremove:
    """size[4] Rremove tag[2]"""
    TYPE: ClassVar[int] = 123
    tag: int


@record
class Txattrwalk:
    """size[4] Txattrwalk tag[2] fid[4] newfid[4] name[s]

    newfid reads (Tread) the value of attribute `name` of fid's file, or
    with an empty name the list of names, each NUL-terminated."""
    TYPE: ClassVar[int] = 30
    tag: int
    fid: int
    newfid: int
    name: bytes


@record
class Rxattrwalk:
    """size[4] Rxattrwalk tag[2] size[8]"""
    TYPE: ClassVar[int] = 31
    tag: int
    size: int


@record
class Txattrcreate:
    """size[4] Txattrcreate tag[2] fid[4] name[s] attr_size[8] flags[4]

    fid becomes a handle that takes the value by Twrite; Tclunk sets it
    (flags as setxattr(2)); attr_size 0 removes the attribute."""
    TYPE: ClassVar[int] = 32
    tag: int
    fid: int
    name: bytes
    size: int
    flags: int


@record
class Rxattrcreate:
    """size[4] Rxattrcreate tag[2]"""
    TYPE: ClassVar[int] = 33
    tag: int


# Tlock/Tgetlock (Linux include/net/9p/9p.h): lock types, flags and status.
LOCK_RDLCK, LOCK_WRLCK, LOCK_UNLCK = 0, 1, 2
LOCK_FLAGS_BLOCK, LOCK_FLAGS_RECLAIM = 1, 2
LOCK_SUCCESS, LOCK_BLOCKED, LOCK_ERROR, LOCK_GRACE = 0, 1, 2, 3


@record
class Tlock:
    """size[4] Tlock tag[2] fid[4] type[1] flags[4] start[8] length[8]
    proc_id[4] client_id[s] -- a POSIX record lock on an open fid;
    length 0 means to the end of the file."""
    TYPE: ClassVar[int] = 52
    tag: int
    fid: int
    type: int
    flags: int
    start: int
    length: int
    proc_id: int
    client_id: bytes


@record
class Rlock:
    """size[4] Rlock tag[2] status[1]"""
    TYPE: ClassVar[int] = 53
    tag: int
    status: int


@record
class Tgetlock:
    """size[4] Tgetlock tag[2] fid[4] type[1] start[8] length[8] proc_id[4] client_id[s]"""
    TYPE: ClassVar[int] = 54
    tag: int
    fid: int
    type: int
    start: int
    length: int
    proc_id: int
    client_id: bytes


@record
class Rgetlock:
    """size[4] Rgetlock tag[2] type[1] start[8] length[8] proc_id[4] client_id[s]

    The first lock that would conflict, or type LOCK_UNLCK if none."""
    TYPE: ClassVar[int] = 55
    tag: int
    type: int
    start: int
    length: int
    proc_id: int
    client_id: bytes


@record
class Tunsupported:
    """A 9P2000.L request this codec does not model; its body is not parsed.

    Decode-only: a server answers it with Rlerror (e.g. EROFS, EOPNOTSUPP).
    """
    tag: int
    type: int


# Every request type 9P2000.L defines (Linux include/net/9p/9p.h) is
# modelled above (Trename and Tremove for clients of servers without
# Trenameat/Tunlinkat, as diod); none is left to Tunsupported.
_UNMODELLED_REQUESTS = frozenset()


# ---------------------------------------------------------------------------
# Encoding.

def _s(value: bytes) -> bytes:
    """Encodes a 9P string: len[2] bytes."""
    if not isinstance(value, (bytes, bytearray)):
        raise LocalProtocolError("9P strings are bytes, not %s" % type(value).__name__)
    if len(value) > 0xFFFF:
        raise LocalProtocolError("string of %d bytes does not fit len[2]" % len(value))
    return _U16.pack(len(value)) + value


def _q(qid: Qid) -> bytes:
    return _QID.pack(qid.type, qid.version, qid.path)


def _data(value: bytes) -> bytes:
    return _U32.pack(len(value)) + value


_ENCODERS = {
    Tversion: lambda m: _U32.pack(m.msize) + _s(m.version),
    Rversion: lambda m: _U32.pack(m.msize) + _s(m.version),
    Tauth: lambda m: _U32.pack(m.afid) + _s(m.uname) + _s(m.aname) + _U32.pack(m.n_uname),
    Rauth: lambda m: _q(m.aqid),
    Tattach: lambda m: (_FID_FID.pack(m.fid, m.afid) + _s(m.uname) + _s(m.aname)
                        + _U32.pack(m.n_uname)),
    Rattach: lambda m: _q(m.qid),
    Rlerror: lambda m: _U32.pack(m.ecode),
    Tflush: lambda m: _U16.pack(m.oldtag),
    Rflush: lambda m: b"",
    Twalk: lambda m: (_FID_FID.pack(m.fid, m.newfid) + _U16.pack(len(m.wnames))
                      + b"".join(_s(n) for n in m.wnames)),
    Rwalk: lambda m: _U16.pack(len(m.qids)) + b"".join(_q(q) for q in m.qids),
    Tgetattr: lambda m: _FID_U64.pack(m.fid, m.request_mask),
    Rgetattr: lambda m: _RGETATTR.pack(
        m.valid, m.qid.type, m.qid.version, m.qid.path, m.mode, m.uid, m.gid,
        m.nlink, m.rdev, m.size, m.blksize, m.blocks, m.atime_sec, m.atime_nsec,
        m.mtime_sec, m.mtime_nsec, m.ctime_sec, m.ctime_nsec, m.btime_sec,
        m.btime_nsec, m.gen, m.data_version),
    Tlopen: lambda m: _FID_U32.pack(m.fid, m.flags),
    Rlopen: lambda m: _QID_U32.pack(m.qid.type, m.qid.version, m.qid.path, m.iounit),
    Tread: lambda m: _FID_U64_U32.pack(m.fid, m.offset, m.count),
    Rread: lambda m: _data(m.data),
    Twrite: lambda m: _FID_U64.pack(m.fid, m.offset) + _data(m.data),
    Rwrite: lambda m: _U32.pack(m.count),
    Treaddir: lambda m: _FID_U64_U32.pack(m.fid, m.offset, m.count),
    Rreaddir: lambda m: _data(m.data),
    Treadlink: lambda m: _FID.pack(m.fid),
    Rreadlink: lambda m: _s(m.target),
    Tstatfs: lambda m: _FID.pack(m.fid),
    Rstatfs: lambda m: _RSTATFS.pack(m.type, m.bsize, m.blocks, m.bfree, m.bavail,
                                     m.files, m.ffree, m.fsid, m.namelen),
    Tclunk: lambda m: _FID.pack(m.fid),
    Rclunk: lambda m: b"",
    Tlcreate: lambda m: _FID.pack(m.fid) + _s(m.name) + _U32_U32_U32.pack(m.flags, m.mode, m.gid),
    Rlcreate: lambda m: _QID_U32.pack(m.qid.type, m.qid.version, m.qid.path, m.iounit),
    Tsymlink: lambda m: _FID.pack(m.fid) + _s(m.name) + _s(m.target) + _U32.pack(m.gid),
    Rsymlink: lambda m: _q(m.qid),
    Tmknod: lambda m: (_FID.pack(m.dfid) + _s(m.name)
                       + struct.pack("<IIII", m.mode, m.major, m.minor, m.gid)),
    Rmknod: lambda m: _q(m.qid),
    Tsetattr: lambda m: _TSETATTR.pack(m.fid, m.valid, m.mode, m.uid, m.gid, m.size,
                                       m.atime_sec, m.atime_nsec, m.mtime_sec, m.mtime_nsec),
    Rsetattr: lambda m: b"",
    Tfsync: lambda m: _FID_U32.pack(m.fid, m.datasync),
    Rfsync: lambda m: b"",
    Tlink: lambda m: _FID_FID.pack(m.dfid, m.fid) + _s(m.name),
    Rlink: lambda m: b"",
    Tmkdir: lambda m: _FID.pack(m.dfid) + _s(m.name) + _FID_FID.pack(m.mode, m.gid),
    Rmkdir: lambda m: _q(m.qid),
    Trenameat: lambda m: (_FID.pack(m.olddirfid) + _s(m.oldname) + _FID.pack(m.newdirfid)
                          + _s(m.newname)),
    Rrenameat: lambda m: b"",
    Tunlinkat: lambda m: _FID.pack(m.dirfid) + _s(m.name) + _U32.pack(m.flags),
    Runlinkat: lambda m: b"",
    Trename: lambda m: _FID_FID.pack(m.fid, m.dfid) + _s(m.name),
    Rrename: lambda m: b"",
    Tremove: lambda m: _FID.pack(m.fid),
    Rremove: lambda m: b"",
    Txattrwalk: lambda m: _FID_FID.pack(m.fid, m.newfid) + _s(m.name),
    Rxattrwalk: lambda m: _U64.pack(m.size),
    Txattrcreate: lambda m: _FID.pack(m.fid) + _s(m.name) + _U64_U32.pack(m.size, m.flags),
    Rxattrcreate: lambda m: b"",
    Tlock: lambda m: (_TLOCK.pack(m.fid, m.type, m.flags, m.start, m.length, m.proc_id)
                      + _s(m.client_id)),
    Rlock: lambda m: bytes((m.status,)),
    Tgetlock: lambda m: (_TGETLOCK.pack(m.fid, m.type, m.start, m.length, m.proc_id)
                         + _s(m.client_id)),
    Rgetlock: lambda m: (_RGETLOCK.pack(m.type, m.start, m.length, m.proc_id)
                         + _s(m.client_id)),
}


def encode(msg, msize: int = 0) -> bytes:
    """Returns the wire bytes of one message.

    Raises LocalProtocolError if a field is out of range, a string is not
    bytes or too long, or (when msize is given) the message exceeds msize.
    """
    try:
        encoder = _ENCODERS[type(msg)]
    except KeyError:
        raise LocalProtocolError("cannot encode %r" % (msg,)) from None
    try:
        body = encoder(msg)
        size = HEADER_SIZE + len(body)
        header = _HEADER.pack(size, msg.TYPE, msg.tag)
    except (struct.error, TypeError, AttributeError) as exc:
        raise LocalProtocolError("bad field in %s: %s" % (type(msg).__name__, exc)) from exc
    if msize and size > msize:
        raise LocalProtocolError("%s of %d bytes exceeds msize %d" % (type(msg).__name__, size, msize))
    return header + body


def pack_dirent(qid: Qid, offset: int, dtype: int, name: bytes) -> bytes:
    """Encodes one Rreaddir entry: qid[13] offset[8] type[1] name[s]."""
    if len(name) > 0xFFFF:
        raise LocalProtocolError("name too long for a dirent")
    try:
        return _DIRENT.pack(qid.type, qid.version, qid.path, offset, dtype, len(name)) + name
    except struct.error as exc:
        raise LocalProtocolError("bad dirent field: %s" % exc) from exc


def dirent_size(name: bytes) -> int:
    """The encoded size of a dirent with this name."""
    return _DIRENT.size + len(name)


def unpack_dirents(data: bytes) -> list:
    """Decodes Rreaddir data into a list of `Dirent`.

    Raises RemoteProtocolError on a truncated entry.
    """
    out = []
    off, end = 0, len(data)
    unpack = _DIRENT.unpack_from
    while off < end:
        if end - off < _DIRENT.size:
            raise RemoteProtocolError("truncated dirent")
        qtype, qvers, qpath, offset, dtype, n = unpack(data, off)
        off += _DIRENT.size
        if end - off < n:
            raise RemoteProtocolError("truncated dirent name")
        out.append(Dirent(Qid(qtype, qvers, qpath), offset, dtype, bytes(data[off:off + n])))
        off += n
    return out


# ---------------------------------------------------------------------------
# Decoding. Each decoder gets (tag, buf, off, end) where buf[off:end] is the
# body, and must consume it exactly.

def _fixed(st: struct.Struct, buf, off: int, end: int) -> tuple:
    if end - off < st.size:
        raise RemoteProtocolError("truncated message body")
    return st.unpack_from(buf, off)


def _str_at(buf, off: int, end: int):
    """Decodes a string at off; returns (bytes, new offset)."""
    if end - off < 2:
        raise RemoteProtocolError("truncated string length")
    (n,) = _U16.unpack_from(buf, off)
    off += 2
    if end - off < n:
        raise RemoteProtocolError("truncated string")
    return bytes(buf[off:off + n]), off + n


def _done(off: int, end: int) -> None:
    if off != end:
        raise RemoteProtocolError("%d trailing bytes after message body" % (end - off))


def _only(st: struct.Struct, buf, off: int, end: int) -> tuple:
    """Unpacks a body that is exactly one fixed struct."""
    if end - off != st.size:
        raise RemoteProtocolError("body is %d bytes, expected %d" % (end - off, st.size))
    return st.unpack_from(buf, off)


def _d_version(cls):
    def dec(tag, buf, off, end):
        (msize,) = _fixed(_U32, buf, off, end)
        version, off = _str_at(buf, off + 4, end)
        _done(off, end)
        return cls(tag, msize, version)
    return dec


def _d_tauth(tag, buf, off, end):
    (afid,) = _fixed(_U32, buf, off, end)
    uname, off = _str_at(buf, off + 4, end)
    aname, off = _str_at(buf, off, end)
    (n_uname,) = _only(_U32, buf, off, end)
    return Tauth(tag, afid, uname, aname, n_uname)


def _d_tattach(tag, buf, off, end):
    fid, afid = _fixed(_FID_FID, buf, off, end)
    uname, off = _str_at(buf, off + 8, end)
    aname, off = _str_at(buf, off, end)
    (n_uname,) = _only(_U32, buf, off, end)
    return Tattach(tag, fid, afid, uname, aname, n_uname)


def _d_qid_only(cls):
    def dec(tag, buf, off, end):
        return cls(tag, Qid(*_only(_QID, buf, off, end)))
    return dec


def _d_empty(cls):
    def dec(tag, buf, off, end):
        _done(off, end)
        return cls(tag)
    return dec


def _d_one(cls, st):
    def dec(tag, buf, off, end):
        return cls(tag, *_only(st, buf, off, end))
    return dec


def _d_twalk(tag, buf, off, end):
    fid, newfid = _fixed(_FID_FID, buf, off, end)
    off += 8
    (nwname,) = _fixed(_U16, buf, off, end)
    off += 2
    if nwname > MAXWELEM:
        raise RemoteProtocolError("Twalk with %d names (max %d)" % (nwname, MAXWELEM))
    names = []
    for _ in range(nwname):
        name, off = _str_at(buf, off, end)
        names.append(name)
    _done(off, end)
    return Twalk(tag, fid, newfid, tuple(names))


def _d_rwalk(tag, buf, off, end):
    (nwqid,) = _fixed(_U16, buf, off, end)
    off += 2
    if nwqid > MAXWELEM:
        raise RemoteProtocolError("Rwalk with %d qids (max %d)" % (nwqid, MAXWELEM))
    if end - off != nwqid * _QID.size:
        raise RemoteProtocolError("Rwalk body does not hold %d qids" % nwqid)
    unpack = _QID.unpack_from
    qids = tuple(Qid(*unpack(buf, off + i * _QID.size)) for i in range(nwqid))
    return Rwalk(tag, qids)


def _d_rgetattr(tag, buf, off, end):
    f = _only(_RGETATTR, buf, off, end)
    return Rgetattr(tag, f[0], Qid(f[1], f[2], f[3]), *f[4:])


def _d_rlopen_like(cls):
    """Rlopen/Rlcreate: qid[13] iounit[4]."""
    def dec(tag, buf, off, end):
        qtype, qvers, qpath, iounit = _only(_QID_U32, buf, off, end)
        return cls(tag, Qid(qtype, qvers, qpath), iounit)
    return dec


def _d_data(cls):
    """Rread/Rreaddir: count[4] data[count]."""
    def dec(tag, buf, off, end):
        (count,) = _fixed(_U32, buf, off, end)
        if end - off - 4 != count:
            raise RemoteProtocolError("%s count %d does not match body" % (cls.__name__, count))
        return cls(tag, bytes(buf[off + 4:end]))
    return dec


def _d_twrite(tag, buf, off, end):
    fid, offset = _fixed(_FID_U64, buf, off, end)
    off += _FID_U64.size
    (count,) = _fixed(_U32, buf, off, end)
    if end - off - 4 != count:
        raise RemoteProtocolError("Twrite count %d does not match body" % count)
    return Twrite(tag, fid, offset, bytes(buf[off + 4:end]))


def _d_rreadlink(tag, buf, off, end):
    target, off = _str_at(buf, off, end)
    _done(off, end)
    return Rreadlink(tag, target)


def _d_fid_name(cls, tail: struct.Struct):
    """fid[4] name[s] then a fixed tail (Tlcreate, Tmknod, Tmkdir, Tunlinkat, Txattrcreate)."""
    def dec(tag, buf, off, end):
        (fid,) = _fixed(_FID, buf, off, end)
        name, off = _str_at(buf, off + 4, end)
        return cls(tag, fid, name, *_only(tail, buf, off, end))
    return dec


def _d_tsymlink(tag, buf, off, end):
    (fid,) = _fixed(_FID, buf, off, end)
    name, off = _str_at(buf, off + 4, end)
    target, off = _str_at(buf, off, end)
    (gid,) = _only(_U32, buf, off, end)
    return Tsymlink(tag, fid, name, target, gid)


def _d_tlink_like(cls):
    """fid[4] fid[4] name[s]: Tlink, Trename, Txattrwalk."""
    def dec(tag, buf, off, end):
        a, b = _fixed(_FID_FID, buf, off, end)
        name, off = _str_at(buf, off + 8, end)
        _done(off, end)
        return cls(tag, a, b, name)
    return dec


def _d_trenameat(tag, buf, off, end):
    (olddir,) = _fixed(_FID, buf, off, end)
    oldname, off = _str_at(buf, off + 4, end)
    (newdir,) = _fixed(_FID, buf, off, end)
    newname, off = _str_at(buf, off + 4, end)
    _done(off, end)
    return Trenameat(tag, olddir, oldname, newdir, newname)


def _d_fixed_then_str(cls, st):
    """A fixed head then one string: Tlock, Tgetlock, Rgetlock."""
    def dec(tag, buf, off, end):
        head = _fixed(st, buf, off, end)
        text, off = _str_at(buf, off + st.size, end)
        _done(off, end)
        return cls(tag, *head, text)
    return dec


def _d_unsupported(type_):
    def dec(tag, buf, off, end):
        return Tunsupported(tag, type_)
    return dec


REQUESTS = {
    Tversion.TYPE: _d_version(Tversion),
    Tauth.TYPE: _d_tauth,
    Tattach.TYPE: _d_tattach,
    Tflush.TYPE: _d_one(Tflush, _U16),
    Twalk.TYPE: _d_twalk,
    Tgetattr.TYPE: _d_one(Tgetattr, _FID_U64),
    Tlopen.TYPE: _d_one(Tlopen, _FID_U32),
    Tread.TYPE: _d_one(Tread, _FID_U64_U32),
    Twrite.TYPE: _d_twrite,
    Treaddir.TYPE: _d_one(Treaddir, _FID_U64_U32),
    Treadlink.TYPE: _d_one(Treadlink, _FID),
    Tstatfs.TYPE: _d_one(Tstatfs, _FID),
    Tclunk.TYPE: _d_one(Tclunk, _FID),
    Tlcreate.TYPE: _d_fid_name(Tlcreate, _U32_U32_U32),
    Tsymlink.TYPE: _d_tsymlink,
    Tmknod.TYPE: _d_fid_name(Tmknod, struct.Struct("<IIII")),
    Tsetattr.TYPE: _d_one(Tsetattr, _TSETATTR),
    Tfsync.TYPE: _d_one(Tfsync, _FID_U32),
    Tlink.TYPE: _d_tlink_like(Tlink),
    Tmkdir.TYPE: _d_fid_name(Tmkdir, _FID_FID),
    Trenameat.TYPE: _d_trenameat,
    Tunlinkat.TYPE: _d_fid_name(Tunlinkat, _U32),
    Trename.TYPE: _d_tlink_like(Trename),
    Tremove.TYPE: _d_one(Tremove, _FID),
    Txattrwalk.TYPE: _d_tlink_like(Txattrwalk),
    Txattrcreate.TYPE: _d_fid_name(Txattrcreate, _U64_U32),
    Tlock.TYPE: _d_fixed_then_str(Tlock, _TLOCK),
    Tgetlock.TYPE: _d_fixed_then_str(Tgetlock, _TGETLOCK),
}
REQUESTS.update({t: _d_unsupported(t) for t in _UNMODELLED_REQUESTS})

REPLIES = {
    Rversion.TYPE: _d_version(Rversion),
    Rauth.TYPE: _d_qid_only(Rauth),
    Rattach.TYPE: _d_qid_only(Rattach),
    Rlerror.TYPE: _d_one(Rlerror, _U32),
    Rflush.TYPE: _d_empty(Rflush),
    Rwalk.TYPE: _d_rwalk,
    Rgetattr.TYPE: _d_rgetattr,
    Rlopen.TYPE: _d_rlopen_like(Rlopen),
    Rread.TYPE: _d_data(Rread),
    Rwrite.TYPE: _d_one(Rwrite, _U32),
    Rreaddir.TYPE: _d_data(Rreaddir),
    Rreadlink.TYPE: _d_rreadlink,
    Rstatfs.TYPE: _d_one(Rstatfs, _RSTATFS),
    Rclunk.TYPE: _d_empty(Rclunk),
    Rlcreate.TYPE: _d_rlopen_like(Rlcreate),
    Rsymlink.TYPE: _d_qid_only(Rsymlink),
    Rmknod.TYPE: _d_qid_only(Rmknod),
    Rsetattr.TYPE: _d_empty(Rsetattr),
    Rfsync.TYPE: _d_empty(Rfsync),
    Rlink.TYPE: _d_empty(Rlink),
    Rmkdir.TYPE: _d_qid_only(Rmkdir),
    Rrenameat.TYPE: _d_empty(Rrenameat),
    Runlinkat.TYPE: _d_empty(Runlinkat),
    Rrename.TYPE: _d_empty(Rrename),
    Rremove.TYPE: _d_empty(Rremove),
    Rxattrwalk.TYPE: _d_one(Rxattrwalk, _U64),
    Rxattrcreate.TYPE: _d_empty(Rxattrcreate),
    Rlock.TYPE: _d_one(Rlock, _U8),
    Rgetlock.TYPE: _d_fixed_then_str(Rgetlock, _RGETLOCK),
}

ALL = {**REQUESTS, **REPLIES}


def decode_frame(buf, off: int, size: int, accept=ALL):
    """Decodes the message occupying buf[off:off+size] (size already read).

    Raises RemoteProtocolError if the type is not in `accept` or the body
    is malformed.
    """
    if size < HEADER_SIZE:
        raise RemoteProtocolError("message size %d is smaller than the header" % size)
    _, type_, tag = _HEADER.unpack_from(buf, off)
    try:
        decoder = accept[type_]
    except KeyError:
        raise RemoteProtocolError("unexpected message type %d" % type_) from None
    return decoder(tag, buf, off + HEADER_SIZE, off + size)


def decode(frame: bytes, accept=ALL):
    """Decodes one complete message; its size field must match len(frame)."""
    if len(frame) < HEADER_SIZE:
        raise RemoteProtocolError("message shorter than the header")
    (size,) = _U32.unpack_from(frame, 0)
    if size != len(frame):
        raise RemoteProtocolError("size field %d does not match frame length %d" % (size, len(frame)))
    return decode_frame(frame, 0, size, accept)


class Decoder:
    """Splits a byte stream into 9P messages.

    `accept` is REQUESTS for a server, REPLIES for a client (or ALL).
    `msize` bounds every message; set it to the negotiated value after
    Tversion.

    Malformed input raises RemoteProtocolError, and the decoder stays
    failed (`error` is set) from then on. If whole messages came before the
    bad bytes in the same chunk, feed() returns them first and the error is
    raised by the next feed(); check `error` after serving them.
    """

    __slots__ = ("msize", "error", "_accept", "_buf")

    def __init__(self, accept=ALL, msize: int = DEFAULT_MSIZE):
        self.msize = msize
        self.error = None
        self._accept = accept
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole message."""
        return len(self._buf)

    def feed(self, data: bytes) -> list:
        """Adds received bytes; returns the messages now complete, in order."""
        if self.error is not None:
            raise self.error
        buf = self._buf
        buf += data
        out = []
        off, n = 0, len(buf)
        try:
            while n - off >= 4:
                (size,) = _U32.unpack_from(buf, off)
                # Checked as soon as the size field is in, so an oversize
                # message is refused before we buffer it.
                if size < HEADER_SIZE:
                    raise RemoteProtocolError("message size %d is smaller than the header" % size)
                if size > self.msize:
                    raise RemoteProtocolError("message size %d exceeds msize %d" % (size, self.msize))
                if n - off < size:
                    break
                out.append(decode_frame(buf, off, size, self._accept))
                off += size
        except RemoteProtocolError as exc:
            self.error = exc
            buf.clear()
            if not out:
                raise
            return out
        del buf[:off]
        return out
