"""Processes, threads, signals and IPC: real programs under ``pyvisor run``.

Each test runs a program the way a user does (``python -m pyvisor run --
PROGRAM ARGS``) and, where the output is deterministic, compares stdout,
stderr where it matters, and the exit status with the same run done natively.
The ``sandbox`` fixture (conftest.py) runs every test on each platform and
checks that no stub or Gofer process is left behind.

The "bad input" tests at the end feed the Sentry what Linux rejects (signal
numbers out of range, unaligned or unmapped futex words, a fork bomb) and kill
programs while their threads are blocked in system calls.
"""

import os
import select
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import TESTS_DIR

HERE = TESTS_DIR
PYTHON = os.path.realpath(sys.executable)   # a real ELF binary, not a pyenv shim script
SH = "/bin/sh"


def assert_same(sandbox, argv, input=b"", stderr=False, **kwargs):
    """Run argv natively and sandboxed; assert equal stdout and status (and
    stderr too if asked). Returns the sandboxed CompletedProcess."""
    native = sandbox.native(argv, input=input, **kwargs)
    boxed = sandbox.run(argv, input=input, **kwargs)
    assert (boxed.stdout, boxed.returncode) == (native.stdout, native.returncode), boxed.stderr
    if stderr:
        assert boxed.stderr == native.stderr
    return boxed


def write(path, text):
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    return path


def c_program(build_c, name):
    return build_c(os.path.join(HERE, "c", name + ".c"), static=True, extra=("-pthread",))


def python_code(code):
    """argv running a dedented Python snippet without site (faster start)."""
    return [PYTHON, "-S", "-c", textwrap.dedent(code)]


