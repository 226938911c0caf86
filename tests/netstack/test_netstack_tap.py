"""Interoperability with the Linux kernel's TCP/IP over a TAP device.

Each test makes its own network namespace holding a TAP device: Linux owns
the kernel side (10.9.0.1/24), and our stack runs in a child process entered
into the namespace (``ip netns exec``) on the user-space side (10.9.0.2).
All traffic stays inside the namespace; it is deleted after every test.

Bulk tests move 50 MB each way through an echo and check sha256, with and
without the TAP offloads (IFF_VNET_HDR: TSO and checksum offload).  The
impaired runs (3% loss, 5% reordering, 20 ms delay each way, seeded, on our
side of the device) move 2 MB, then 50 MB, each way: at that loss rate
loss-based congestion control (our CUBIC, Linux's Reno or CUBIC) manages
1-2 Mbit/s, so each 50 MB run takes about 4 minutes.  (The host's own default, BBR, ignores random loss and does
~100 Mbit/s: see the reference benchmarks.)
"""

import json
import shutil
import subprocess
import sys

import pytest

from pyvisor.netstack.netns import Namespace as _Namespace, unavailable

LINUX_IP, STACK_IP = "10.9.0.1", "10.9.0.2"

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=unavailable() or "")


class Namespace(_Namespace):
    def stack(self, *args):
        return super().stack(STACK_IP + "/24", *args)


@pytest.fixture
def ns():
    n = Namespace()
    try:
        yield n
    finally:
        n.close()
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert n.name not in out


def _result(p, timeout):
    out, err = p.communicate(timeout=timeout)
    lines = [l for l in out.splitlines() if l.startswith("{")]
    assert lines, "no result; stderr:\n" + err
    return json.loads(lines[-1])


LINUX_ECHO_CLIENT = r"""
import hashlib, random, socket, sys, threading, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = random.Random(5).randbytes(n)
deadline = time.time() + 10
while True:
    try:
        s = socket.create_connection((host, port), timeout=60)
        break
    except OSError:
        if time.time() > deadline:
            raise
        time.sleep(0.1)
got = hashlib.sha256()
count = [0]
def reader():
    while True:
        d = s.recv(1 << 20)
        if not d:
            return
        got.update(d)
        count[0] += len(d)
t = threading.Thread(target=reader)
t.start()
# sendall's timeout bounds the whole call (Python >= 3.5), so send in
# chunks: the 60 s then means "no progress for 60 s", at any size.
for i in range(0, n, 1 << 16):
    s.sendall(data[i:i + (1 << 16)])
s.shutdown(socket.SHUT_WR)
t.join()
print(count[0], got.hexdigest() == hashlib.sha256(data).hexdigest())
"""

LINUX_ECHO_SERVER = r"""
import socket, sys, threading
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], int(sys.argv[2])))
l.listen(8)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((sys.argv[1], int(sys.argv[2])))
def udp():
    while True:
        d, a = u.recvfrom(65536)
        u.sendto(d, a)
threading.Thread(target=udp, daemon=True).start()
print("LISTENING", flush=True)
def serve(c):
    while True:
        d = c.recv(1 << 20)
        if not d:
            break
        c.sendall(d)
    c.close()
while True:
    c, _ = l.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def _linux_server(ns):
    p = ns.popen([sys.executable, "-c", LINUX_ECHO_SERVER, LINUX_IP, "5000"])
    assert p.stdout.readline().strip() == "LISTENING"
    return p


def _linux_client(ns, nbytes, timeout=120):
    out = ns.python(LINUX_ECHO_CLIENT.replace("sys.argv[1]", repr(STACK_IP))
                    .replace("int(sys.argv[2])", "7").replace("int(sys.argv[3])", str(nbytes)),
                    timeout=timeout)
    count, ok = out.split()
    return int(count), ok == "True"


def test_ping_from_linux_is_answered(ns):
    ns.stack("--tcp-echo", "7")
    out = ns.python(r"""
