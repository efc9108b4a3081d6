"""`labkit service ...`: docker swarm's service commands, on one machine.

    labkit service create --name S [--replicas N] [-p [IP:]HOSTPORT:PORT] [--network NET]
                          [-e K=V] [--memory M] [--cpus C] [--health-cmd CMD ...] IMAGE [CMD...]
    labkit service ls | ps S | inspect S | logs S
    labkit service scale S=N [S=N...]
    labkit service update S --image IMAGE [--replicas N]
    labkit service rm S...

A command writes what is wanted (service.json) and waits, as `docker service
create` does, until the supervisor has made it so (-d: it does not wait);
the work itself is the supervisor's (supervisor.py).
"""

import json
import sys
import time

from labkit.errors import Conflict, LabkitError
from labkit.services import store, supervisor

WAIT = 60.0   # seconds a command waits for the service to converge


def spec_from(name, image, command=(), replicas=1, network=None, publish=(), env=(), memory=None, cpus=None,
              pids=None, health=None, aliases=(), labels=None):
    """A checked spec; nothing is written. ``health``: {cmd, interval,
    timeout, retries, start_period} or None."""
    from labkit.networks import ports
    from labkit.networks import store as nets
    store.check_name(name)
    network = network or nets.DEFAULT
    if network in ("none", "host") or network.startswith("container:"):
        raise LabkitError(f"--network {network}: a service's replicas need a network of their own to share "
                          "an address", "leave --network out (the default network) or give one of `labkit network ls`")
    if network != nets.DEFAULT:
        nets.check_name(network)
        nets.load(network)
    for alias in aliases:
        nets.check_alias(alias)
    for item in env:
        if "=" not in item:
            raise LabkitError(f"-e {item}: expected NAME=VALUE", "for example -e LANG=C.UTF-8")
    if memory or cpus or pids:    # checked as `labkit run` will, before any replica exists
        from labkit.linux.cgroups.resources import Resources
        Resources.from_dict({k: v for k, v in (("memory", memory), ("cpus", cpus), ("pids", pids)) if v})
    if health is not None:
        if not health.get("cmd"):
            raise LabkitError("--health-cmd is empty", "give a shell command that exits 0 when the replica is healthy")
        if health["retries"] < 1 or health["interval"] <= 0 or health["timeout"] <= 0:
            raise LabkitError("--health-retries, --health-interval and --health-timeout must be above 0",
                              "e.g. --health-interval 1s --health-retries 3")
    from labkit.images import runnable
    img = runnable.for_run(image)     # a missing image: its own clear error, before anything is made
    if not command and not (img["entrypoint"] or img["cmd"]):
        raise LabkitError(f"image '{img['ref']}' has no Cmd nor Entrypoint",
                          f"give a command: labkit service create --name {name} {image} CMD")
    return {"name": name, "image": image, "command": list(command), "replicas": store.check_replicas(replicas),
            "network": network, "ports": [ports.parse(p) for p in publish], "env": list(env),
            "memory": memory, "cpus": cpus, "pids": pids, "health": health,
            "aliases": [name] + [a for a in aliases if a != name], "generation": 1,
            "created": time.time(), "updated": time.time(), "labels": dict(labels or {})}


def create(spec):
    """Write the spec, the virtual IP and start the supervisor."""
    from labkit.networks import endpoints
    with store.Lock():
        if spec["name"] in store.names():
            raise Conflict(f"service name '{spec['name']}' is already in use",
                           f"`labkit service rm {spec['name']}` first, or pick another name")
        from labkit.containers import all_ids
        taken = [c for c in all_ids() if c.startswith(spec["name"] + ".") and c[len(spec["name"]) + 1:].isdigit()]
        if taken:
            raise Conflict(f"container {taken[0]} exists: service '{spec['name']}' names its replicas so",
                           f"remove it (`labkit rm -f {taken[0]}`) or pick another service name")
        vip = endpoints.add_service(spec["network"], spec["name"], spec["aliases"], spec["ports"])
        spec["vip"] = vip["vip"]
        try:
            store.save(spec)
            supervisor.ensure()
        except BaseException:
            endpoints.remove_service(spec["network"], spec["name"])
            from labkit.startpath import remove_tree
            remove_tree(store.root(spec["name"]))
            raise
    return spec


