"""Layer 4, the runtime: a container's configuration, its state on disk, and
the runner that composes the stages (runc's parent/child split). Start at
runner.py; sync.py draws the processes and the messages between them;
servers/ holds the reaper and the fork server.

May import: the stages, the subsystems (security, images, networks), linux
and the vocabulary; never labkit.oci, the client or anything above.
"""
