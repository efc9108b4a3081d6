"""Facts notebooks/08-microservices-cluster.ipynb must record (each dict fact
must hold), read by tests/test_notebooks.py, which runs this notebook in a
network namespace of its own (NETNS); relations across facts are checked below."""

EXPECTED = {
    "08-microservices-cluster": ["svc_replicas", "svc_round_robin", "svc_kill_replace", "svc_scale",
                                 "svc_rolling_update", "svc_limits", "svc_cost", "svc_ipvs", "svc_microservices", "svc_left"],
}
NETNS = ["08-microservices-cluster"]


def check_relations(f):
    # Every answer of the port is the hostname of a replica that `labkit exec` reached, three in turn.
    rr = f["svc_round_robin"]
    bodies = [b for _, b in rr["answers"]]
    assert set(bodies) == set(rr["hostnames"].values()) and len(set(bodies[:3])) == 3
    assert set(rr["by_curl"]) == set(rr["by_name"]) == set(bodies)
    # The killed task was replaced in its slot by another task, and the events say so in order.
    k = f["svc_kill_replace"]
    # The time it took is the figure (seconds here, more in an emulated VM); the bound is the fact's.
    assert k["victim"] != k["new"] and k["failed"] <= 2 and k["replaced_after"] is not None
    slot2 = [e for e in k["events"] if e["slot"] == 2]
    assert [e["event"] for e in slot2 if e["task"] == k["victim"]][-1] == "retired"
    assert "running" in [e["event"] for e in slot2 if e["task"] == k["new"]]
    # The rolling update: v1 answers, then v2 answers, never a failure; three new tasks.
    u = f["svc_rolling_update"]
    assert None not in [b for _, b in u["answers"]]
    versions = [(t, b.split()[0]) for t, b in u["answers"]]
    assert versions[0][1] == "v1" and all(v == "v2" for t, v in versions if t > u["done"])
    # Scale: each step's replicas are exactly the containers labkit ps lists.
    assert [s["replicas"] for s in f["svc_scale"]["steps"]] == [3, 5, 1]
    # Limits: one cgroup per replica; cost: one set of lowers for all, memory far below the limit.
    assert len(set(f["svc_limits"]["paths"].values())) == 2
    rows = f["svc_cost"]["rows"]
    assert all(r["shared_bytes"] < r["copies_bytes"] for r in rows[1:])
    assert f["svc_left"]["inside"] == []