def change(name, **fields):
    """Change the spec (scale, update) under the lock; returns it."""
    with store.Lock():
        spec = store.load(name)
        if spec.get("removing"):
            raise Conflict(f"service '{name}' is being removed", "wait for `labkit service rm` to end")
        if "image" in fields and fields["image"] != spec["image"]:
            from labkit.images import runnable
            runnable.for_run(fields["image"])
            spec["generation"] += 1
        spec.update(fields, updated=time.time())
        store.save(spec)
        supervisor.ensure()
        return spec


def remove(name, wait=WAIT, grace=None):
    """Remove service ``name`` and wait until it is gone. ``grace``: seconds
    each replica gets between SIGTERM and SIGKILL (supervisor.GRACE if None)."""
    with store.Lock():
        spec = store.load(name)
        spec["removing"] = True
        if grace is not None:
            spec["stop_grace"] = grace
        store.save(spec)
        supervisor.ensure()
    deadline = time.time() + wait
    while name in store.names():
        if time.time() > deadline:
            raise LabkitError(f"service '{name}' was not removed within {wait:.0f} s",
                              "see $LABKIT_HOME/services/supervisor.log; `labkit gc` collects what is left")
        time.sleep(0.1)
    while not store.names() and store.supervisor_pid() and time.time() < deadline:
        time.sleep(0.05)    # the last service: the supervisor ends with it


def status(spec, obs=None):
    """(replicas ready, wanted, what is wrong or None)."""
    obs = obs or store.tasks(spec["name"])
    slots = [t for k, t in obs["slots"].items() if int(k) <= spec["replicas"]]
    ready = sum(1 for t in slots if t["state"] == store.RUNNING and t["ready"] and t["generation"] == spec["generation"])
    problem = None
    for t in slots:
        if t.get("error") and t["failures"] >= 2:     # failed again after its first restart
            problem = f"{t['container']}: {t['error']}"
    update = obs.get("update")
    if update and update["state"] == store.PAUSED:
        problem = f"update paused: {update['message']}"
    return ready, spec["replicas"], problem


def converge(name, wait=WAIT, quiet=False):
    """Wait until every replica is ready at the spec's generation, or
    something is wrong (a replica keeps failing, the update paused)."""
    deadline = time.time() + wait
    shown = None
    while True:
        spec = store.load(name)
        ready, wanted, problem = status(spec)
        line = f"{name}: {ready}/{wanted} replicas ready"
        if line != shown and not quiet:
            print(line, file=sys.stderr)
            shown = line
        if ready == wanted and not problem and _settled(spec):
            return
        if problem:
            raise LabkitError(f"service '{name}' is not converging: {problem}",
                              f"`labkit service ps {name}` shows its replicas; fix it with `labkit service update`, "
                              f"or `labkit service rm {name}`")
        if time.time() > deadline:
            raise LabkitError(f"service '{name}': {ready}/{wanted} replicas ready after {wait:.0f} s",
                              f"`labkit service ps {name}` shows why; `labkit service logs {name}` their output")
        time.sleep(0.2)


def _settled(spec):
    obs = store.tasks(spec["name"])
    return all(int(k) <= spec["replicas"] for k in obs["slots"]) and \
        (obs.get("update") or {}).get("state") in (None, store.COMPLETED)


# ---- what the commands print ------------------------------------------

def _ago(t):
    if not t:
        return ""
    s = int(time.time() - t)
    return f"{s} s ago" if s < 120 else f"{s // 60} min ago"


def ls():
    print(f"{'NAME':<20} {'REPLICAS':<10} {'IMAGE':<32} {'VIP':<15} PORTS")
    from labkit.networks import ports
    for name in store.names():
        spec = store.load(name)
        ready, wanted, _ = status(spec)
        published = ", ".join(ports.text(p) for p in spec["ports"])
        print(f"{name:<20} {f'{ready}/{wanted}':<10} {spec['image']:<32} {spec.get('vip', ''):<15} {published}")


