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

from .config import RunOptions
from . import container as ct


def stages_for(config, options):
    """The stages this container needs, in prepare order (teardown reverses)."""
    stages = []
    if config.resources:
        from ..stages.cgroups import CgroupsStage
        stages.append(CgroupsStage())
    if config.layers or config.writable_layer:
        from ..stages.unionfs import UnionFS
        stages.append(UnionFS())
    if config.lxcfs:
        from ..stages.lxcfs import LxcfsStage
        stages.append(LxcfsStage())
    if config.network:
        from ..stages.network import NetworkStage
        stages.append(NetworkStage())
    if config.hooks or options.exec_fifo or options.pid_file:
        # After the cgroup (its attach runs the prestart hooks in it) and
        # before the namespaces (its child waits for those hooks).
        from ..stages.lifecycle import LifecycleStage
        stages.append(LifecycleStage())
    if config.seccomp:
        from ..stages.seccomp import SeccompStage
        stages.append(SeccompStage())
    from ..stages.namespaces import NamespaceStage
    from ..stages.rootfs import RootStage
    stages += [NamespaceStage(), RootStage()]
    return [s for s in stages if s.wanted(config, options)]


def run(config, options=None):
    """Create and run a container; return its exit code (128+N for signal N).
    With options.detach, return once it started, leaving the monitor behind."""
    from . import monitor
    options = options or RunOptions()
    c = ct.Container(config, options)
    c.create()
    stages = stages_for(config, options)
    if options.detach:
        from . import reaper
        options.reaped = reaper.can_adopt(config, options)
        return monitor.detach(c, stages)
    return monitor.Monitor(c, stages).run()
