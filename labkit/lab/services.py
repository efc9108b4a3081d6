"""Notebook 08's exercises: a service of replicas on one port, limits that
each replica gets, an application of two services from one compose file.
Each check asks the real system: the supervisor's tasks and `labkit ps`,
the replicas' cgroup files, requests to the host's 127.0.0.1."""

import subprocess

from . import Exercise, env
from ..errors import LabkitError
from ..i18n import _

PAGE = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"
COMPOSE_DIR = "/tmp/lab08-app"
COMPOSE = f"""\
services:
  api:
    image: labkit/base
    command: ["sh", "-c", "{PAGE}"]
    deploy:
      replicas: 2
  front:
    image: labkit/base
    command: ["sleep", "600"]
    depends_on: [api]
"""


def _service(name, want, label=None):
    """(spec, running tasks) of service ``name`` when ``want`` replicas run
    (None: at least one), or (None, why not)."""
    from ..services import store
    try:
        spec = store.load(name)
    except LabkitError:
        return None, _no_service(name)
    running = [t for t in store.tasks(name)["slots"].values() if t["state"] == "running"]
    if want is None and not running:
        return None, _("{label} has no replica running", label=label or name)
    if want is not None and len(running) != want:
        return None, _("{label} has {running} replica(s) running, not {want}", label=label or name,
                       running=len(running), want=want)
    return (spec, running), None


def _no_service(name):
    return _("there is no service {name} (`labkit service ls` lists them)", name=name)


def _replicas():
    from ..facts.services import get
    found, why = _service("lab08-web", 3)
    if found is None:
        return False, why
    spec, running = found
    if not any(p["host_port"] == 8088 for p in spec["ports"]):
        return False, _("lab08-web publishes no host port 8088 (`labkit service ls` shows its ports)")
    answers = {get(8088, timeout=2) for _ in range(6)} - {None}
    hostnames = {f"{t['container']}.{t['task']}" for t in running}
    if not answers:
        return False, _("nothing answers on the host's 127.0.0.1:8088")
    if not answers <= hostnames:
        return False, _("127.0.0.1:8088 answers, but not with the replicas' hostnames (is the page `hostname`?)")
    if len(answers) < 3:
        return False, _("127.0.0.1:8088 answered from {answers} replica(s) in 6 requests, not from all 3",
                        answers=len(answers))
    return True, _("127.0.0.1:8088 answers from the 3 replicas of lab08-web, in turn")


def _limits():
    from .. import cgroups
    found, why = _service("lab08-api", 2)
    if found is None:
        return False, why
    running = found[1]
    want = 48 << 20
    for t in running:
        m = cgroups.load(t["container"])
        stats = m.stats() if m is not None else {}
        memory, pids = stats.get("memory_limit"), stats.get("pids_limit")
        if memory is None or memory != want:
            return False, _("{container} has no memory limit of 48 MiB: its cgroup says {memory}",
                            container=t["container"], memory=memory)
        if pids != 30:
            return False, _("{container} may start {pids} processes, not 30", container=t["container"],
                            pids=pids or _("any number of"))
    return True, _("each replica of lab08-api has a cgroup of its own: memory 48 MiB, 30 processes")


def _compose():
    found, why = _service("lab08-app_api", 2, _("the service api of the app"))
    if found is None:
        if why == _no_service("lab08-app_api"):
            why = _("{why} — did `labkit compose -f {compose_dir}/compose.yaml up` run?", why=why,
                    compose_dir=COMPOSE_DIR)
        return False, why
    api = found[1]
    found, why = _service("lab08-app_front", None, _("the service front of the app"))
    if found is None:
        return False, why
    front = found[1]
    r = _sh(f"labkit exec {front[0]['container']} -- sh -c "
            "'for i in 1 2 3 4 5 6; do timeout 3 wget -q -O- http://api/; done'")
    answers = set(r.stdout.split())
    names = {f"{t['container']}.{t['task']}" for t in api}
    if not answers & names:
        return False, _("front does not reach the api by its name (`wget -O- http://api/` inside front)")
    if not names <= answers:
        return False, _("front reaches {reached} of the api's 2 replicas by name: is each one serving?",
                        reached=len(answers & names))
    return True, _("front reaches both replicas of api by the name `api`")


def _sh(cmd, timeout=60):
    return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=timeout, env=env())


def _write_compose():
    """The solution's first command: the compose file, with printf as a student could type it."""
    body = COMPOSE.replace("\\", "\\\\").replace("'", "'\\''").replace("%", "%%").replace("\n", "\\n")
    return f"mkdir -p {COMPOSE_DIR} && printf '{body}' > {COMPOSE_DIR}/compose.yaml"


def _rm_service(name):
    return f"labkit service rm {name} >/dev/null 2>&1 || true"


EXERCISES = [
    Exercise("08.replicas", "three replicas behind one port",
             "Create a service lab08-web of 3 replicas of labkit/base running the web server "
             f"`sh -c '{PAGE}'` (port 80 inside, each page its replica's hostname), published on the "
             "host's 127.0.0.1:8088, so that requests there are answered by all three in turn.",
             ["a service is N identical containers and one address that spreads the connections over them "
              "(docker service create)",
              "labkit service create --name NAME --replicas N -p HOSTPORT:PORT IMAGE CMD...",
              f"sudo labkit service create --name lab08-web --replicas 3 -p 8088:80 labkit/base sh -c '{PAGE}'"],
             _replicas,
             [f"labkit service create --name lab08-web --replicas 3 -p 8088:80 labkit/base sh -c '{PAGE}'"],
             [_rm_service("lab08-web"), "labkit network rm labkit >/dev/null 2>&1 || true"]),
    Exercise("08.limits", "limits for every replica",
             "Create a service lab08-api of 2 replicas of labkit/base running `sleep 600`, each replica "
             "limited to 48 MiB of memory and 30 processes.",
             ["a service's limits are each replica's: every container gets a cgroup of its own "
              "(notebook 03)",
              "labkit service create takes labkit run's --memory and --pids-limit",
              "sudo labkit service create --name lab08-api --replicas 2 --memory 48m --pids-limit 30 "
              "labkit/base sleep 600"],
             _limits,
             ["labkit service create --name lab08-api --replicas 2 --memory 48m --pids-limit 30 labkit/base sleep 600"],
             [_rm_service("lab08-api"), "labkit network rm labkit >/dev/null 2>&1 || true"]),
    Exercise("08.compose", "an application in one file",
             f"Write {COMPOSE_DIR}/compose.yaml with two services: api, 2 replicas of labkit/base running the "
             f"web server `sh -c '{PAGE}'`, and front, one replica of labkit/base running `sleep 600`; start it "
             "with labkit compose, so that front reaches both replicas of api by the name `api`.",
             ["compose names each service PROJECT_SERVICE (the project is the file's directory) and lets the "
              "others of its network find it by SERVICE",
              "services: NAME: image:, command: [...], deploy: {replicas: N}, depends_on: [...]; "
              f"then labkit compose -f {COMPOSE_DIR}/compose.yaml up",
              "the file is the reference's own: `print(lab.show_solution('08.compose'))`"],
             _compose,
             [_write_compose(), f"labkit compose -f {COMPOSE_DIR}/compose.yaml up"],
             [f"test -f {COMPOSE_DIR}/compose.yaml && labkit compose -f {COMPOSE_DIR}/compose.yaml down -t 0 "
              ">/dev/null 2>&1 || true", f"rm -rf {COMPOSE_DIR}"]),
]
