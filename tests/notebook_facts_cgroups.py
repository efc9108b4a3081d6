"""Facts notebooks/03-cgroups.ipynb must record (each dict fact must hold),
read by tests/test_notebooks.py; the relations across facts are checked below."""

EXPECTED = {
    "03-cgroups": ["cgroup_mode", "limits_in_files", "oom_kill", "fork_bomb", "cpu_quota",
                   "cpu_quota_percent", "cpu_shares", "cpu_shares_ratio", "free_without_lxcfs",
                   "free_with_lxcfs", "busybox_free_with_lxcfs", "proc_views", "cgroup_namespace", "cgroups_left"],
}


def check_relations(f):
    """What the notebook claims, as relations between measured values."""
    oom = f["oom_kill"]
    assert oom["returncode"] == 137 and oom["oom_kills"] >= 1 and oom["init_alive"]
    assert 0.8 * oom["limit_bytes"] <= oom["memory_peak"] <= oom["limit_bytes"]
    assert max(oom["series"]["memory_current"]) <= oom["limit_bytes"]
    assert oom["host_bytes"] == 2 * oom["limit_bytes"]          # the host is untouched
    bomb = f["fork_bomb"]
    assert max(bomb["series"]["pids_current"]) == bomb["pids_limit"] and bomb["forks_refused"] > 0
    q = f["cpu_quota"]
    # Never above the quota; at it (±10 points) whenever a core was free.
    assert q["percent"] <= q["target_percent"] + 10 and q["control_nr_throttled"] == 0
    if not q["busy_machine"]:
        assert abs(f["cpu_quota_percent"] - q["target_percent"]) <= 10 < q["control_percent"] - q["percent"]
        assert q["nr_throttled"] > 0
    s = f["cpu_shares"]
    assert abs(f["cpu_shares_ratio"] - s["expected_ratio"]) <= 0.2 * s["expected_ratio"]
    assert f["free_without_lxcfs"]["inside_total"] == f["free_without_lxcfs"]["host_total"]
    assert f["free_with_lxcfs"]["inside_total"] == f["free_with_lxcfs"]["limit_bytes"]
    assert f["busybox_free_with_lxcfs"]["inside_total"] == f["busybox_free_with_lxcfs"]["host_total"]
    assert f["cgroup_namespace"]["path_inside"] == "/" != f["cgroup_namespace"]["path_outside"]
    assert f["cgroups_left"] == []
