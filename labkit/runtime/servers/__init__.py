"""The runtime's long-lived processes, each a server on a unix socket that
runs a command the way a fresh `labkit` process would:

  handoff        what they share: the messages, passing file descriptors
                 (SCM_RIGHTS), running a command in a forked child
  reaper         one process per $LABKIT_HOME that waits for every detached
                 container (instead of one monitor each)
  reaper_client  `labkit run -d`'s and the monitor's side of it
  forkserver     a notebook kernel's warm `labkit`: imports done once, a fork
                 per command

Part of the runtime layer: may import the runtime, the stages and below.
"""