def ps(name):
    spec = store.load(name)
    obs = store.tasks(name)
    print(f"{'NAME':<16} {'TASK':<8} {'IMAGE':<28} {'STATE':<22} {'PID':>7}  {'ADDRESS':<12} ERROR")
    for key in sorted(obs["slots"], key=int):
        t = obs["slots"][key]
        state = t["state"] + (f" ({t['health']})" if t["health"] and t["state"] == store.RUNNING else "")
        if t["state"] == store.RUNNING:
            state += f" {_ago(t['started'])}"
        print(f"{t['container']:<16} {t['task']:<8} {t['image']:<28} {state:<22} {t['pid'] or '-':>7}  "
              f"{t['ip'] or '-':<12} {t.get('error') or ''}")
        for past in t["history"]:
            print(f" \\_ {t['container']:<12} {past['task']:<8} {past['image']:<28} "
                  f"{'shutdown ' + _ago(past['ended']):<22} {'-':>7}  {'-':<12} {past['why']}")


def inspect(names):
    out = []
    for name in names:
        spec = store.load(name)
        ready, wanted, problem = status(spec)
        obs = store.tasks(name)
        out.append({"Spec": spec, "Replicas": {"Ready": ready, "Wanted": wanted, "Problem": problem},
                    "Tasks": obs["slots"], "Update": obs.get("update"), "Events": obs["events"][-20:]})
    print(json.dumps(out, indent=2))


def logs(name):
    from labkit.services import tasks
    store.load(name)
    for label, text in tasks.logs(name):
        for line in text.splitlines():
            print(f"{label} | {line}")


def main(a):
    """`labkit service ACTION` from the command line's parsed arguments (labkit/cli/)."""
    action = a.service_command
    if action == "supervise":
        return supervisor.Supervisor().main()
    if action == "ls":
        ls()
    elif action == "ps":
        ps(a.name)
    elif action == "inspect":
        inspect(a.names)
    elif action == "logs":
        logs(a.name)
    elif action == "create":
        health = None
        if a.health_cmd:
            health = {"cmd": a.health_cmd,
                      "interval": store.parse_duration(a.health_interval, "--health-interval"),
                      "timeout": store.parse_duration(a.health_timeout, "--health-timeout"),
                      "retries": a.health_retries,
                      "start_period": store.parse_duration(a.health_start_period, "--health-start-period")}
        cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
        spec = create(spec_from(a.name, a.image, cmd, a.replicas, a.network, a.publish, a.env, a.memory,
                                a.cpus, a.pids, health, a.alias))
        print(spec["name"])
        if not a.detach:
            converge(spec["name"])
    elif action == "scale":
        wanted = []
        for item in a.pairs:
            name, eq, n = item.partition("=")
            if not eq:
                raise LabkitError(f"service scale {item}: expected SERVICE=REPLICAS", "for example: web=5")
            wanted.append((store.load(name)["name"], store.check_replicas(n)))
        for name, n in wanted:
            change(name, replicas=n)
            print(f"{name} scaled to {n}")
        for name, _ in wanted if not a.detach else ():
            converge(name)
    elif action == "update":
        fields = {}
        if a.image:
            fields["image"] = a.image
        if a.replicas is not None:
            fields["replicas"] = store.check_replicas(a.replicas)
        if not fields:
            raise LabkitError("service update: nothing to change", "give --image IMAGE or --replicas N")
        change(a.name, **fields)
        print(a.name)
        if not a.detach:
            converge(a.name, wait=WAIT * 3)
    elif action == "rm":
        if a.time is not None and a.time < 0:
            raise LabkitError(f"service rm -t {a.time:g}: a time is 0 or more seconds", "give e.g. -t 0")
        for name in a.names:
            remove(name, grace=a.time)
            print(name)
    return 0
