"""Stages: one primitive each, usable alone, composed by the runner.

A stage is an object with these hooks; the runner calls them in this order
(labkit/runtime/sync.py draws the processes) and a stage never calls another
stage:

  prepare(c)        monitor, before the child exists (create a cgroup, mount
                    an overlay, make exec.fifo). May set ``c.rootfs``.
  attach(c, pid)    monitor, once the container's init exists and before it
                    execs (add the pid to a cgroup, write the pid file, run
                    prestart hooks), in stage order.
  child(c)          the container's init, inside its namespaces, before exec
                    (hostname, mounts, pivot_root). Runs in a fresh,
                    single-threaded process, never in a fork of a notebook kernel.
                    It may run while the monitor is still attaching (moving a
                    process between cgroups takes ~10 ms): anything that
                    depends on the process's cgroup calls c.sync.wait_attached() first.
  attached(c)       the init, once every stage's child() ran and the monitor
                    has moved it into its cgroup: what needs the cgroup and
                    could wait till now (a cgroup namespace no mount needs).
  before_exec(c)    the init, once every stage's child() ran and its terminal
                    is set up: the last moment before the program (wait for
                    `start` on exec.fifo, startContainer hooks).
  started(c)        monitor, once the program runs (poststart hooks).
  teardown(c)       monitor, after the container exited or failed at any
                    point: undo whatever prepare/attach did; idempotent.
  restore(c, state) the reaper's finisher (runtime/servers/reaper.py), before
                    teardown, when the monitor that prepared the container is
                    gone: take back from state.json what teardown needs.

``c`` is a runtime.container.Container: its ``config`` (a ContainerConfig),
``options`` (this invocation's RunOptions), ``state_dir`` and ``rootfs`` (the
directory the init enters); every field a stage may set is declared there.

Layer 3: a stage may import labkit.linux, the subsystems (security, images,
networks) and the vocabulary; never the runtime (it is called by it) and
never another stage.
"""


class Stage:
    name = "stage"

    def wanted(self, config, options=None):
        """Whether this container needs the stage at all."""
        return True

    def prepare(self, c):
        pass

    def attach(self, c, pid):
        pass

    def child(self, c):
        pass

    def attached(self, c):
        pass

    def before_exec(self, c):
        pass

    def started(self, c):
        pass

    def teardown(self, c):
        pass

    def restore(self, c, state):
        pass