# Known Sentry bug, on the ptrace platform only (kvm passes): exit_group(2),
# or death by a signal, of a process whose other threads are blocked in a
# system call interrupts those calls (EINTR) but the process never finishes
# exiting, so pyvisor never returns.
def run_bounded(sandbox, argv, timeout, options=()):
    """Run argv sandboxed like sandbox.run, but if pyvisor has not ended after
    `timeout` s, kill it, clean up what it left and fail the test as "hung"
    (the short bound keeps known hangs cheap). Returns CompletedProcess."""
    before = sandbox.children()
    proc = sandbox.popen(argv, options, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        sandbox.assert_no_leftovers(before, grace=0)    # kills what the hang left
        pytest.fail("pyvisor still running after %s s: %r" % (timeout, argv))
    sandbox.assert_no_leftovers(before)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _read_line(stream, timeout):
    """One line from a pipe, or b"" if none starts within timeout seconds."""
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else b""


# -- shells: pipelines, jobs, signals, exit statuses -------------------------

def test_pipeline(sandbox, busybox):
    out = assert_same(sandbox, [busybox, "sh", "-c", "ls / | sort | head -3"])
    assert len(out.stdout.splitlines()) == 3


def test_kill_background_job_reports_143(sandbox, busybox):
    out = assert_same(sandbox, [busybox, "sh", "-c", "sleep 10 & kill $!; wait $!; echo $?"])
    assert out.stdout == b"143\n"


def test_trap_handler_runs(sandbox, busybox):
    out = assert_same(sandbox, [busybox, "sh", "-c",
                                'trap "echo got" USR1; kill -USR1 $$; echo after'])
    assert out.stdout == b"got\nafter\n"


def test_subshell_and_child_exit_statuses(sandbox, busybox):
    script = ("(exit 3); echo $?; "
              "sh -c 'exit 7'; echo $?; "
              "false & wait $!; echo $?; "
              "sh -c 'kill -9 $$'; echo $?")
    out = assert_same(sandbox, [busybox, "sh", "-c", script])
    assert out.stdout == b"3\n7\n1\n137\n"


def test_job_control_basics(sandbox, busybox):
    out = assert_same(sandbox, [busybox, "sh", "-c", "set -m; sleep 0 & wait; echo ok"])
    assert out.stdout == b"ok\n"


def test_segfault_reported_by_shell(sandbox, build_c):
    prog = build_c(os.path.join(HERE, "c", "segv.c"), static=True)
    out = assert_same(sandbox, [SH, "-c", "%s; echo status=$?" % prog], stderr=True)
    assert out.stdout == b"status=139\n"
    assert out.stderr == b"Segmentation fault\n"


def test_core_dumping_signal_sets_wcoredump_when_rlimit_core_allows(sandbox, build_c, tmp_path):
    """Natively the kernel writes core files into the scratch cwd; the sandbox writes none."""
    prog = build_c(os.path.join(HERE, "c", "coreflag.c"))
    native = sandbox.native([prog], cwd=str(tmp_path))
    run = sandbox.run([prog])
    assert run.returncode == 0, run.stderr
    assert run.stdout == native.stdout
    assert b"signal 11, core limit 0: signaled 1 sig 11 coredump 0" in run.stdout
    assert b"signal 11, core limit unlimited: signaled 1 sig 11 coredump 1" in run.stdout


def test_segfault_exit_status_is_139(sandbox, build_c):
    prog = build_c(os.path.join(HERE, "c", "segv.c"), static=True)
    out = sandbox.run([prog])
    assert out.returncode == 128 + signal.SIGSEGV, out.stderr


# -- build tools -------------------------------------------------------------

MAKEFILE = """\
all: out.txt

out.txt: a.txt b.txt c.txt
\tcat a.txt b.txt c.txt > out.txt

a.txt:
\techo alpha > a.txt

b.txt:
\techo beta > b.txt

c.txt:
\techo gamma > c.txt
"""


def _make_tree(parent, name):
    path = os.path.join(parent, name)
    os.mkdir(path)
    write(os.path.join(path, "Makefile"), MAKEFILE)
    return path


@pytest.mark.slow
def test_make_parallel(sandbox, workdir):
    argv = [SH, "-c", "make -s -j2 && cat out.txt"]
    native = sandbox.native(argv, cwd=_make_tree(workdir, "native"))
    boxed = sandbox.run(argv, cwd=_make_tree(workdir, "boxed"))
    assert (boxed.stdout, boxed.returncode) == (native.stdout, native.returncode), boxed.stderr
    assert boxed.stdout == b"alpha\nbeta\ngamma\n"


HELLO_C = """\
#include <stdio.h>
int main(void) { printf("hello from %s\\n", "gcc"); return 4; }
"""


@pytest.mark.slow
def test_gcc_compiles_and_links(sandbox, workdir):
    argv = [SH, "-c", "gcc -O1 -o hello hello.c && ./hello"]
    results = []
    for run, name in ((sandbox.native, "native"), (sandbox.run, "boxed")):
        cwd = os.path.join(workdir, name)
        os.mkdir(cwd)
        write(os.path.join(cwd, "hello.c"), HELLO_C)
        results.append(run(argv, cwd=cwd, timeout=120))
    native, boxed = results
    assert (boxed.stdout, boxed.returncode) == (native.stdout, native.returncode), boxed.stderr
    assert boxed.stdout == b"hello from gcc\n" and boxed.returncode == 4


# -- Python: threads, subprocesses, multiprocessing, signals, asyncio ---------

def test_python_threads_queue_locks(sandbox):
    code = """
        import queue, threading
        jobs, results = queue.Queue(), queue.Queue()
        lock, totals = threading.Lock(), {"n": 0}

        def worker():
            while (item := jobs.get()) is not None:
                with lock:
                    totals["n"] += item
                results.put(item * item)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for i in range(500):
            jobs.put(i)
        for _ in threads:
            jobs.put(None)
        for t in threads:
            t.join()
        squares = sorted(results.get() for _ in range(results.qsize()))
        print(totals["n"], len(squares), sum(squares), threading.active_count())
    """
    out = assert_same(sandbox, python_code(code))
    assert out.stdout == b"124750 500 41541750 1\n"


def test_python_subprocess_run(sandbox):
    code = """
        import subprocess
        p = subprocess.run(["ls", "/"], capture_output=True, check=True)
        print(p.returncode, sorted(p.stdout.split()))
    """
    assert_same(sandbox, python_code(code))


@pytest.mark.slow
def test_multiprocessing_pool(sandbox):
    code = """
        import multiprocessing

        def square(x):
            return x * x

        if __name__ == "__main__":
            with multiprocessing.Pool(2) as pool:
                print(sum(pool.map(square, range(100))))
    """
    argv = [PYTHON, "-c", textwrap.dedent(code)]
    native = sandbox.native(argv)
    boxed = run_bounded(sandbox, argv, timeout=12)
    assert (boxed.stdout, boxed.returncode) == (native.stdout, native.returncode), boxed.stderr
    assert boxed.stdout == b"328350\n"


def test_signal_alarm(sandbox):
    code = """
        import signal, time
        signal.signal(signal.SIGALRM, lambda signum, frame: print("alarm", signum))
        signal.alarm(1)
        started = time.monotonic()
        signal.pause()
        print("slept about 1 s:", 0.5 < time.monotonic() - started < 5)
    """
    out = assert_same(sandbox, python_code(code))
    assert out.stdout == b"alarm 14\nslept about 1 s: True\n"


SHARED_MEMORY_CODE = {
    "anonymous": "mmap.mmap(-1, 4096, flags=mmap.MAP_SHARED)",
    # a /dev/shm file, the way sem_open(3) and multiprocessing's locks share memory
    "shm-file": "mmap.mmap(shm_file(), 4096, flags=mmap.MAP_SHARED)",
}


@pytest.mark.parametrize("kind", sorted(SHARED_MEMORY_CODE))
def test_shared_memory_across_fork(sandbox, kind):
    code = """
        import mmap, os

        def shm_file():
            path = "/dev/shm/pyvisor-test-%%d" %% os.getpid()
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
            os.unlink(path)
            os.ftruncate(fd, 4096)
            return fd

        shared = %s
        private = mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE)
        pid = os.fork()
        if pid == 0:
            shared[0:5] = private[0:5] = b"child"
            os._exit(0)
        os.waitpid(pid, 0)
        print(bytes(shared[0:5]), bytes(private[0:5]))
    """ % SHARED_MEMORY_CODE[kind]
    out = assert_same(sandbox, python_code(code))
    assert out.stdout == b"b'child' b'\\x00\\x00\\x00\\x00\\x00'\n"


def test_sigwait_for_alarm(sandbox):
    code = """
        import signal
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])
        signal.alarm(1)
        print(int(signal.sigwait([signal.SIGALRM])))
    """
    argv = python_code(code)
    native = sandbox.native(argv)
    boxed = run_bounded(sandbox, argv, timeout=8)
    assert (boxed.stdout, boxed.returncode) == (native.stdout, native.returncode), boxed.stderr
    assert boxed.stdout == b"14\n"


def test_proc_status_shows_signal_dispositions(sandbox):
    code = """
        import signal
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        signal.signal(signal.SIGUSR2, lambda *args: None)
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGHUP])
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f)
        for name, sig in (("SigIgn", signal.SIGUSR1), ("SigCgt", signal.SIGUSR2),
                          ("SigBlk", signal.SIGHUP)):
            print(name, bool(int(fields[name], 16) & (1 << (sig - 1))))
    """
    out = assert_same(sandbox, python_code(code))
    assert out.stdout == b"SigIgn True\nSigCgt True\nSigBlk True\n"


def test_asyncio_subprocess(sandbox):
    code = """
        import asyncio

        async def main():
            proc = await asyncio.create_subprocess_exec(
                "sh", "-c", "read line; echo got $line; exit 5",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            out, _ = await proc.communicate(b"ping\\n")
            print(out.decode().strip(), proc.returncode)

        asyncio.run(main())
    """
    out = assert_same(sandbox, [PYTHON, "-c", textwrap.dedent(code)])
    assert out.stdout == b"got ping 5\n"


# -- C threads ---------------------------------------------------------------

@pytest.mark.slow
def test_pthread_stress(sandbox, build_c):
    prog = c_program(build_c, "pthread_stress")
    out = assert_same(sandbox, [prog], timeout=120)
    assert out.stdout.startswith(b"counter=32000 steps=16000 ")


# -- bad input ---------------------------------------------------------------

def _host_process_count():
    return sum(name.isdigit() for name in os.listdir("/proc"))


def test_fork_bomb_meets_pids_limit(sandbox, build_c):
    prog = c_program(build_c, "forkbomb")
    before = _host_process_count()
    out = sandbox.run([prog], options=("--pids-limit", "50"), timeout=120)
    after = _host_process_count()
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(b"fork=EAGAIN made="), out.stdout
    made = int(out.stdout.split(b"made=")[1])
    assert 0 < made < 50
    # Other people's processes come and go on this machine: allow some slack,
    # far below the fork bomb's own count.
    assert after - before < 20


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_pids_limit_rejects_bad_values(sandbox, busybox, value):
    out = sandbox.run([busybox, "true"], options=("--pids-limit", value))
    assert out.returncode == 2
    assert b"pids-limit" in out.stderr


def test_pids_limit_counts_threads(sandbox, build_c):
    """16 threads plus the main one do not fit in 8 tasks: pthread_create
    fails with EAGAIN, as under a cgroup pids limit. (The threads made so far
    are blocked in futex waits when main returns.)"""
    out = run_bounded(sandbox, [c_program(build_c, "pthread_stress")], timeout=8,
                      options=("--pids-limit", "8"))
    assert out.returncode == 1
    assert b"pthread_create: Resource temporarily unavailable" in out.stderr


def test_kill_signal_out_of_range_is_einval(sandbox, build_c):
    out = assert_same(sandbox, [c_program(build_c, "badsig")])
    assert b"kill99=EINVAL\n" in out.stdout
    assert b"sigaction_kill=EINVAL\n" in out.stdout


def test_futex_bad_addresses(sandbox, build_c):
    out = assert_same(sandbox, [c_program(build_c, "badfutex")])
    assert b"wait_unaligned=EINVAL\n" in out.stdout
    assert b"wait_unmapped=EFAULT\n" in out.stdout


def test_sigkill_with_threads_blocked_in_syscalls(sandbox, build_c):
    out = run_bounded(sandbox, [c_program(build_c, "killmid"), "KILL"], timeout=8)
    assert out.stdout == b"ready\n"
    assert out.returncode == 128 + signal.SIGKILL, out.stderr


def test_exit_with_threads_blocked_in_syscalls(sandbox, build_c):
    prog = c_program(build_c, "killmid")
    assert sandbox.native([prog, "exit"]).returncode == 3
    out = run_bounded(sandbox, [prog, "exit"], timeout=8)
    assert (out.stdout, out.returncode) == (b"ready\n", 3), out.stderr


def test_sigterm_from_outside_single_thread(sandbox, build_c):
    prog = build_c(os.path.join(HERE, "c", "sleeper.c"), static=True)
    returncode, took = _sigterm_after_ready(sandbox, [prog, "20"])
    assert returncode == 128 + signal.SIGTERM
    assert took < 5, "pyvisor took %.1f s to end after SIGTERM" % took


def test_sigterm_from_outside_with_threads_blocked(sandbox, build_c):
    returncode, took = _sigterm_after_ready(sandbox, [c_program(build_c, "killmid"), "wait"])
    assert returncode == 128 + signal.SIGTERM
    assert took < 5, "pyvisor took %.1f s to end after SIGTERM" % took


def _sigterm_after_ready(sandbox, argv, patience=5):
    """Start argv sandboxed, send pyvisor SIGTERM once the program printed
    "ready"; returns (exit status, seconds it took to end). Fails the test if
    pyvisor is still running `patience` s after the signal."""
    before = sandbox.children()
    proc = sandbox.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert _read_line(proc.stdout, 30) == b"ready\n"
        time.sleep(0.2)                     # let it block in its system calls
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=patience)
        except subprocess.TimeoutExpired:
            pytest.fail("pyvisor still running %s s after SIGTERM" % patience)
        return proc.returncode, time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        sandbox.assert_no_leftovers(before, grace=0 if proc.returncode == -9 else 3.0)


