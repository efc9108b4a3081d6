"""The runner: runc's parent/child split, in Python — start here.

One container is three kinds of process, one file each:

  runtime/monitor.py       the parent: prepares the stages, forks, attaches
                           the init to its cgroup, waits, tears down
  runtime/intermediate.py  only with a user namespace (or namespaces joined
                           by path): creates it, forks the init
  runtime/init.py          PID 1 of the container: sets up inside the
                           namespaces, then execs the program

and runtime/sync.py is the protocol between them, with its diagram. What
each process does at each step is a stage's (labkit/stages/): this file
only chooses the stages and starts the monitor.
"""

from labkit.runtime.config import RunOptions
from labkit.runtime import container as ct


def stages_for(config, options):
    """The stages this container needs, in prepare order (teardown reverses)."""
    stages = []
    if config.resources:
        from labkit.stages.cgroups import CgroupsStage
        stages.append(CgroupsStage())
    if config.layers or config.writable_layer:
        from labkit.stages.unionfs import UnionFS
        stages.append(UnionFS())
    if config.lxcfs:
        from labkit.stages.lxcfs import LxcfsStage
        stages.append(LxcfsStage())
    if config.network:
        from labkit.stages.network import NetworkStage
        stages.append(NetworkStage())
    if config.hooks or options.exec_fifo or options.pid_file:
        # After the cgroup (its attach runs the prestart hooks in it) and
        # before the namespaces (its child waits for those hooks).
        from labkit.stages.oci import OCIStage
        stages.append(OCIStage())
    if config.seccomp:
        from labkit.stages.seccomp import SeccompStage
        stages.append(SeccompStage())
    from labkit.stages.namespaces import NamespaceStage
    from labkit.stages.rootfs import RootStage
    stages += [NamespaceStage(), RootStage()]
    return [s for s in stages if s.wanted(config, options)]


def run(config, options=None):
    """Create and run a container; return its exit code (128+N for signal N).
    With options.detach, return once it started, leaving the monitor behind."""
    from labkit.runtime import monitor
    options = options or RunOptions()
    c = ct.Container(config, options)
    c.create()
    stages = stages_for(config, options)
    if options.detach:
        from labkit.runtime.servers import reaper_client
        options.reaped = reaper_client.can_adopt(config, options)
        return monitor.detach(c, stages)
    return monitor.Monitor(c, stages).run()


def finish_adopted(cid, code):
    """In a child of the reaper, once the init it adopted for container
    ``cid`` exited with ``code``: what the monitor does at the end of a
    container (_wait, then run's finally), from state.json, since the
    monitor that prepared the stages is gone. Each stage takes back from the
    state what its teardown needs (Stage.restore)."""
    from labkit.runtime import monitor
    state = ct.load(cid)
    config = ct.config_of(state)
    options = RunOptions(detach=True, remove=bool(state.get("remove")), reaped=True)
    c = ct.Container(config, options)
    c.created, c.rootfs = state.get("created") or c.created, state.get("rootfs") or c.rootfs
    stages = stages_for(config, options)
    for stage in stages:
        stage.restore(c, state)
    if state.get("pid") and "pid" not in config.namespaces:
        ct.kill_session(state["pid"])   # with a PID namespace the kernel did this
    m = monitor.Monitor(c, stages)
    m._teardown(stages)
    m._finish(code)
