"""Layer 8, the course: what a student runs, sees and does beside the
notebooks, and the tools that keep it honest.

  facts/        what each stage proves, measured inside and outside a container
  lab/          the exercises: checks against the real kernel, hints, resets
  notebook/     the notebooks' helpers: record a fact, show it, plot it
  tour          `labkit tour`: every stage's facts as one table
  doctor        `labkit doctor`: can this machine run the labs?
  jupyter       `labkit url`: the running JupyterLab's address
  leaks         what of labkit is on the host right now (the suite's check, gc)
  conformance/  the harness that runs labkit-runtime beside runc, podman and
                containerd
  uml/          a User-Mode Linux kernel for the cgroup v2 facts on a v1 host
  translation/  the translators' tools: messages to translate, the Spanish notebooks

May import: every layer below it, never labkit.cli.
"""
