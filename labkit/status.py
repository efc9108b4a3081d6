"""A container's status, one name each, as state.json and `labkit ps` say it.

The runtime spec's four (creating, created, running, stopped) and two that a
container on disk can also be in:

  creating  its directory exists, its init does not yet
  created   its init is set up and waits (OCI create: for `start`)
  running   its program runs
  stopping  its program has exited; the monitor is tearing the stages down
  stopped   it exited and is cleaned up; state kept until `labkit rm`
  dead      its monitor was killed (SIGKILL, a reboot): `labkit gc` cleans up

and paused (pause: its cgroup is frozen), which is read from the cgroup
itself, never written.
"""

# The runtime-spec version labkit implements: the ociVersion of the state
# JSON, of hooks' stdin and of the default config.json. Here, at the bottom
# of the layers, because the hooks (below the runtime) need it as well.
OCI_VERSION = "1.0.2"

CREATING = "creating"
CREATED = "created"
RUNNING = "running"
STOPPING = "stopping"
STOPPED = "stopped"
DEAD = "dead"
PAUSED = "paused"

ACTIVE = (CREATED, RUNNING, STOPPING)    # a monitor still owns it
