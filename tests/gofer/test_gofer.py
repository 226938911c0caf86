"""Tests of the sans-I/O 9P2000.L codec, pyvisor/gofer/p9.py.

Wire bytes are pinned by hand-written frames taken from the 9P2000.L
layouts, so the encoder is not only checked against its own decoder.
"""

import os
import struct

import pytest

from pyvisor.gofer import p9
from pyvisor.gofer.p9 import LocalProtocolError, Qid, RemoteProtocolError

Q1 = Qid(p9.QTDIR, 7, 0x1122334455667788)
Q2 = Qid(p9.QTFILE, 0, 42)

REQUESTS = [
    p9.Tversion(p9.NOTAG, 8192, p9.VERSION),
    p9.Tauth(1, 5, b"root", b"", 0),
    p9.Tattach(2, 0, p9.NOFID, b"user", b"/", 1000),
    p9.Tflush(3, 2),
    p9.Twalk(4, 0, 1, ()),
    p9.Twalk(5, 0, 1, (b"usr", b"lib", b"x" * 300)),
    p9.Tgetattr(6, 1, p9.GETATTR_ALL),
    p9.Tlopen(7, 1, 0o200000),
    p9.Tread(8, 1, 1 << 40, 4096),
    p9.Twrite(9, 1, 3, b"data"),
    p9.Treaddir(10, 1, 17, 8000),
    p9.Treadlink(11, 1),
    p9.Tstatfs(12, 1),
    p9.Tclunk(13, 1),
]

REPLIES = [
    p9.Rversion(p9.NOTAG, 8192, p9.VERSION),
    p9.Rauth(1, Q1),
    p9.Rattach(2, Q1),
    p9.Rlerror(3, 2),
    p9.Rflush(4),
    p9.Rwalk(5, ()),
    p9.Rwalk(6, (Q1, Q2)),
    p9.Rgetattr(7, p9.GETATTR_BASIC, Q2, 0o100644, 1000, 1000, 1, 0, 12345, 4096, 32,
                1, 2, 3, 4, 5, 6, 7, 8, 9, 10),
    p9.Rlopen(8, Q2, 8168),
    p9.Rread(9, b"hello"),
    p9.Rread(10, b""),
    p9.Rwrite(11, 4),
    p9.Rreaddir(12, p9.pack_dirent(Q1, 1, 4, b".") + p9.pack_dirent(Q2, 2, 8, b"file")),
    p9.Rreadlink(13, b"/etc/passwd"),
    p9.Rstatfs(14, 0xEF53, 4096, 100, 50, 40, 1000, 900, 0xABCDEF, 255),
    p9.Rclunk(15),
]


# -- exact wire bytes --------------------------------------------------------

def test_tversion_wire_bytes():
    frame = p9.encode(p9.Tversion(p9.NOTAG, 8192, b"9P2000.L"))
    # size[4]=21 type[1]=100 tag[2]=0xffff msize[4]=8192 version[s]
    assert frame == (b"\x15\x00\x00\x00" b"\x64" b"\xff\xff" b"\x00\x20\x00\x00"
                     b"\x08\x00" b"9P2000.L")


def test_twalk_wire_bytes():
    frame = p9.encode(p9.Twalk(1, 2, 3, (b"ab", b"c")))
    assert frame == (struct.pack("<IBH", 24, 110, 1) + struct.pack("<IIH", 2, 3, 2)
                     + b"\x02\x00ab" + b"\x01\x00c")


def test_rlerror_wire_bytes():
    assert p9.encode(p9.Rlerror(9, 30)) == struct.pack("<IBHI", 11, 7, 9, 30)


def test_rlopen_wire_bytes():
    frame = p9.encode(p9.Rlopen(1, Qid(0x80, 2, 3), 4096))
    assert frame == struct.pack("<IBH", 24, 13, 1) + struct.pack("<BIQ", 0x80, 2, 3) + struct.pack("<I", 4096)


