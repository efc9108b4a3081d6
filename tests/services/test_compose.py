"""labkit compose: the microservices app of examples/microservices, one file.

In a network namespace of the test's own; requests to 127.0.0.1 only."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "networks"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from net_helpers import labkit, ok  # noqa: E402

pytestmark = pytest.mark.root
APP = os.path.join(ROOT, "examples", "microservices", "compose.yaml")


def front():
    import http.client
    try:
        # Longer than the front's own wait for the API (its CGI's `timeout 8
        # wget`): with no API replica the front answers "api unavailable"
        # once that wait ends, when the API's address drops rather than refuses.
        c = http.client.HTTPConnection("127.0.0.1", 18090, timeout=12)
        c.request("GET", "/cgi-bin/front")
        return c.getresponse().read().decode().strip()
    except OSError:
        return None


def test_the_app_up_scaled_one_service_at_a_time_and_down(netns):
    from labkit.services import store
    try:
        ok("compose", "-f", APP, "up", timeout=300)
        answers = [front() for _ in range(6)]
        fronts = {a.split(":")[0] for a in answers}
        assert len(fronts) == 3, answers                       # three front replicas, in turn
        visits = [int(a.split("visit ")[1].split()[0]) for a in answers]
        assert visits == sorted(visits) and len(set(visits)) == 6   # one API, counting
        assert all("api shop_api.1." in a for a in answers)    # called by name, across containers
        before = {t["task"] for t in store.tasks("shop_front")["slots"].values()}
        ok("service", "scale", "shop_api=0", timeout=60)       # the API goes; the front stays
        assert all(a.endswith("api unavailable") for a in (front(), front()))
        ok("service", "scale", "shop_api=1", timeout=60)
        assert "visit 1 " in front()                           # a new API replica: its own state
        assert {t["task"] for t in store.tasks("shop_front")["slots"].values()} == before
        assert "shop_front.3" in ok("compose", "-f", APP, "ps")
        limits = ok("service", "inspect", "shop_front")
        assert '"memory": "32M"' in limits
    finally:
        labkit("compose", "-f", APP, "down", timeout=120)
        labkit("rmi", "shop-front:latest", "shop-api:latest")
        labkit("builder", "prune")        # the build steps' cache tags go too
    assert store.names() == [] and "shop_default" not in ok("network", "ls")


def test_unknown_key_named_with_its_line(netns, tmp_path):
    f = tmp_path / "compose.yaml"
    f.write_text("services:\n  web:\n    image: labkit/base\n    volumes: [/x]\n")
    r = labkit("compose", "-f", str(f), "up")
    assert r.returncode == 1 and "compose.yaml:4" in r.stderr and "volumes" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_down_timeout_is_each_replicas_grace(netns, tmp_path):
    """compose down -t N (docker compose's flag): each replica gets N seconds
    between SIGTERM and SIGKILL. `sleep` as PID 1 ignores SIGTERM, so with
    -t 0 it is killed at once; the supervisor's log says which grace it used."""
    from labkit.services import store
    app = tmp_path / "graceapp"
    app.mkdir()
    (app / "compose.yaml").write_text("services:\n  idle:\n    image: labkit/base\n    command: [sleep, '600']\n")
    f = str(app / "compose.yaml")
    bad = labkit("compose", "-f", f, "down", "-t", "-1")
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1 and "-t 0" in bad.stderr, bad.stderr
    try:
        ok("compose", "-f", f, "up", timeout=120)
        assert "graceapp_idle.1" in ok("compose", "-f", f, "ps")
        with open(os.path.join(store.root(), "supervisor.log")) as log:
            log.seek(0, os.SEEK_END)
            ok("compose", "-f", f, "down", "-t", "0", timeout=60)
            said = log.read()
    finally:
        labkit("compose", "-f", f, "down", timeout=60)
    assert "graceapp_idle: removed (stop grace 0 s)" in said, said
    assert store.names() == []
