# A reference solution for notebook 02's mycontainer.py (exercise 02.pid-alone):
# `sleep 1021` as PID 1 of a new PID namespace, with a /proc of its own.
# Run it as root, in the background: setsid -f python3 02-mycontainer.py
import os

from labkit.linux import syscalls

# The new PID namespace is for the children of the caller; the new mount
# namespace is the caller's own, and the child inherits it.
syscalls.unshare(syscalls.CLONE_NEWPID | syscalls.CLONE_NEWNS)
pid = os.fork()
if pid == 0:
    # PID 1 of the new namespace. Keep our mounts from propagating to the
    # host, then mount a proc of this PID namespace over /proc.
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    syscalls.mount("proc", "/proc", "proc", syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
    os.execvp("sleep", ["sleep", "1021"])
os.waitpid(pid, 0)
