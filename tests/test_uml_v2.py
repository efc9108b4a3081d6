"""The cgroup test cases again, on a real cgroup v2 kernel: user-mode Linux
(and the chroot and namespace facts, so the runner is proven there too).

The host here may be v1 or hybrid; tests/cgroups and tests/test_cgroups_run.py
then run there as is and here once more inside UML, where only the unified
hierarchy exists, so both versions are proven on every run of the suite.
"""

import importlib.util
import os

import pytest

_spec = importlib.util.spec_from_file_location(
    "uml_harness", os.path.join(os.path.dirname(__file__), "uml", "harness.py"))
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)

CGROUP_TESTS = os.path.join(os.path.dirname(__file__), "cgroups")
# The namespace and chroot checks too: the runner on a v2-only kernel 6.1.
NAMESPACE_TESTS = os.path.join(os.path.dirname(__file__), "test_isolation_facts.py")
# The runner end to end with limits and --lxcfs: the base rootfs is read
# through hostfs; overlay is not needed.
RUN_TESTS = os.path.join(os.path.dirname(__file__), "test_cgroups_run.py")
# The escape battery: blocked by default, possible with the guard off, with
# the device rules as a BPF program (cgroup v2 has no devices.allow).
ESCAPE_TESTS = os.path.join(os.path.dirname(__file__), "test_escapes.py")

# Notebook 03's exercises done by hand on the one tree (tests/test_lab.py's
# ids: EXERCISE/KIND/NAME): the reference and the near misses, but those that
# are `labkit run` (the runner's v2 limits are tests/test_cgroups_run.py's,
# here too), and not 03.free (lxcfs: the same). The other correct solutions
# run the reference's own v1/v2 steps in another order: the host's run has them.
LAB_EXERCISES = ("03.memory", "03.cpu")


def _by_hand(exercise_id):
    from labkit.course import lab
    ex = lab.get(exercise_id)
    return ([f"{exercise_id}/reference"]
            + [f"{exercise_id}/miss/{name}" for name in ex.near_misses if "labkit run" not in name])


LAB_TESTS = [os.path.join(os.path.dirname(__file__), "test_lab.py") +
             f"::test_the_check_tells_right_from_wrong[{way}]" for e in LAB_EXERCISES for way in _by_hand(e)]

pytestmark = [
    pytest.mark.skipif(os.environ.get("LABKIT_IN_UML") == "1",
                       reason="already inside user-mode Linux"),
    pytest.mark.skipif(not harness.available(),
                       reason=f"{harness.LINUX_UML} is absent (apt-get install user-mode-linux)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the cgroup tests need root"),
]

PROBE = os.path.join(os.path.dirname(__file__), "uml", "probe_v2.py")


ARGS = ["-q", "-rA", PROBE, CGROUP_TESTS, RUN_TESTS, ESCAPE_TESTS, *LAB_TESTS]
TIMEOUT = 480
_background = None


def start():
    """Called by tests/conftest.py when the suite will run this file, after
    tests/cgroups (they measure CPU time): the base rootfs (read inside
    through hostfs) is built and the one boot for every check below starts
    in the background, so its minute or so on one core overlaps the tests
    that follow. None where skipped."""
    global _background
    if _background is None and not any(m.mark.args[0] for m in pytestmark):
        from labkit.images import builder
        builder.build("base")
        _background = harness.Background(ARGS, TIMEOUT)
    return _background


@pytest.fixture(scope="module")
def uml_run(rootfs):
    # One boot for all the checks: the v2 probe and the shared test cases.
    result = (_background or harness.Background(ARGS, TIMEOUT)).result()
    print(f"uml: boot {result.boot_seconds} s, total {result.total_seconds} s")
    return result


def test_cgroup_cases_pass_on_v2(uml_run):
    assert uml_run.exit_code == 0, uml_run.output[-6000:] or uml_run.console[-3000:]
    assert " passed" in uml_run.output and " failed" not in uml_run.output


def test_runner_with_limits_passes_on_v2(uml_run):
    assert "PASSED tests/test_cgroups_run.py::test_limits_are_in_the_cgroup_files_while_it_runs" \
        in uml_run.output, uml_run.output[-6000:] or uml_run.console[-3000:]


def test_escape_battery_passes_on_v2(uml_run):
    for escape in ("mount", "proc_sys", "userns_seccomp", "device_cgroup", "leaked_fd"):
        assert f"PASSED tests/test_escapes.py::test_blocked_by_default_possible_with_the_guard_off[{escape}]" \
            in uml_run.output, uml_run.output[-6000:] or uml_run.console[-3000:]


def test_mode_inside_uml_is_v2(uml_run):
    assert "PASSED tests/uml/probe_v2.py::test_mode_is_v2" in uml_run.output, \
        uml_run.output[-6000:] or uml_run.console[-3000:]
    assert uml_run.boot_seconds is not None and uml_run.boot_seconds < 30


def test_the_cgroup_exercises_tell_right_from_wrong_on_v2(uml_run):
    for way in (w for e in LAB_EXERCISES for w in _by_hand(e)):
        assert f"PASSED tests/test_lab.py::test_the_check_tells_right_from_wrong[{way}]" \
            in uml_run.output, uml_run.output[-6000:] or uml_run.console[-3000:]
