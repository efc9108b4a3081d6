"""Notebook 08's exercises: a service of replicas on one port, limits that
each replica gets, an application of two services from one compose file.
Each check asks the real system: the supervisor's tasks and `labkit ps`,
the replicas' cgroup files, requests to the host's 127.0.0.1."""

import subprocess

from labkit.course.lab import Exercise, env
from labkit.errors import LabkitError
from labkit.i18n import _

REQUESTS = 30       # 08.replicas: at most this many, until every replica has answered
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
    from labkit.services import store
    try:
        spec = store.load(name)
    except LabkitError:
        return None, _no_service(name)
    running = [t for t in store.tasks(name)["slots"].values() if t["state"] == store.RUNNING]
    if want is None and not running:
        return None, _("{label} has no replica running", label=label or name)
    if want is not None and len(running) != want:
        return None, _("{label} has {running} replica(s) running, not {want}", label=label or name,
                       running=len(running), want=want)
    return (spec, running), None


def _no_service(name):
    return _("there is no service {name} (`labkit service ls` lists them)", name=name)


def _replicas():
    from labkit.course.facts.services import get
    found, why = _service("lab08-web", 3)
    if found is None:
        return False, why
    spec, running = found
    if not any(p["host_port"] == 8088 for p in spec["ports"]):
        return False, _("lab08-web publishes no host port 8088 (`labkit service ls` shows its ports)")
    hostnames = {f"{t['container']}.{t['task']}" for t in running}
    # Requests until all three have answered, 30 at most: a spread is judged
    # on enough of them, not on a round number that luck can miss.
    answers, sent = set(), 0
    while sent < REQUESTS and not hostnames <= answers:
        answers.add(get(8088, timeout=2))
        sent += 1
    answers.discard(None)
    if not answers:
        return False, _("nothing answers on the host's 127.0.0.1:8088")
    if not answers <= hostnames:
        return False, _("127.0.0.1:8088 answers, but not with the replicas' hostnames (is the page `hostname`?)")
    if len(answers) < 3:
        return False, _("127.0.0.1:8088 answered from {answers} replica(s) in {sent} requests, not from all 3",
                        answers=len(answers), sent=sent)
    return True, _("127.0.0.1:8088 answered from all 3 replicas of lab08-web within {sent} requests", sent=sent)


def _limits():
    from labkit.linux import cgroups
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


def project():
    """The compose project of the app: the one whose services api and front
    are up (whatever its name: the directory's, a name: key, -p), else the
    default one, lab08-app."""
    from labkit.services import store
    names = set(store.names())
    found = sorted(n[:-len("_api")] for n in names if n.endswith("_api") and n[:-len("_api")] + "_front" in names)
    return found[0] if len(found) == 1 else "lab08-app"


def _compose():
    app = project()
    found, why = _service(f"{app}_api", 2, _("the service api of the app"))
    if found is None:
        if why == _no_service(f"{app}_api"):
            why = _("{why} — did `labkit compose -f {compose_dir}/compose.yaml up` run?", why=why,
                    compose_dir=COMPOSE_DIR)
        return False, why
    api = found[1]
    found, why = _service(f"{app}_front", None, _("the service front of the app"))
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


def _compose_file(text):
    body = text.replace("\\", "\\\\").replace("'", "'\\''").replace("%", "%%").replace("\n", "\\n")
    return f"mkdir -p {COMPOSE_DIR} && printf '{body}' > {COMPOSE_DIR}/compose.yaml"


def _write_compose():
    """The solution's first command: the compose file, with printf as a student could type it."""
    return _compose_file(COMPOSE)


def _rm_service(name):
    return f"labkit service rm -t 0 {name} >/dev/null 2>&1 || true"


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
             # Whatever the project's name (a name: key, -p): every app with an api and a front goes.
             [f"test -f {COMPOSE_DIR}/compose.yaml && for p in lab08-app $(labkit service ls | "
              "awk 'NR > 1 {print $1}' | sed -n 's/_front$//p'); do "
              f"labkit compose -f {COMPOSE_DIR}/compose.yaml -p $p down -t 0 >/dev/null 2>&1; done; true",
              f"rm -rf {COMPOSE_DIR}"]),
]


_UP = f"labkit compose -f {COMPOSE_DIR}/compose.yaml up"
_WEB = f"labkit/base sh -c '{PAGE}'"

ALTERNATIVES = {
    "08.replicas": {
        "--flag=value spellings, the address spelled out": [
            f"labkit service create --name=lab08-web --replicas=3 --publish 127.0.0.1:8088:80 {_WEB}"],
        "one replica, then scaled to three": [
            f"labkit service create --name lab08-web -p 8088:80 {_WEB}", "labkit service scale lab08-web=3"],
    },
    "08.limits": {
        "the size in bytes, --flag=value": [
            "labkit service create --name lab08-api --replicas=2 --memory=50331648 --pids-limit=30 "
            "labkit/base sleep 600"],
        "limits first, then scaled from one to two": [
            "labkit service create --pids-limit 30 --memory 48M --name lab08-api labkit/base busybox sleep 600",
            "labkit service scale lab08-api=2"],
    },
    "08.compose": {
        "a name: key, scale: and the command as a string": [_compose_file(COMPOSE.replace(
            "services:", "name: lab08-shop\nservices:").replace(
            f'    command: ["sh", "-c", "{PAGE}"]\n    deploy:\n      replicas: 2',
            f"    command: sh -c '{PAGE}'\n    scale: 2")), _UP],
        "the project named with -p, front written first": [_compose_file(
            "services:\n  front:\n    image: labkit/base\n    command: [sleep, \"600\"]\n"
            "    depends_on:\n      - api\n  api:\n    image: labkit/base\n"
            f"    command: [sh, -c, \"{PAGE}\"]\n    deploy: {{replicas: 2}}\n"),
            f"labkit compose -p lab08-mine -f {COMPOSE_DIR}/compose.yaml up"],
    },
}

NEAR_MISSES = {
    "08.replicas": {
        "one replica": ([f"labkit service create --name lab08-web --replicas 1 -p 8088:80 {_WEB}"],
                        "1 replica(s) running, not 3"),
        "published on 8089": ([f"labkit service create --name lab08-web --replicas 3 -p 8089:80 {_WEB}"],
                              "publishes no host port 8088"),
        "the same page from every replica": (
            ["labkit service create --name lab08-web --replicas 3 -p 8088:80 labkit/base sh -c "
             "'mkdir -p /www && echo web > /www/index.html && exec httpd -f -p 80 -h /www'"],
            "not with the replicas' hostnames"),
    },
    "08.limits": {
        "no limits": (["labkit service create --name lab08-api --replicas 2 labkit/base sleep 600"], "no memory limit"),
        "31 processes": (["labkit service create --name lab08-api --replicas 2 --memory 48m --pids-limit 31 "
                          "labkit/base sleep 600"], "may start 31 processes"),
    },
    "08.compose": {
        "one replica of api": ([_compose_file(COMPOSE.replace("replicas: 2", "replicas: 1")), _UP],
                               "1 replica(s) running, not 2"),
        "front on a network of its own": ([_compose_file(
            COMPOSE + "    networks: [side]\nnetworks:\n  side: {}\n"), _UP], "does not reach the api"),
    },
}
