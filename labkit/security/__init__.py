"""Layer 2, what a container may do: Docker's defaults, which `labkit run`
follows, and the switches that lift them.

  defaults         capabilities, devices, masked paths, no_new_privs: the
                   defaults and --cap-add, --cap-drop, --privileged, --security-opt
  seccomp_profile  the default seccomp profile, as data (Docker's format)

May import: the vocabulary and labkit.linux.
"""
