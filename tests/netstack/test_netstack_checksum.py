"""_checksum.pyx against a plain-Python reference and known vectors."""

import random
import struct

import pytest

from pyvisor.netstack import _checksum as ck


def ref_sum(data):
    if len(data) % 2:
        data = bytes(data) + b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def ref_checksum(data):
    return ~ref_sum(data) & 0xFFFF


def test_rfc1071_style_known_ipv4_header():
    hdr = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert ck.checksum(hdr) == 0xB861
    fixed = hdr[:10] + b"\xb8\x61" + hdr[12:]
    assert ck.checksum(fixed) == 0


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 1499, 1500, 65535])
def test_checksum_matches_reference(n):
    rng = random.Random(n)
    data = bytes(rng.randrange(256) for _ in range(n))
    assert ck.checksum(data) == ref_checksum(data)
    assert ck.sum16(data) == ref_sum(data)


def test_all_ones_and_zeros():
    assert ck.checksum(b"\xff" * 64) == 0
    assert ck.checksum(b"") == 0xFFFF
    assert ck.checksum(b"\0" * 10) == 0xFFFF


def test_partial_sums_combine():
    rng = random.Random(1)
    data = bytes(rng.randrange(256) for _ in range(1000))
    part = ck.sum16(data, 0, 400)
    assert ck.checksum(data, 400, 1000, part) == ck.checksum(data)


def test_ranges_are_clamped_not_raised():
    data = b"\x01\x02\x03\x04"
    assert ck.sum16(data, 0, 100) == ck.sum16(data)
    assert ck.sum16(data, 3, 1) == 0
    assert ck.sum16(data, -5, 2) == ck.sum16(data, 0, 2)


def test_accepts_bytearray_and_memoryview():
    data = bytearray(b"hello world!")
    assert ck.checksum(data) == ck.checksum(bytes(data)) == ck.checksum(memoryview(data))


def test_pseudo_header_and_transport_checksum():
    src, dst = 0x0A000001, 0x0A000002
    seg = bytearray(b"\x30\x39\x00\x50" + b"\0" * 16 + b"payload")
    ref = ref_checksum(struct.pack("!IIBBH", src, dst, 0, 6, len(seg)) + bytes(seg))
    assert ck.transport_checksum(src, dst, 6, seg) == ref
    assert ck.pseudo_sum(src, dst, 6, len(seg)) == ref_sum(
        struct.pack("!IIBBH", src, dst, 0, 6, len(seg)))


def test_ipv4_build_parse_round_trip():
    buf = bytearray(34)
    ck.build_ipv4(buf, 14, 20, 0x1234, 0x4000, 63, 17, 0xC0A80001, 0xC0A80002, tos=0x10)
    v = ck.parse_ipv4(buf, 14)
    assert v == (4, 20, 0x10, 20, 0x1234, 0x4000, 63, 17, 0xC0A80001, 0xC0A80002, True)
    buf[20] ^= 1
    assert ck.parse_ipv4(buf, 14)[-1] is False


def test_ipv4_parse_with_impossible_ihl_reports_bad_sum():
    hdr = bytearray(20)
    ck.build_ipv4(hdr, 0, 20, 1, 0, 64, 6, 1, 2)
    hdr[0] = 0x4F  # IHL 60 bytes, more than the buffer
    assert ck.parse_ipv4(hdr, 0)[1] == 60
    assert ck.parse_ipv4(hdr, 0)[-1] is False


def test_tcp_build_parse_round_trip_and_checksum():
    buf = bytearray(100)
    n = ck.build_tcp(buf, 0, 1234, 80, 0xDEADBEEF, 0x01020304, 0x18, 5000,
                     b"\x01\x01\x01\x01", b"abc", 0x0A000001, 0x0A000002)
    assert n == 27
    assert ck.parse_tcp(buf, 0) == (1234, 80, 0xDEADBEEF, 0x01020304, 24, 0x18, 5000, 0)
    assert ck.transport_checksum(0x0A000001, 0x0A000002, 6, buf, 0, n) == 0


def test_udp_zero_checksum_sent_as_ffff():
    # Find a payload whose checksum computes to 0 and check the RFC 768 rule.
    buf = bytearray(10)
    for x in range(65536):
        payload = x.to_bytes(2, "big")
        n = ck.build_udp(buf, 0, 1, 2, payload, 0, 0)
        if ck.get16(buf, 6) == 0xFFFF:
            break
    else:
        pytest.fail("no payload hit the zero case")
    assert n == 10
    assert ck.transport_checksum(0, 0, 17, buf) == 0


def test_get_put_helpers():
    b = bytearray(8)
    ck.put16(b, 0, 0x1ABCD)  # truncated to 16 bits
    ck.put32(b, 2, 0x01020304)
    assert ck.get16(b, 0) == 0xABCD and ck.get32(b, 2) == 0x01020304
