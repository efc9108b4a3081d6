"""`labkit compose -f FILE up|down|ps`: an application of services, one file.

The file is read by composefile.py (a subset of the compose format, every
error with its line). `up` does, in the order depends_on gives:

    labkit network create PROJECT_NET          for each network of the file
    labkit build -t PROJECT-SVC:latest DIR     for each service with build:
    labkit service create --name PROJECT_SVC --alias SVC --network PROJECT_NET ...

and waits for each service to be ready before the next one starts, so that
a service's dependencies answer when it starts (compose's
condition: service_healthy). Names follow `docker stack deploy`: the service
PROJECT_SVC answers on its network to SVC as well, so that the file's own
names work inside (http://api/). `down` removes the project's services and
networks; `ps` shows their replicas. Up again on a running project changes
what changed (image, replicas) with a rolling update, as compose recreates.
"""

import sys

from labkit.errors import LabkitError
from labkit.services import command, composefile, store

LABEL = "compose.project"


def _service_name(project, svc):
    return f"{project['name']}_{svc['name']}"


def _network_name(project, net):
    return f"{project['name']}_{net}"


def _services_of(name):
    return [n for n in store.names() if store.load(n).get("labels", {}).get(LABEL) == name]


def _build(project, svc):
    from labkit.api import call
    tag = svc["image"] or f"{project['name']}-{svc['name']}:latest"
    argv = ["build", "-t", tag] + (["-f", svc["build"]["file"]] if svc["build"]["file"] else [])
    r = call(argv + [svc["build"]["context"]], timeout=600)
    if r.returncode != 0:
        raise LabkitError(f"{project['file']}:{svc['line']}: building service '{svc['name']}' failed: "
                          f"{r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}",
                          f"run it alone to see every step: {r.command}")
    print(f"built {tag}", file=sys.stderr)
    return tag


def up(project):
    from labkit.networks import endpoints
    from labkit.networks import store as nets
    for svc in project["services"]:
        if len(svc["networks"]) > 1:
            raise LabkitError(f"{project['file']}:{svc['line']}: service '{svc['name']}' names "
                              f"{len(svc['networks'])} networks: a labkit service's replicas join one",
                              "give each service one network")
    for net, options in project["networks"].items():
        name = _network_name(project, net)
        if name not in nets.names():
            endpoints.create_network(name, subnet=options.get("subnet"))
            print(f"network {name} created", file=sys.stderr)
    for svc in project["services"]:
        image = _build(project, svc) if svc["build"] else svc["image"]
        name = _service_name(project, svc)
        health = None
        if svc["healthcheck"]:
            h = svc["healthcheck"]
            health = {"cmd": h["test"], "interval": h["interval"], "timeout": h["timeout"],
                      "retries": h["retries"], "start_period": h["start_period"]}
        if name in store.names():
            spec = store.load(name)
            command.change(name, image=image, replicas=svc["replicas"])
            if spec["image"] == image and svc["build"]:
                print(f"{name}: up to date", file=sys.stderr)
        else:
            command.create(command.spec_from(
                name, image, svc["command"] or (), svc["replicas"], _network_name(project, svc["networks"][0]),
                svc["ports"], svc["environment"], svc["memory"], svc["cpus"], None, health,
                [svc["name"]] + svc["aliases"], labels={LABEL: project["name"]}))
        command.converge(name, wait=command.WAIT * 2)
        print(name)


def down(project, timeout=None):
    """Remove the project's services, dependents first, then its networks.
    ``timeout``: seconds each replica gets to stop after SIGTERM
    (docker compose down -t)."""
    from labkit.networks import endpoints
    from labkit.networks import store as nets
    for name in reversed(_services_of(project["name"])):
        command.remove(name, grace=timeout)
        print(f"{name} removed")
    for net in project["networks"]:
        name = _network_name(project, net)
        if name in nets.names():
            endpoints.remove_network(name)
            print(f"network {name} removed")


def ps(project):
    for name in _services_of(project["name"]):
        command.ps(name)


def main(a):
    project = composefile.load(a.file, a.project)
    if a.compose_command == "down":
        if a.timeout is not None and not 0 <= a.timeout <= 600:
            raise LabkitError(f"compose down: --timeout {a.timeout:g} is not between 0 and 600 seconds",
                              "give the seconds each replica has to stop, e.g. -t 0 or -t 10")
        down(project, a.timeout)
    else:
        {"up": up, "ps": ps}[a.compose_command](project)
    return 0