import os, socket, struct, time
def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s & 0xffff) + (s >> 16); s += s >> 16
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(3)
ok = 0
for seq in range(3):
    body = b'pyvisor-ping-%d!' % seq
    hdr = struct.pack('!BBHHH', 8, 0, 0, 77, seq)
    pkt = struct.pack('!BBHHH', 8, 0, csum(hdr + body), 77, seq) + body
    s.sendto(pkt, ('STACK_IP', 0))
    while True:
        data, addr = s.recvfrom(2048)
        ihl = (data[0] & 15) * 4
        typ, code, _, ident, sq = struct.unpack('!BBHHH', data[ihl:ihl + 8])
        if typ == 0 and ident == 77 and sq == seq:
            assert data[ihl + 8:] == body and csum(data[ihl:]) == 0
            ok += 1
            break
print(ok)
""".replace("STACK_IP", STACK_IP))
    assert out.strip() == "3"


OFFLOAD = pytest.mark.parametrize("offload", [(), ("--no-offload",)],
                                  ids=["vnet-offload", "plain-frames"])


@OFFLOAD
def test_linux_client_to_stack_listener(ns, offload):
    ns.stack("--tcp-echo", "7", *offload)
    count, ok = _linux_client(ns, 50 << 20)
    assert count == 50 << 20 and ok


@OFFLOAD
def test_stack_client_to_linux_listener(ns, offload):
    _linux_server(ns)
    p = ns.stack("--tcp-client", "%s:5000" % LINUX_IP, "--bytes", str(50 << 20),
                 "--timeout", "100", *offload)
    r = _result(p, 120)
    assert r["ok"], r


IMPAIR = "loss=0.03,reorder=0.05,delay=0.02,seed=%d"

# 50 MB under 3% loss and a 40 ms RTT takes about 4 minutes per run (235
# and 253 s measured): our echo and client send with CUBIC, and loss-based
# congestion control cannot go faster at that loss rate (Mathis et al.:
# about MSS/RTT * 1.22/sqrt(p), 2 Mbit/s here; Linux's own Reno through the
# same impairment measured 1.7 Mbit/s, see bench/test_bench_netstack.py).
# The issue asks for 50 MB, so CI pays those minutes; the 2 MB runs fail
# faster when something is broken (`-k 2MB` for a quick check).
IMPAIRED_SIZES = pytest.mark.parametrize("nbytes", [
    2 << 20,
    50 << 20,
], ids=["2MB", "50MB"])


@IMPAIRED_SIZES
def test_linux_client_to_stack_impaired(ns, nbytes):
    ns.stack("--tcp-echo", "7", "--impair", IMPAIR % 1)
    count, ok = _linux_client(ns, nbytes, timeout=60 + nbytes / 100_000)
    assert count == nbytes and ok


@IMPAIRED_SIZES
def test_stack_client_to_linux_impaired(ns, nbytes):
    _linux_server(ns)
    limit = 60 + nbytes / 100_000
    p = ns.stack("--tcp-client", "%s:5000" % LINUX_IP, "--bytes", str(nbytes),
                 "--impair", IMPAIR % 2, "--timeout", str(limit))
    r = _result(p, limit + 30)
    assert r["ok"], r


def test_udp_echo_both_ways(ns):
    _linux_server(ns)
    server = ns.stack("--udp-echo", "7")
    out = ns.python(r"""
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(3)
for i in range(10):
    msg = b'dgram-%d' % i * 50
    u.sendto(msg, ('STACK_IP', 7))
    d, a = u.recvfrom(65536)
    assert d == msg and a == ('STACK_IP', 7), (d[:20], a)
