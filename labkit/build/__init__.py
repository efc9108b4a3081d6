"""Layer 7, images built from a Containerfile (`labkit build`): each
instruction runs in a container of labkit's own and its changes become a
layer, as `docker build` does.

  containerfile  the Containerfile's syntax: instructions, arguments, quoting
  build          the build: one container per RUN, a layer per change, the
                 image in the store

May import: every layer below (the client labkit.api, images, stages ...),
never labkit.course or labkit.cli.
"""
