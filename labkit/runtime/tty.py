"""`-t`: a pseudo-terminal for the container, as `docker run -it` gives.

The pty is opened *inside* the container, from its own devpts instance
(/dev/ptmx after pivot_root), so that `tty` there names /dev/pts/0 and not a
host path it cannot see. The container's init makes the slave side its
controlling terminal (so its shell has job control: Ctrl-Z, fg, Ctrl-C to
the foreground job) and passes the master side to the monitor over a unix
socket (SCM_RIGHTS), as runc does with its console socket. The monitor copies
bytes between the master and its own terminal, which it puts in raw mode so
that every key reaches the container. Window size changes (SIGWINCH) are
passed on with TIOCSWINSZ.
"""

import fcntl
import os
import select
import signal
import termios

_WINSZ = b"\0" * 8


TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431


def open_pty():
    """A pty pair from the devpts of the current root (posix_openpt(3) by hand:
    open /dev/ptmx, unlock, find the slave's number). Without a devpts there
    (a plain chroot) fall back to openpty(3) on the host's."""
    try:
        master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return os.openpty()
    fcntl.ioctl(master, TIOCSPTLCK, b"\0\0\0\0")
    number = int.from_bytes(fcntl.ioctl(master, TIOCGPTN, b"\0\0\0\0"), "little")
    slave = os.open(f"/dev/pts/{number}", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    return master, slave


def console_socket():
    """A socketpair: the container's end sends the pty master to the monitor's."""
    import socket
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def send_master(sock, master):
    import socket
    socket.send_fds(sock, [b"M"], [master])
    os.close(master)


def receive_master(sock):
    """The master fd, or None if the container exited before sending it."""
    import socket
    try:
        _, fds, _, _ = socket.recv_fds(sock, 1, 1)
    except OSError:
        return None
    if not fds:
        return None
    _copy_winsize(0, fds[0])
    return fds[0]


def _copy_winsize(src, dst):
    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, _WINSZ)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
    except OSError:
        pass  # stdin is not a terminal: keep the kernel's default 0x0


def become_controlling(slave):
    """In the container's init (a session leader): make the pty its
    controlling terminal and its stdin, stdout and stderr."""
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def _make_raw(fd):
    """cfmakeraw(3): no echo, no line editing, no signals from keys, so that
    every key reaches the container. Returns the settings to restore."""
    saved = termios.tcgetattr(fd)
    raw = termios.tcgetattr(fd)
    raw[0] &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP
                | termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IXON)
    raw[1] &= ~termios.OPOST
    raw[2] &= ~(termios.CSIZE | termios.PARENB)
    raw[2] |= termios.CS8
    raw[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    termios.tcsetattr(fd, termios.TCSANOW, raw)  # keep keys typed ahead
    return saved


def proxy(master, stdin=True):
    """Copy stdin -> master and master -> stdout until the container's side
    of the pty is closed (every process holding it has exited)."""
    is_tty = os.isatty(0)
    saved = _make_raw(0) if (is_tty and stdin) else None
    if is_tty:
        signal.signal(signal.SIGWINCH, lambda s, f: _copy_winsize(0, master))
    watch = [master] + ([0] if stdin else [])
    try:
        while True:
            try:
                ready, _, _ = select.select(watch, [], [])
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:   # EIO: the slave side is closed
                    data = b""
                if not data:
                    return
                _write_all(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    _write_all(master, data)
                else:   # stdin closed: send EOF (Ctrl-D) and stop reading it
                    _write_all(master, b"\x04")
                    watch.remove(0)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)


def _write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]
