"""The runtime: a container's configuration, its state on disk, and the runner
that composes the stages (runc's parent/child split)."""
