"""AF_INET sockets in real programs, served by netstack over the sandbox's
loopback: each runs natively and in the sandbox (ptrace and KVM) and the
outputs must match, or checks its own result where output is not
deterministic (ports).

- tests/c/inet_basic.c: errnos of bad input, TCP echo across fork,
  non-blocking connect + poll, UDP echo, MSG_PEEK/WAITALL/TRUNC, FIONREAD,
  SIGPIPE, options.
- python3: socket.create_server with a client thread moving 5 MB (sha256
  checked), http.server + urllib.request, asyncio streams echo.
- busybox httpd + wget.
"""

import os
import textwrap

import pytest
from conftest import TESTS_DIR

HERE = TESTS_DIR
PYTHON3 = "/usr/bin/python3"

BULK = textwrap.dedent("""
    import hashlib, socket, threading
    N = 5 * 1024 * 1024
    data = bytes(i * 31 & 0xFF for i in range(65536)) * (N // 65536)
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    def client():
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
            print("client digest echo", c.recv(64).decode() == hashlib.sha256(data).hexdigest())
    th = threading.Thread(target=client)
    th.start()
    conn, addr = srv.accept()
    h, n = hashlib.sha256(), 0
    while True:
        b = conn.recv(1 << 20)
        if not b:
            break
        h.update(b)
        n += len(b)
    conn.sendall(h.hexdigest().encode())
    conn.close()
    th.join()
    print("server got", n, "bytes from", addr[0], "sha256 ok", h.hexdigest() == hashlib.sha256(data).hexdigest())
""")

HTTP = textwrap.dedent("""
    import http.server, threading, urllib.request
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = ("hello from " + self.path).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    url = "http://127.0.0.1:%d/x?y=1" % srv.server_address[1]
    for _ in range(3):
        with urllib.request.urlopen(url, timeout=20) as r:
            print(r.status, r.read().decode())
    srv.shutdown()
    srv.server_close()
""")

# asyncio: epoll (edge and level) on netstack sockets, and a 5 MB write that
# waits for room (drain).
ASYNC = textwrap.dedent("""
    import asyncio
    async def handle(reader, writer):
        while True:
            line = await reader.readline()
            if not line:
                break
            writer.write(line.upper())
            await writer.drain()
        writer.close()
        await writer.wait_closed()
    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        got = asyncio.get_running_loop().create_future()
        async def sink(r, w):
            n = 0
            while (b := await r.read(1 << 16)):
                n += len(b)
            got.set_result(n)
            w.close()
        sink_srv = await asyncio.start_server(sink, "127.0.0.1", 0)
        sink_port = sink_srv.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for word in ("alpha", "beta", "gamma"):
            writer.write(word.encode() + b"\\n")
            await writer.drain()
            print((await reader.readline()).decode().strip())
        writer.write(b"x" * 60000 + b"\\n")
        await writer.drain()
        print(len(await reader.readline()))
        sink_r, sink_w = await asyncio.open_connection("127.0.0.1", sink_port)
        sink_w.write(b"y" * (5 << 20))
        await sink_w.drain()
        sink_w.close()
        await sink_w.wait_closed()
        print("sink got", await got)
        writer.close()
        await writer.wait_closed()
        for srv in (server, sink_srv):
            srv.close()
            await srv.wait_closed()
    asyncio.run(main())
""")


@pytest.fixture(scope="module")
def inet_basic(build_c):
    return build_c(os.path.join(HERE, "c", "inet_basic.c"))


def test_c_program_matches_native(sandbox, inet_basic):
    native = sandbox.native([inet_basic], timeout=60)
    boxed = sandbox.run([inet_basic], timeout=120)
    assert native.returncode == 0, native.stderr
    assert boxed.stdout.decode().splitlines() == native.stdout.decode().splitlines(), \
        boxed.stderr.decode()[-2000:]
    assert boxed.returncode == 0


@pytest.mark.parametrize("script", [BULK, HTTP, ASYNC], ids=["bulk", "http", "asyncio"])
def test_python_programs_match_native(sandbox, script):
    if not os.path.exists(PYTHON3):
        pytest.skip("no python3")
    native = sandbox.native([PYTHON3, "-c", script], timeout=60)
    assert native.returncode == 0, native.stderr.decode()[-2000:]
    boxed = sandbox.run([PYTHON3, "-c", script], timeout=180)
    assert boxed.stdout.decode() == native.stdout.decode(), boxed.stderr.decode()[-2000:]
    assert boxed.returncode == 0


def test_busybox_httpd_and_wget(sandbox, busybox, tmp_path_factory):
    www = tmp_path_factory.mktemp("www", numbered=True)
    os.chmod(www, 0o755)
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write("<p>served by busybox httpd</p>\n")
    os.chmod(os.path.join(www, "index.html"), 0o644)
    # The port is fixed inside the sandbox: its loopback is its own.
    script = ("%(bb)s httpd -f -p 127.0.0.1:8080 -h %(www)s & pid=$!; "
              "for i in 1 2 3 4 5 6 7 8 9 10; do "
              "  %(bb)s wget -q -O - http://127.0.0.1:8080/ && break; %(bb)s sleep 0.2; done; "
              "kill $pid; wait $pid; echo status $?") % {"bb": busybox, "www": www}
    boxed = sandbox.run([busybox, "sh", "-c", script], timeout=120)
    assert boxed.stdout.decode() == "<p>served by busybox httpd</p>\nstatus 143\n", \
        boxed.stderr.decode()[-2000:]
