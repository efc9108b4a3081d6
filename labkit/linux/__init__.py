"""Layer 1, Linux: one kernel primitive per module, usable alone (a notebook
cell, a test, the stages above).

  syscalls/    the system calls Python's os module lacks (mount, unshare,
               setns, pivot_root, clone3 ...), through ctypes, and their trace
  mountinfo    /proc/self/mountinfo, parsed
  namespaces   namespaces(7): their names, flags and /proc/PID/ns links
  rootfs       a root filesystem for a process: pivot_root(2), the mounts of
               /proc, /dev and /sys, masked and read-only paths
  overlay      overlayfs: lower, upper and work dirs, the mount and its options
  idmap        idmapped mounts (mount_setattr(2) MOUNT_ATTR_IDMAP)
  process      capabilities(7), no_new_privs, rlimits, uid and gid: what a
               process may do
  seccomp      seccomp(2): a BPF filter compiled from a profile
  cgroups/     cgroups(7), v1 and v2: limits, accounting, devices, freezer
  netdevice    netdevice(7): lo up in a new network namespace, link names
  files        walking one filesystem, copying a tree as `cp -a`

May import: the vocabulary (labkit.errors, home, containers, startpath, i18n)
and its own modules; never a layer above.
"""
