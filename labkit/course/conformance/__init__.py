"""The conformance harness: the same OCI bundles run under labkit-runtime
and under runc (or crun), and what each runtime makes of them observed from
inside and outside the container and compared.

    bundles.py   the bundles: runc's default config.json plus one variant per
                 field, with probe commands that print what can be observed
    observe.py   run a bundle under a runtime and parse what it shows; the
                 differences the runtime spec leaves open (ALLOWED)

Used by the tests (tests/oci_matrix), the benchmark (bench/start.py) and the
tour's container-format facts (labkit/course/facts/oci.py); never by the runtime.
"""
