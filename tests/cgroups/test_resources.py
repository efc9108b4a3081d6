"""Units and conversions: no root, no kernel."""

import pytest

from labkit.linux.cgroups import resources as res
from labkit.linux.cgroups.resources import Resources, parse_cpus, parse_memory
from labkit.errors import LabkitError


@pytest.mark.parametrize("text,expected", [
    ("64m", 64 << 20), ("64M", 64 << 20), ("1g", 1 << 30), ("512k", 512 << 10),
    ("100", 100), ("100b", 100), (4096, 4096), ("1.5g", 3 << 29), ("64mb", 64 << 20),
    (-1, -1),
])
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


def test_parse_memory_unknown_unit_names_it_and_the_fix():
    with pytest.raises(LabkitError) as e:
        parse_memory("64X")
    assert str(e.value) == "--memory 64X: unknown unit 'X' (use b, k, m or g, as in 64m)"


@pytest.mark.parametrize("bad", ["m", "abc", "-5m", ""])
def test_parse_memory_rejects(bad):
    with pytest.raises(LabkitError):
        parse_memory(bad)


def test_cpus_to_quota_and_period():
    assert parse_cpus(0.5) == (50000, 100000)
    assert parse_cpus("2") == (200000, 100000)
    quota, period = parse_cpus(1.25)
    assert quota / period == 1.25
    for bad in (0, -1, "x"):
        with pytest.raises(LabkitError):
            parse_cpus(bad)


def test_shares_weight_conversion_ends_and_order():
    assert res.shares_to_weight(res.MIN_SHARES) == res.MIN_WEIGHT
    assert res.shares_to_weight(res.MAX_SHARES) == res.MAX_WEIGHT
    assert res.shares_to_weight(1024) == 39          # the OCI/runc figure for docker's default
    # Monotonic, and a 1:3 ratio survives the conversion.
    weights = [res.shares_to_weight(s) for s in range(2, 262145, 997)]
    assert weights == sorted(weights)
    assert res.shares_to_weight(768) == 3 * res.shares_to_weight(256)
    for w in (1, 39, 100, 5000, 10000):
        assert abs(res.shares_to_weight(res.weight_to_shares(w)) - w) <= 1


def test_v2_strings():
    r = Resources.from_dict({"memory": "64m", "memory_swap": "96m", "cpus": 0.5})
    assert res.v2_cpu_max(r) == "50000 100000"
    assert res.v2_swap_max(r) == str(32 << 20)
    assert res.v2_cpu_max(Resources(cpu_quota=-1, cpu_period=50000)) == "max 50000"
    assert res.v2_swap_max(Resources(memory=1, memory_swap=-1)) == "max"


def test_from_dict_controllers_and_unknown_key():
    r = Resources.from_dict({"memory": "64m", "pids": 20, "cpu_shares": 512, "cpuset_cpus": "0"})
    assert r.controllers() == ["memory", "cpu", "pids", "cpuset"]
    assert Resources.from_dict({}) == Resources()           # nothing set
    with pytest.raises(LabkitError, match="unknown resource 'memroy'"):
        Resources.from_dict({"memroy": "64m"})


@pytest.mark.parametrize("d", [{"cpu_shares": 1}, {"cpu_weight": 0}, {"pids": 0},
                               {"cpu_quota": 0}, {"cpuset_cpus": "0;rm"}, {"pids": "many"}])
def test_from_dict_rejects(d):
    with pytest.raises(LabkitError):
        Resources.from_dict(d)