def test_robust_mutex_of_a_dead_thread_gives_eownerdead(sandbox, build_c):
    prog = build_c(os.path.join(HERE, "c", "robust.c"), static=True, extra=("-pthread",))
    native = sandbox.native([prog])
    assert native.stdout == b"lock=EOWNERDEAD\nconsistent=0\nunlock=0\n"
    got = sandbox.run([prog])
    assert (got.returncode, got.stdout) == (0, native.stdout), got.stderr


def test_job_control_stop_continue_and_wait_reports(sandbox, build_c):
    prog = build_c(os.path.join(HERE, "c", "jobctl.c"), static=True)
    native = sandbox.native([prog])
    assert native.stdout == (b"stopped=1 sig=19\ncontinued=1\nwaitid code=CLD_STOPPED status=19\n"
                             b"exited=1 code=7\n")
    got = run_bounded(sandbox, [prog], timeout=20)
    assert (got.returncode, got.stdout) == (0, native.stdout), got.stderr


def test_shell_stops_and_continues_a_background_job(sandbox):
    script = "sleep 5 & p=$!; kill -STOP $p; kill -CONT $p; kill $p; wait $p; echo $?"
    got = sandbox.run([SH, "-c", script], timeout=30)
    assert got.stdout == sandbox.native([SH, "-c", script]).stdout == b"143\n"
