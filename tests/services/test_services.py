"""Services: N replicas behind one port, kept running, scaled and updated.

Every test runs in a network namespace of its own (the `netns` fixture) and
sends its requests to 127.0.0.1 only, in bounded loops; at the end nothing
may be left: no service, supervisor, network, endpoint or nft table.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "networks"))

from net_helpers import labkit, ok  # noqa: E402
from labkit.course.facts import services as svcf  # noqa: E402
from proc_helper import wait_for  # noqa: E402

pytestmark = pytest.mark.root

# A web server that answers with its hostname: web.SLOT.TASK
WEB = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"
HEALTH = ["--health-cmd", "wget -q -O /dev/null http://127.0.0.1/", "--health-interval", "0.5s"]


def get(port, timeout=1.0):
    """One request to 127.0.0.1:PORT: the body, or None if it failed."""
    return svcf.get(port, timeout=timeout)


def send(port, n, rate):
    """``n`` requests at ``rate`` a second: the answers, None for a failure."""
    return [body for _, body in svcf.send(n, rate, port)[0]]


def tasks(name):
    from labkit.services import store
    return store.tasks(name)["slots"]


def remove(*names):
    for name in names:
        labkit("service", "rm", name, timeout=90)
    labkit("network", "rm", "labkit")


@pytest.fixture
def web(netns):
    ok("service", "create", "--name", "web", "--replicas", "3", "-p", "18080:80", *HEALTH,
       "labkit/base", "sh", "-c", WEB, timeout=90)
    yield "web"
    remove("web")


def test_round_robin_over_three_replicas(web):
    answers = send(18080, 6, 20)
    assert None not in answers
    first, second = answers[:3], answers[3:]
    assert len(set(first)) == 3, answers              # three different containers
    assert first == second, answers                   # in turn, the same order again
    assert {a.rsplit(".", 1)[0] for a in first} == {"web.1", "web.2", "web.3"}
    # each answer is a container of `labkit ps`, with its own pid and PID namespace
    ps = ok("ps")
    pids = []
    for name in ("web.1", "web.2", "web.3"):
        row = next(line for line in ps.splitlines() if line.startswith(name + " "))
        pids.append(int(row.split()[2]))
    inodes = {os.readlink(f"/proc/{p}/ns/pid") for p in pids}
    assert len(inodes) == 3 and os.readlink("/proc/self/ns/pid") not in inodes
    # the name resolves, for another container on the network, to the virtual IP
    r = labkit("run", "--rm", "--network", "labkit", "labkit/base", "sh", "-c",
               "grep -w web /etc/hosts; for i in 1 2 3; do timeout 3 wget -q -O- http://web/; done")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    vip = ok("service", "inspect", "web")
    assert lines[0] in vip and set(lines[-3:]) == set(first)


def test_kill_9_costs_at_most_two_requests_and_is_replaced(web):
    victim = tasks("web")["2"]
    assert get(18080) is not None
    client = svcf.Client(20, 4, port=18080)       # 20 requests, 4 a second, in this namespace
    client.start()
    assert wait_for(lambda: len(client.answers) >= 4)   # the kill lands in the middle of them
    killed = time.monotonic()
    os.kill(victim["pid"], signal.SIGKILL)            # from the host, as a student would
    replaced = None
    while time.monotonic() - killed < 10:
        now = tasks("web")["2"]
        if now["task"] != victim["task"] and now["state"] == "running" and now["ready"]:
            replaced = time.monotonic() - killed
            break
        time.sleep(0.1)
    client.join(timeout=30)
    failed = sum(1 for _, body in client.answers if body is None)
    assert replaced is not None and replaced <= 5, replaced
    assert failed <= 2, f"{failed} of 20 requests failed"
    ps = ok("service", "ps", "web")
    assert victim["task"] in ps and "exited (137)" in ps   # the old task, shown as replaced


def test_scale_3_5_1(web):
    ok("service", "scale", "web=5", timeout=90)
    assert len({a for a in send(18080, 10, 50) if a}) == 5
    ok("service", "scale", "web=1", timeout=90)
    assert len(tasks("web")) == 1
    answers = send(18080, 4, 50)
    assert None not in answers and len(set(answers)) == 1
    assert [line.split()[0] for line in ok("ps").splitlines()[1:]] == ["web.1"]


def test_rolling_update_loses_no_request(web):
    ok("tag", "labkit/base", "lab/web:v2")
    try:
        before = {t["task"] for t in tasks("web").values()}
        proc = subprocess.Popen([sys.executable, "-m", "labkit", "service", "update", "web", "--image", "lab/web:v2"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, PYTHONPATH=ROOT))
        answers = []
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            answers.append(get(18080))
            time.sleep(0.1)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert len(answers) >= 10 and None not in answers, answers
        after = tasks("web")
        assert {t["image"] for t in after.values()} == {"lab/web:v2"}
        assert not before & {t["task"] for t in after.values()}
        # one at a time: never fewer than two of three in rotation
        from labkit.services import store
        events = store.tasks("web")["events"]
        draining = [e["t"] for e in events if e["event"] == "draining"]
        healthy = [e["t"] for e in events if e["event"] == "healthy"]
        assert len(draining) == 3
        for a, b in zip(draining, draining[1:]):
            assert any(a < h < b for h in healthy)    # the next one waits for the new one
    finally:
        remove("web")
        ok("rmi", "lab/web:v2")


def test_unhealthy_service_is_reported_not_waited_for(netns):
    t = time.monotonic()
    r = labkit("service", "create", "--name", "sick", "--health-cmd", "false", "--health-interval", "0.2s",
               "--health-retries", "2", "labkit/base", "sleep", "600", timeout=90)
    try:
        assert r.returncode == 1 and "sick" in r.stderr and "health check failed" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and time.monotonic() - t < 60
        assert "0/1" in ok("service", "ls")
    finally:
        remove("sick")


@pytest.mark.parametrize("args, says", [
    (["--replicas", "-1"], "0 to 50"),
    (["--replicas", "51"], "0 to 50"),
    (["--replicas", "many"], "not a number"),
    (["--name", "a.b"], "bad service name"),
    (["--network", "host"], "a network of their own"),
    (["-p", "99999:80"], "not a port number"),
    (["-e", "NOVALUE"], "NAME=VALUE"),
    (["--memory", "lots"], "memory"),
])
def test_bad_input_one_line(netns, args, says):
    argv = ["service", "create"] + (["--name", "bad"] if "--name" not in args else []) + args + ["labkit/base", "true"]
    r = labkit(*argv)
    assert r.returncode != 0 and says in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert "bad" not in ok("service", "ls")


def test_missing_image_and_port_in_use(netns):
    r = labkit("service", "create", "--name", "ghost", "lab/nothing:here", "true")
    assert r.returncode == 1 and "lab/nothing" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 18081))
        s.listen(1)
        r = labkit("service", "create", "--name", "busy", "-p", "18081:80", "labkit/base", "sleep", "60")
        assert r.returncode == 1 and "18081" in r.stderr and "in use" in r.stderr, r.stderr
    assert ok("service", "ls").count("\n") == 1
    labkit("network", "rm", "labkit")


def test_supervisor_killed_is_taken_up_again(netns):
    from labkit.services import store
    ok("service", "create", "--name", "calm", "--replicas", "2", "labkit/base", "sleep", "600", timeout=90)
    try:
        pid = store.supervisor_pid()
        os.kill(pid, signal.SIGKILL)
        first = tasks("calm")["1"]
        ok("rm", "-f", "calm.1")                 # while no loop runs
        gc = ok("gc")
        assert "supervisor" in gc
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = tasks("calm")["1"]
            if now["task"] != first["task"] and now["state"] == "running":
                break
            time.sleep(0.1)
        assert now["task"] != first["task"] and now["state"] == "running"
        assert store.supervisor_pid() not in (None, pid)
    finally:
        remove("calm")
