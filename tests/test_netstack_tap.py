"""Interoperability with the Linux kernel's TCP/IP over a TAP device.

Each test makes its own network namespace holding a TAP device: Linux owns
the kernel side (10.9.0.1/24), and our stack runs in a child process entered
into the namespace (``ip netns exec``) on the user-space side (10.9.0.2).
All traffic stays inside the namespace; it is deleted after every test.

Bulk tests move 50 MB each way through an echo and check sha256, with and
without the TAP offloads (IFF_VNET_HDR: TSO and checksum offload).  The
impaired runs (3% loss, 5% reordering, 20 ms delay each way, seeded, on our
side of the device) move 1 MB each way: at that loss rate TCP itself, Linux
included, manages a few Mbit/s, so 50 MB would take minutes.
"""

import json
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
s.sendall(data)
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


def test_linux_client_to_stack_impaired(ns):
    ns.stack("--tcp-echo", "7", "--impair", IMPAIR % 1)
    count, ok = _linux_client(ns, 1 << 20, timeout=180)
    assert count == 1 << 20 and ok


def test_stack_client_to_linux_impaired(ns):
    _linux_server(ns)
    p = ns.stack("--tcp-client", "%s:5000" % LINUX_IP, "--bytes", str(1 << 20),
                 "--impair", IMPAIR % 2, "--timeout", "150")
    r = _result(p, 180)
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
# tshark is not installed here; the capture is checked by an independent
# plain-Python decoder instead (struct, no netstack code).

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
