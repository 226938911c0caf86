"""The Sentry's sockets: the socket files and the glue to netstack.

    sockfs.py    SocketFile: what every socket file shares (its sockfs identity)
    unix.py      AF_UNIX sockets, served by the Sentry alone
    inet.py      AF_INET (TCP, UDP) socket files over netstack
    netstack.py  NetStack: the kernel's netstack, its lock, driver thread,
                 NetError -> SyscallError translation, and its staging
                 before the Sentry's seccomp filter

The handlers (socket(2), sendmsg(2), ...) are in syscalls/net.py. This
package file imports nothing, so a unix socket does not load inet.py.
"""
