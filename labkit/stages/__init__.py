"""Stages: one primitive each, usable alone, composed by the runner.

A stage is an object with up to four hooks; the runner calls them in this
order and a stage never calls another stage:

  prepare(c)        parent, before the child exists (create a cgroup, mount
                    an overlay). May set ``c.rootfs``.
  attach(c, pid)    parent, once the container's init exists and before it
                    execs (add the pid to a cgroup, write uid maps).
  child(c)          the container's init, inside its namespaces, before exec
                    (pivot_root, /proc, hostname). Runs in a fresh,
                    single-threaded process, never in a fork of a notebook kernel.
                    It may run while the parent is still attaching (moving a
                    process between cgroups takes ~10 ms): anything that
                    depends on the process's cgroup calls c.await_attach() first.
  teardown(c)       parent, after the container exited or failed at any
                    point: undo whatever prepare/attach did; idempotent.

``c`` is a runtime.container.Container: its ``config`` (a ContainerConfig),
``state_dir`` and ``rootfs`` (the directory the child enters).
"""


class Stage:
    name = "stage"

    def wanted(self, config):
        """Whether this container needs the stage at all."""
        return True

    def prepare(self, c):
        pass

    def attach(self, c, pid):
        pass

    def child(self, c):
        pass

    def teardown(self, c):
        pass
