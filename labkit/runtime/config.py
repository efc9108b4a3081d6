"""What a container is asked to be, before anything is created.

The CLI (`labkit run`), the notebooks' Python API and an OCI config.json all
end up as one ContainerConfig; the runner and the stages read it and never
look at where it came from. Plain classes, not dataclasses: this module is
on the container start path (labkit/startpath.py).
"""

from labkit.linux.namespaces import DEFAULT_NAMESPACES, NAMESPACES  # noqa: F401 (re-exported)

DEFAULT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "TERM=xterm", "HOME=/root")


class _Fields:
    """A plain record: FIELDS names every attribute and its default."""
    FIELDS = {}

    def __init__(self, **values):
        unknown = set(values) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"unknown {type(self).__name__} fields: {sorted(unknown)}")
        for name, default in self.FIELDS.items():
            value = values.get(name, default)
            if isinstance(value, (list, dict)) and value is default:
                value = type(value)(value)   # a list or dict per instance
            setattr(self, name, value)

    def to_dict(self):
        return {name: getattr(self, name) for name in self.FIELDS}

    @classmethod
    def from_dict(cls, d):
        return cls(**{k: v for k, v in d.items() if k in cls.FIELDS})


class ContainerConfig(_Fields):
    """What the container is: saved in its state, read again by exec and gc."""
    FIELDS = {
        "id": None,
        "args": None,
        "rootfs": None,          # a directory; stages may replace it (overlay)
        "namespaces": frozenset(DEFAULT_NAMESPACES),
        "hostname": None,        # set only with a UTS namespace
        "env": list(DEFAULT_ENV),
        "cwd": "/",
        "mount_proc": True,      # mount /proc inside the root
        "readonly_rootfs": False,
        "tty": False,            # -t: a pseudo-terminal, like docker run -t
        "interactive": False,    # -i: keep stdin open
        # USER namespace: ids 0.. inside map to userns_size ids from userns_base.
        "userns_base": 100000,
        "userns_size": 65536,
        # Opaque to the runner; each stage reads its own part.
        "resources": {},         # cgroups: memory, cpus, pids …
        "cgroup_path": None,     # cgroups: config.json's cgroupsPath; None = labkit/<id>
        "layers": [],            # union filesystem: lower layers
        "writable_layer": False, # union filesystem: a layer of its own over the rootfs, even with no layers
        "idmapped_layers": False,  # union filesystem: lower layers shifted by the id maps (labkit/linux/idmap.py)
        "lxcfs": False,          # bind lxcfs's /proc files over the container's
        "image": None,           # the image it runs (labkit run IMAGE): rmi refuses to remove it
        "network": None,         # network: {name, ip, aliases, ports} or {container}; None = --network none/host
        "privileged": False,     # no guard: a writable /sys (labkit/security/defaults.py)
        # What an OCI config.json adds (labkit/oci/convert.py). The defaults
        # are `labkit run`'s behaviour: the built-in /proc, /sys, /dev set,
        # root with every capability, the runner's own id maps.
        "mounts": None,          # [{destination, type, source, flags, data, propagation, bind}]
        "rootfs_propagation": None,  # mount(2) propagation flags for / (rootfsPropagation); None = rprivate
        "devices": [],           # extra device nodes: [{path, type, major, minor, mode, uid, gid}]
        "masked_paths": [],      # a /dev/null or an empty read-only tmpfs over each
        "readonly_paths": [],    # bound onto themselves read-only
        "sysctl": {},            # written to /proc/sys inside the new namespaces
        "user": None,            # {uid, gid, additionalGids, umask}
        "capabilities": None,    # {bounding: [...], effective: [...], ...}; None = keep all
        "rlimits": [],           # [{type: "RLIMIT_NOFILE", soft, hard}]
        "no_new_privileges": False,
        "seccomp": None,         # an OCI linux.seccomp object (labkit/linux/seccomp.py)
        "oom_score_adj": None,
        "ns_paths": {},          # namespace name -> a /proc/PID/ns/* or bind-mounted file to setns(2)
        "uid_mappings": None,    # [{containerID, hostID, size}]; None = userns_base/size
        "gid_mappings": None,
        "hooks": {},             # OCI hooks by name: [{path, args, env, timeout}]
        "bundle": None,          # the OCI bundle directory, for the state JSON
        "annotations": {},
    }

    def __init__(self, **values):
        super().__init__(**values)
        self.namespaces = frozenset(self.namespaces)

    def to_dict(self):
        d = super().to_dict()
        d["namespaces"] = sorted(self.namespaces)
        return d

    def id_map(self, name):
        """/proc/PID/uid_map's (name "uid") or gid_map's text for this container."""
        maps = self.uid_mappings if name == "uid" else self.gid_mappings
        if maps is None:
            return f"0 {self.userns_base} {self.userns_size}\n"
        return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in maps)

    @property
    def pivot_root(self):
        """With a mount namespace the root is changed with pivot_root; without
        one, only chroot(2) is possible (pivot_root would move the host's root)."""
        return "mnt" in self.namespaces


# Who waits for a container's init (RunOptions.waiter).
CALLER, MONITOR, REAPER = "caller", "monitor", "reaper"


class RunOptions(_Fields):
    """How this one invocation runs the container, not what the container is
    (runc keeps the same split: configs.Config against CreateOpts). Never
    saved: `labkit exec` or `gc` of the same container need none of it."""
    FIELDS = {
        "detach": False,         # -d: run in the background, a monitor stays behind
        "remove": False,         # --rm: forget the container when it exits
        "exec_fifo": False,      # OCI create: wait on <state_dir>/exec.fifo before exec
        "console_socket": None,  # a unix socket to send the pty master to (SCM_RIGHTS)
        "pid_file": None,        # write the init's pid (as the host sees it) there
        "no_pivot": False,       # MS_MOVE + chroot instead of pivot_root (a ramfs root)
        "preserve_fds": 0,       # the caller's fds 3, 4, ... passed on (runc's --preserve-fds N)
        # OCI create (runc's contract): once the init waits for `start`, no
        # labkit process is left; the caller (its subreaper) reaps the init,
        # and `delete` does what a monitor would have done at the end.
        "no_monitor": False,
        # -d under the reaper (runtime/servers/reaper.py): once the program runs, the
        # monitor hands it to the reaper and exits.
        "reaped": False,
    }

    @property
    def waiter(self):
        """Who waits for the init once the program runs, learns its exit code
        and tears the stages down: the CALLER (OCI create: runc's contract, no
        labkit process stays; `delete` does the end), the REAPER (-d under
        it), or this MONITOR. Only with the monitor does the init die with
        it (PR_SET_PDEATHSIG); otherwise it outlives the monitor and goes to
        the caller's subreaper."""
        if self.no_monitor:
            return CALLER
        return REAPER if self.reaped else MONITOR
