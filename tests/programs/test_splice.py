"""splice(2), tee(2) and vmsplice(2): the probe tests/c/splice.c run
natively and in the sandbox, with its file in /tmp (the overlay) and in a
host directory seen through the overlay.

It prints one line per fact: file->pipe and pipe->file with and without
offsets (and what becomes of the file offset and *off_in/*off_out),
pipe->pipe, pipe<->socket, EOF, SPLICE_F_NONBLOCK and O_NONBLOCK (EAGAIN),
a blocking splice woken by a writer and one interrupted by SIGALRM
(EINTR), EPIPE with SIGPIPE, tee copying without consuming, vmsplice both
ways, and every bad input the man pages list (flags, fds, ends, offsets
on pipes and sockets, negative offsets, O_APPEND, bad pointers, segment
counts).
"""

from probe_compare import assert_probe_matches_native


def test_splice_probe_matches_native(sandbox, build_c, workdir):
    assert_probe_matches_native(sandbox, build_c, "splice", [workdir], [["/tmp"], [workdir]])