def test_rgetattr_layout():
    msg = REPLIES[7]
    frame = p9.encode(msg)
    # header 7 + valid 8 + qid 13 + mode/uid/gid 12 + 15 u64 fields = 160
    assert len(frame) == 160
    valid, qtype, qvers, qpath, mode = struct.unpack_from("<QBIQI", frame, 7)
    assert (valid, qtype, qvers, qpath, mode) == (p9.GETATTR_BASIC, Q2.type, 0, 42, 0o100644)
    # nlink is right after mode uid gid; data_version is the last field.
    assert struct.unpack_from("<Q", frame, 7 + 8 + 13 + 12)[0] == 1
    assert struct.unpack_from("<Q", frame, 152)[0] == 10


def test_rstatfs_and_treaddir_layout():
    assert len(p9.encode(REPLIES[14])) == 7 + 4 + 4 + 6 * 8 + 4
    assert p9.encode(p9.Treaddir(1, 2, 3, 4)) == struct.pack("<IBHIQI", 23, 40, 1, 2, 3, 4)


def test_dirent_layout_and_roundtrip():
    raw = p9.pack_dirent(Q1, 99, 4, b"name")
    # qid[13] offset[8] type[1] name[s]
    assert raw == struct.pack("<BIQ", Q1.type, Q1.version, Q1.path) + struct.pack("<QBH", 99, 4, 4) + b"name"
    assert p9.dirent_size(b"name") == len(raw)
    both = raw + p9.pack_dirent(Q2, 100, 8, b"")
    assert p9.unpack_dirents(both) == [p9.Dirent(Q1, 99, 4, b"name"), p9.Dirent(Q2, 100, 8, b"")]
    assert p9.unpack_dirents(b"") == []


@pytest.mark.parametrize("cut", [1, 23, 24, 26])
def test_truncated_dirent(cut):
    raw = p9.pack_dirent(Q1, 1, 4, b"abc")
    with pytest.raises(RemoteProtocolError):
        p9.unpack_dirents(raw[:cut])


# -- round trips, fed several ways ---------------------------------------------

@pytest.mark.parametrize("msg", REQUESTS, ids=lambda m: type(m).__name__)
def test_request_roundtrip(msg):
    assert p9.Decoder(p9.REQUESTS).feed(p9.encode(msg)) == [msg]
    assert p9.decode(p9.encode(msg), p9.REQUESTS) == msg


@pytest.mark.parametrize("msg", REPLIES, ids=lambda m: type(m).__name__)
def test_reply_roundtrip(msg):
    assert p9.Decoder(p9.REPLIES).feed(p9.encode(msg)) == [msg]


def test_feed_byte_by_byte():
    stream = b"".join(p9.encode(m) for m in REPLIES)
    dec = p9.Decoder(p9.REPLIES)
    out = []
    for i in range(len(stream)):
        out += dec.feed(stream[i:i + 1])
    assert out == REPLIES
    assert dec.pending == 0


def test_many_messages_in_one_chunk_with_trailing_part():
    stream = b"".join(p9.encode(m) for m in REQUESTS)
    extra = p9.encode(p9.Tclunk(99, 5))
    dec = p9.Decoder(p9.REQUESTS)
    assert dec.feed(stream + extra[:5]) == REQUESTS
    assert dec.pending == 5
    assert dec.feed(extra[5:]) == [p9.Tclunk(99, 5)]
    assert dec.pending == 0


def test_feed_empty_and_partial_header():
    dec = p9.Decoder()
    assert dec.feed(b"") == []
    assert dec.feed(b"\x0b\x00") == []
    assert dec.pending == 2


def test_every_9p2000l_request_is_modelled():
    # Linux include/net/9p/9p.h: the 9P2000.L and 9P2000 requests a client sends.
    linux = {8, 12, 14, 16, 18, 20, 22, 24, 26, 30, 32, 40, 50, 52, 54, 70, 72, 74, 76,
             100, 102, 104, 108, 110, 116, 118, 120, 122}
    assert set(p9.REQUESTS) == linux
    body = struct.pack("<IBQQI", 1, 0, 0, 0, 1) + b"\x01\x00d"
    frame = struct.pack("<IBH", 7 + len(body), 54, 5) + body
    assert p9.Decoder(p9.REQUESTS).feed(frame) == [p9.Tgetlock(5, 1, 0, 0, 0, 1, b"d")]


