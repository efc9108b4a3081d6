"""Stage 5, the container format: an OCI runtime bundle (config.json + rootfs)
driven through the same stages as `labkit run`.

    spec.py      the default config.json (`labkit-runtime spec`) and loading one
    validate.py  the runtime-spec JSON schema, then checks of meaning
    convert.py   config.json -> ContainerConfig (what runc calls specconv)
    (labkit/linux/rootfs.py walks config.json's mounts, devices, masked and read-only paths)
    (labkit/stages/oci.py runs the hooks: prestart, createRuntime, ... poststop)
    state.py     the state JSON of the runtime spec; create/start/kill/delete

Layer 5: may import the runtime and every layer below it. Keep this file
empty of imports: the container start path imports only the modules it needs.
"""
