"""Stage 3, cgroups: the container's processes get limits (memory, cpu,
pids, cpuset) and their use is counted.

The parent creates labkit/<id> before the child exists, adds the child's
pid before it execs (so nothing it does escapes the limits) and removes the
cgroup when the container is gone.
"""

from labkit.stages import Stage


class CgroupsStage(Stage):
    name = "cgroups"

    def wanted(self, config, options=None):
        return bool(config.resources)

    def prepare(self, c):
        from labkit.linux import cgroups
        c.cgroup = cgroups.create(c.config.id, c.config.resources, path=c.config.cgroup_path)

    def attach(self, c, pid):
        c.cgroup.add(pid)

    def restore(self, c, state):
        if state.get("cgroup"):
            from labkit.linux import cgroups
            c.cgroup = cgroups.load(c.id, path=c.config.cgroup_path, made=state.get("cgroup_made") or ())

    def teardown(self, c):
        m = c.cgroup
        if m is not None:
            m.destroy()