@pytest.mark.parametrize("msg", [
    p9.Tlcreate(1, 2, b"f", os.O_RDWR | os.O_CREAT, 0o644, 0), p9.Rlcreate(1, p9.Qid(0, 0, 9), 4096),
    p9.Tsymlink(1, 2, b"l", b"/t", 0), p9.Rsymlink(1, p9.Qid(2, 0, 9)),
    p9.Tmknod(1, 2, b"p", 0o10600, 0, 0, 0), p9.Rmknod(1, p9.Qid(0, 0, 9)),
    p9.Tsetattr(1, 2, p9.SETATTR_SIZE | p9.SETATTR_MTIME, size=7), p9.Rsetattr(1),
    p9.Tfsync(1, 2, 1), p9.Rfsync(1), p9.Tlink(1, 2, 3, b"n"), p9.Rlink(1),
    p9.Tmkdir(1, 2, b"d", 0o755, 0), p9.Rmkdir(1, p9.Qid(0x80, 0, 9)),
    p9.Trenameat(1, 2, b"a", 3, b"b"), p9.Rrenameat(1),
    p9.Tunlinkat(1, 2, b"a", p9.AT_REMOVEDIR), p9.Runlinkat(1),
    p9.Trename(1, 2, 3, b"n"), p9.Rrename(1), p9.Tremove(1, 2), p9.Rremove(1),
    p9.Txattrwalk(1, 2, 3, b"user.a"), p9.Rxattrwalk(1, 5),
    p9.Txattrcreate(1, 2, b"user.a", 5, 1), p9.Rxattrcreate(1),
    p9.Tlock(1, 2, p9.LOCK_WRLCK, p9.LOCK_FLAGS_BLOCK, 0, 10, 77, b"host"), p9.Rlock(1, 1),
    p9.Tgetlock(1, 2, p9.LOCK_RDLCK, 5, 0, 77, b""), p9.Rgetlock(1, 2, 0, 0, 0, b""),
])
def test_write_path_messages_round_trip(msg):
    frame = p9.encode(msg)
    assert p9.decode(frame) == msg
    # Fed byte by byte, then with a truncated body: the decoder waits, then refuses.
    dec = p9.Decoder(p9.ALL)
    out = []
    for i in range(len(frame)):
        out += dec.feed(frame[i:i + 1])
    assert out == [msg]
    if len(frame) > p9.HEADER_SIZE:
        short = struct.pack("<I", len(frame) - 1) + frame[4:-1]
        with pytest.raises(p9.RemoteProtocolError):
            p9.decode(short)


# -- malformed input -------------------------------------------------------------

def _frame(type_, tag, body):
    return struct.pack("<IBH", 7 + len(body), type_, tag) + body


@pytest.mark.parametrize("data", [
    struct.pack("<I", 0),                                # size smaller than the header
    struct.pack("<I", 6) + b"\x00\x00",
    _frame(99, 1, b""),                                  # type number outside 9P2000.L
    _frame(p9.Rclunk.TYPE, 1, b""),                      # a reply sent to a server
    _frame(p9.Tclunk.TYPE, 1, b"\x01\x00"),              # body too short
    _frame(p9.Tclunk.TYPE, 1, b"\x01\x00\x00\x00\x00"),  # trailing byte
    _frame(p9.Twalk.TYPE, 1, struct.pack("<IIH", 0, 1, 1) + b"\x05\x00ab"),    # truncated string
    _frame(p9.Twalk.TYPE, 1, struct.pack("<IIH", 0, 1, 2) + b"\x01\x00a"),     # missing name
    _frame(p9.Twalk.TYPE, 1, struct.pack("<IIH", 0, 1, 17) + b"\x01\x00a" * 17),  # > MAXWELEM
    _frame(p9.Tversion.TYPE, 1, struct.pack("<I", 8192) + b"\x01"),          # truncated length
    _frame(p9.Tattach.TYPE, 1, struct.pack("<II", 0, 0) + b"\x00\x00\x00\x00"),  # no n_uname
    _frame(p9.Twrite.TYPE, 1, struct.pack("<IQI", 0, 0, 5) + b"abc"),         # count mismatch
], ids=range(12))
def test_malformed_requests(data):
    dec = p9.Decoder(p9.REQUESTS)
    with pytest.raises(RemoteProtocolError):
        dec.feed(data)
    # The connection is dead from here on, as h11's ERROR state.
    with pytest.raises(RemoteProtocolError):
        dec.feed(p9.encode(p9.Tclunk(1, 1)))