print('ok')
""".replace("STACK_IP", STACK_IP))
    assert out.strip() == "ok"
    ns.stop(server)  # one process per TAP device
    p = ns.stack("--udp-client", "%s:5000" % LINUX_IP, "--count", "10", "--timeout", "20")
    r = _result(p, 30)
    assert r["ok"], r


# --------------------------------------------------------------- capture
# Captures are checked twice: by an independent plain-Python decoder
# (struct, no netstack code) and, where it is installed, by tshark.

def _sum(data):
    import struct as st
    if len(data) % 2:
        data += b"\0"
    s = sum(st.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _frame_problem(f):
    import struct as st
    if len(f) < 14:
        return "short ethernet"
    et = st.unpack_from("!H", f, 12)[0]
    if et == 0x0806:
        return None if len(f) >= 42 else "short arp"
    if et == 0x86DD:
        return None  # the kernel's IPv6 chatter; not ours
    if et != 0x0800:
        return "ethertype %#x" % et
    ip = f[14:]
    ihl = (ip[0] & 15) * 4
    if ip[0] >> 4 != 4 or ihl < 20 or len(ip) < ihl:
        return "bad ip header"
    total = st.unpack_from("!H", ip, 2)[0]
    if total > len(ip) or total < ihl:
        return "bad ip length"
    if _sum(ip[:ihl]) != 0xFFFF:
        return "bad ip checksum"
    proto, l4 = ip[9], ip[ihl:total]
    pseudo = ip[12:20] + st.pack("!BBH", 0, proto, len(l4))
    if proto == 6:
        if len(l4) < 20 or (l4[12] >> 4) * 4 < 20 or (l4[12] >> 4) * 4 > len(l4):
            return "bad tcp header"
        if _sum(pseudo + l4) != 0xFFFF:
            return "bad tcp checksum"
    elif proto == 17:
        if len(l4) < 8 or st.unpack_from("!H", l4, 4)[0] != len(l4):
            return "bad udp length"
        if st.unpack_from("!H", l4, 6)[0] and _sum(pseudo + l4) != 0xFFFF:
            return "bad udp checksum"
    elif proto == 1:
        if _sum(l4) != 0xFFFF:
            return "bad icmp checksum"
    return None


def test_capture_of_a_run_has_no_malformed_frames(ns, tmp_path):
    from pyvisor.netstack.link.capture import read_pcap
    pcap = tmp_path / "run.pcap"
    p = ns.stack("--tcp-echo", "7", "--udp-echo", "7", "--no-offload", "--pcap", str(pcap))
    count, ok = _linux_client(ns, 2 << 20)
    assert ok
    ns.stop(p)
    frames = read_pcap(pcap)
    assert len(frames) > 1000
    problems = [(i, _frame_problem(f)) for i, f in enumerate(frames) if _frame_problem(f)]
    assert problems == []


# --------------------------------------------------------------- AF_PACKET

def test_af_packet_link_on_a_veth_end():
    """The stack takes over one end of a veth pair (in a namespace where the
    kernel has no address on it) through AF_PACKET; Linux holds the other."""
    from pyvisor.netstack.netns import veth_pair
    with _Namespace(tap=None, tag="pvpk") as linux, _Namespace(tap=None, tag="pvpk") as ours:
        veth_pair(linux, ours, LINUX_IP, "10.9.0.99")
        ours.ip("addr", "flush", "dev", "pv-b")  # the kernel must not answer for us
        ours.stack(STACK_IP + "/24", "--tcp-echo", "7", device=("--packet", "pv-b"))
        out = linux.python(LINUX_ECHO_CLIENT.replace("sys.argv[1]", repr(STACK_IP))
                           .replace("int(sys.argv[2])", "7")
                           .replace("int(sys.argv[3])", str(5 << 20)), timeout=120)
        count, ok = out.split()
        assert int(count) == 5 << 20 and ok == "True"


# --------------------------------------------------------------- tshark

# What tshark may say about a capture of a deliberately lossy run: its TCP
# analysis flags retransmissions, duplicate ACKs, out-of-order segments,
# "previous segment not captured" and "ACKed unseen segment" (warnings and
# notes), all of which 3% loss and reordering cause on purpose.  What it
# must never say: a malformed packet (a dissector ran off the end or found
# a field it cannot parse), or a bad IP/TCP/UDP/ICMP checksum.  Checksum
# status 0 is PROTO_CHECKSUM_E_BAD in Wireshark's epan/proto.h.
TSHARK_BAD = ("_ws.malformed || _ws.expert.severity >= error"
              " || ip.checksum.status == 0 || tcp.checksum.status == 0"
              " || udp.checksum.status == 0 || icmp.checksum.status == 0")

LINUX_UDP_AND_PING = r"""
import socket, struct, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(0.5)
got = 0
for i in range(40):
    u.sendto(b'x%d' % i * (1 + 97 * i), ('STACK_IP', 7))   # up to ~12 KB: fragments
    try:
        got += bool(u.recvfrom(65536)[0])
    except socket.timeout:
        pass
icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
for seq in range(5):   # echo requests; the checksum is left to tshark to judge
    hdr = struct.pack('!BBHHH', 8, 0, 0, 78, seq) + b'ping-from-linux!'
    s = sum(struct.unpack('!12H', hdr))
    s = (s & 0xffff) + (s >> 16); s += s >> 16
    icmp.sendto(hdr[:2] + struct.pack('!H', ~s & 0xffff) + hdr[4:], ('STACK_IP', 0))
    time.sleep(0.05)
print(got)
"""


# Our test ports carry random bytes: decode them as data, not as whatever
# tshark registers there (5000 is GSM "IPA", whose dissector then reports
# random payload as malformed IPA).
_AS_DATA = [a for port in ("tcp.port==5000", "udp.port==5000", "tcp.port==7", "udp.port==7")
            for a in ("-d", port + ",data")]


def _tshark(pcap, *args):
    r = subprocess.run(["tshark", "-n", "-r", str(pcap), "-o", "ip.check_checksum:TRUE",
                        "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
                        *_AS_DATA, *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.skipif(shutil.which("tshark") is None,
                    reason="tshark is not installed (apt-get install tshark)")
def test_tshark_finds_no_malformed_packet_or_bad_checksum(ns, tmp_path):
    """A capture (CaptureLink, on the wire side of the impairment) of TCP
    both ways, UDP with fragments, and ping, under loss and reordering."""
    pcap = tmp_path / "impaired.pcap"
    p = ns.stack("--tcp-echo", "7", "--udp-echo", "7", "--no-offload", "--pcap", str(pcap),
                 "--impair", "loss=0.03,reorder=0.05,delay=0.005,seed=7")
    count, ok = _linux_client(ns, 512 << 10)
    assert count == 512 << 10 and ok
    assert int(ns.python(LINUX_UDP_AND_PING.replace("STACK_IP", STACK_IP))) > 20
    ns.stop(p)
    c = _linux_server(ns)
    p = ns.stack("--tcp-client", "%s:5000" % LINUX_IP, "--bytes", str(512 << 10), "--no-offload",
                 "--pcap", str(tmp_path / "client.pcap"), "--timeout", "60",
                 "--impair", "loss=0.03,reorder=0.05,delay=0.005,seed=8")
    assert _result(p, 90)["ok"]
    ns.stop(c)
    for cap in (pcap, tmp_path / "client.pcap"):
        # The capture is worth checking: it holds every protocol, and the
        # loss shows (so the filter below runs over retransmissions too).
        protocols = _tshark(cap, "-T", "fields", "-e", "frame.protocols")
        assert "eth:ethertype:ip:tcp" in protocols
        assert _tshark(cap, "-Y", "tcp.analysis.retransmission").strip()
        assert _tshark(cap, "-Y", TSHARK_BAD) == ""
    protocols = _tshark(pcap, "-T", "fields", "-e", "frame.protocols")
    assert "ip:udp:data" in protocols and "ip:icmp" in protocols
    assert _tshark(pcap, "-Y", "ip.flags.mf == 1 || ip.frag_offset > 0").strip()


def test_tshark_filter_catches_a_bad_checksum(tmp_path):
    """The filter above is not vacuous: one good frame passes it, the same
    frame with a flipped payload byte (bad TCP checksum) and one cut short
    (malformed) do not."""
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (apt-get install tshark)")
    from pyvisor.netstack.link.capture import CaptureLink
    from pyvisor.netstack.link.loopback import LoopbackLink
    from pyvisor.netstack.addr import ip
    from pyvisor.netstack.tcp_segment import ACK, PSH, Segment, encode
    from pyvisor.netstack import _checksum as ck
    buf, n = encode(Segment(1000, 2000, ACK | PSH, 512, b"payload!" * 8), 40000, 80,
                    ip("10.9.0.2"), ip("10.9.0.1"), 34)
    ck.build_ipv4(buf, 14, 20 + n, 1, 0x4000, 64, 6, ip("10.9.0.2"), ip("10.9.0.1"))
    buf[:14] = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
    good, bad_sum, short = bytes(buf), bytearray(buf), bytes(buf[:40])
    bad_sum[-1] ^= 0xFF
    for frames, expect in (([good], ""), ([bad_sum], "1"), ([short], "1")):
        path = tmp_path / "f.pcap"
        cap = CaptureLink(LoopbackLink(), path)
        for f in frames:
            cap.write(f)
        cap.close()
        out = _tshark(path, "-Y", TSHARK_BAD, "-T", "fields", "-e", "frame.number")
        assert out.strip() == expect, (frames, out)


# --------------------------------------------------------------- bridge

def _bridged(impair):
    """Two namespaces joined by ``pyvisor.netstack.bridge``; yields (a, b)."""
    relay = _Namespace(tap=None, tag="pvbr")
    a = _Namespace(tap=None, tag="pvbr")
    b = _Namespace(tap=None, tag="pvbr")
    try:
        br = relay.popen([sys.executable, "-m", "pyvisor.netstack.bridge", "pvbr-a", "pvbr-b",
                          "--impair", impair])
        assert br.stdout.readline().strip() == "READY"
        for n, dev, addr in ((a, "pvbr-a", "10.7.0.1/24"), (b, "pvbr-b", "10.7.0.2/24")):
            relay.ip("link", "set", dev, "netns", n.name)
            n.ip("addr", "add", addr, "dev", dev)
            n.ip("link", "set", dev, "up")
        return relay, a, b
    except Exception:
        for n in (relay, a, b):
            n.close()
        raise


BRIDGE_PEER = r"""
import socket, sys
if sys.argv[1] == 'serve':
    l = socket.socket(); l.bind(('10.7.0.2', 6000)); l.listen(1)
    print('LISTENING', flush=True)
    c, _ = l.accept(); n = 0
    while True:
        d = c.recv(65536)
        if not d:
            break
        n += len(d)
    print(n, flush=True)
else:
    s = socket.create_connection(('10.7.0.2', 6000), timeout=float(sys.argv[2]))
    s.sendall(b'b' * 1000000); s.close()
    print('sent')
"""


def test_bridge_carries_linux_tcp_and_drops_what_it_is_told_to():
    relay, a, b = _bridged("delay=0.005,seed=1")
    try:
        srv = b.popen([sys.executable, "-c", BRIDGE_PEER, "serve"])
        assert srv.stdout.readline().strip() == "LISTENING"
        assert a.python(BRIDGE_PEER, "send", 10).strip() == "sent"
        assert srv.stdout.readline().strip() == "1000000"
    finally:
        for n in (relay, a, b):
            n.close()
    relay, a, b = _bridged("loss=1.0,seed=1")
    try:
        b.popen([sys.executable, "-c", BRIDGE_PEER, "serve"]).stdout.readline()
        with pytest.raises(AssertionError, match="timed out"):
            a.python(BRIDGE_PEER, "send", 1)
    finally:
        for n in (relay, a, b):
            n.close()
