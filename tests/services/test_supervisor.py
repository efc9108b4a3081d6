"""The reconcile loop's reading of a replica that ended, with the
container's state given by hand (no root needed): what `service ps` shows
comes from here. The real kill -9 is in test_services.py."""

from labkit.services import supervisor, tasks

SPEC = {"name": "web", "replicas": 3, "ports": [], "health": None}


def replica():
    return {"slot": 2, "task": "a1b2c3", "container": "web.2", "image": "labkit/base", "state": "running",
            "ready": True, "pid": 4242, "started": 90.0, "exit_code": None, "error": None, "failures": 0,
            "history": [], "drain_until": None}


def observe(monkeypatch, states):
    """Each pass of the loop sees the next state of the container."""
    seen = iter(states)
    monkeypatch.setattr(tasks, "state", lambda cid: next(seen))
    monkeypatch.setattr(tasks, "retire", lambda spec, task, timeout: None)
    sup, task = supervisor.Supervisor(), replica()
    obs = {"events": [], "slots": {"2": task}}
    return sup, obs, task


def test_a_killed_replica_keeps_its_exit_code(monkeypatch):
    """kill -9 from the host: the init is gone at once ("stopping": its
    monitor tears it down), the exit code is written a moment later. The
    replica leaves the rotation at once and is retired with 137, not None."""
    sup, obs, task = observe(monkeypatch, [{"status": "stopping", "exit_code": None},
                                           {"status": "stopped", "exit_code": 137}])
    sup._observe(SPEC, obs, task, 100.0)
    assert (task["state"], task["ready"]) == ("running", False)
    sup._observe(SPEC, obs, task, 100.2)
    assert task["state"] == "waiting"
    assert task["history"][0]["why"] == "exited (137)" and task["history"][0]["exit_code"] == 137


def test_a_replica_stuck_stopping_is_retired_all_the_same(monkeypatch):
    """A teardown that never ends (its monitor hangs) does not hold the slot:
    after FINISH_TIMEOUT the replica is retired without an exit code."""
    stuck = {"status": "stopping", "exit_code": None}
    sup, obs, task = observe(monkeypatch, [stuck, stuck])
    sup._observe(SPEC, obs, task, 100.0)
    assert task["state"] == "running"
    sup._observe(SPEC, obs, task, 100.0 + supervisor.FINISH_TIMEOUT + 0.1)
    assert task["state"] == "waiting" and task["history"][0]["why"] == "exited (None)"