@pytest.mark.parametrize("data", [
    _frame(p9.Tclunk.TYPE, 1, b"\x00" * 4),                          # a request sent to a client
    _frame(p9.Rread.TYPE, 1, struct.pack("<I", 10) + b"short"),      # count beyond body
    _frame(p9.Rread.TYPE, 1, struct.pack("<I", 1) + b"long"),        # count short of body
    _frame(p9.Rwalk.TYPE, 1, struct.pack("<H", 2) + b"\x00" * 13),   # fewer qids than nwqid
    _frame(p9.Rwalk.TYPE, 1, struct.pack("<H", 17) + b"\x00" * 13 * 17),
    _frame(p9.Rgetattr.TYPE, 1, b"\x00" * 152),
    _frame(p9.Rlerror.TYPE, 1, b"\x00\x00"),
    _frame(p9.Rreadlink.TYPE, 1, b"\x09\x00abc"),
    _frame(p9.Rflush.TYPE, 1, b"x"),
    _frame(p9.Rattach.TYPE, 1, b"\x00" * 12),
], ids=range(10))
def test_malformed_replies(data):
    with pytest.raises(RemoteProtocolError):
        p9.Decoder(p9.REPLIES).feed(data)


def test_oversize_is_refused_from_the_size_field_alone():
    dec = p9.Decoder(p9.REQUESTS, msize=8192)
    with pytest.raises(RemoteProtocolError):
        dec.feed(struct.pack("<I", 8193))


def test_message_exactly_msize_is_accepted():
    msg = p9.Rread(1, b"x" * (8192 - 11))
    assert p9.Decoder(p9.REPLIES, msize=8192).feed(p9.encode(msg)) == [msg]


def test_msize_can_be_lowered_after_version():
    dec = p9.Decoder(p9.REPLIES)
    dec.msize = 512
    with pytest.raises(RemoteProtocolError):
        dec.feed(p9.encode(p9.Rread(1, b"x" * 600)))


def test_decode_checks_frame_length():
    frame = p9.encode(p9.Tclunk(1, 2))
    with pytest.raises(RemoteProtocolError):
        p9.decode(frame + b"\x00")
    with pytest.raises(RemoteProtocolError):
        p9.decode(frame[:6])


# -- encoding errors are ours ------------------------------------------------------

def test_twalk_more_than_16_names_is_local_error():
    with pytest.raises(LocalProtocolError):
        p9.Twalk(1, 0, 1, (b"a",) * 17)


@pytest.mark.parametrize("msg", [
    p9.Tclunk(1, -1),                        # fid out of u32 range
    p9.Tclunk(0x10000, 1),                   # tag out of u16 range
    p9.Tread(1, 1, 1 << 64, 1),              # offset out of u64 range
    p9.Twalk(1, 0, 1, ("text",)),            # names are bytes
    p9.Twalk(1, 0, 1, (b"x" * 0x10000,)),    # string too long for len[2]
    p9.Rreadlink(1, None),
], ids=range(6))
def test_bad_fields_are_local_errors(msg):
    with pytest.raises(LocalProtocolError):
        p9.encode(msg)


def test_encode_checks_msize_and_type():
    with pytest.raises(LocalProtocolError):
        p9.encode(p9.Rread(1, b"x" * 600), msize=512)
    with pytest.raises(LocalProtocolError):
        p9.encode(p9.Tunsupported(1, 72))
    with pytest.raises(LocalProtocolError):
        p9.encode(object())
    with pytest.raises(LocalProtocolError):
        p9.pack_dirent(Q1, -1, 4, b"a")


def test_good_messages_before_garbage_are_delivered_first():
    good = p9.encode(p9.Tclunk(1, 2))
    dec = p9.Decoder(p9.REQUESTS)
    assert dec.feed(good + _frame(99, 1, b"")) == [p9.Tclunk(1, 2)]
    assert isinstance(dec.error, RemoteProtocolError)
    with pytest.raises(RemoteProtocolError):
        dec.feed(b"")
