"""Stage 9, seccomp: the filter of system calls the container's process may
make (labkit/linux/seccomp.py explains it).

prepare() compiles config.seccomp in the monitor, on the host, where
libseccomp is; the fork copies the compiled filter into the init, whose exec
tail loads it at the moment runc does (labkit/linux/process.py). The filter is
the process's own: nothing to undo on the host but the compiled copy.
"""

from labkit.stages import Stage


class SeccompStage(Stage):
    name = "seccomp"

    def wanted(self, config, options=None):
        return bool(config.seccomp)

    def prepare(self, c):
        from labkit.linux.seccomp import Filter
        c.seccomp = Filter(c.config.seccomp)

    def teardown(self, c):
        if c.seccomp is not None:
            c.seccomp.release()
            c.seccomp = None
