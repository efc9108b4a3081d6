"""Stage 7 — images: a container's root filesystem as something to share.

An image is three kinds of JSON and some tars, each stored once under the
sha256 of its bytes (image-spec):

  manifest   which config and which layers, by digest and size
  config     how to run it (Env, Cmd, Entrypoint, WorkingDir, User ...) and the
             diff_ids: the sha256 of each layer's uncompressed tar
  layers     the tars of stage 4 (labkit/images/layers.py), bottom first

  reference.py  names: [REGISTRY/]REPOSITORY[:TAG][@DIGEST]
  store.py      the local store, an OCI image layout ($LABKIT_HOME/images):
                oci-layout, index.json (a tag is an annotation there),
                blobs/sha256/<hex>, each written aside and renamed only once
                its digest is checked; what umoci and skopeo read as it is
  image.py      an image from layers; its config; its layers unpacked once each
                (by diff_id) as overlay lower directories; labkit/base; save,
                load, and an OCI bundle for labkit-runtime or runc
  layers.py     a container's upper dir as a layer tar and back (whiteouts)
  builder.py    the base root filesystem every container starts from
                (`labkit rootfs build`)

Layer 2: may import labkit.linux and the vocabulary, never the stages or the
runtime. Images built from a Containerfile are labkit/build/'s.
"""
