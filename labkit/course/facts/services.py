"""Stage 8 facts: services — N identical replicas behind one address, kept
running by a reconcile loop — measured with labkit ps, nft, wget, kill and
the replicas' cgroups, beside what the supervisor wrote (tasks.json).

Requests go to 127.0.0.1 only, in bounded loops. Each fact removes the
services it made, and the network `labkit` if it made it. Run them on a lab
machine (the classroom VM) or in a network namespace of your own (`unshare
-n`, as the tests do): they make bridges and firewall rules.
"""

import contextlib
import http.client
import json
import os
import shlex
import signal
import tempfile
import threading
import time

from labkit import api
from labkit.i18n import _
from labkit.course.facts import fact, lines
from labkit.course.facts.network import network
from labkit import home

LAYER = "8 services"
PORT = 18088
PREFIX = "lab08-facts"
# A web server that answers with its hostname (SERVICE.SLOT.TASK). PID 1 of a
# PID namespace ignores a SIGTERM it has no handler for, so the shell traps it:
# a replica taken out of service stops at once instead of after the grace time.
WEB = "trap 'exit 0' TERM; mkdir -p /www; echo $(cat /version 2>/dev/null) $(hostname) > /www/index.html; " \
      "httpd -f -p 80 -h /www & wait"
HEALTH = ["--health-cmd", "wget -q -O /dev/null http://127.0.0.1/", "--health-interval", "0.5s"]


def labkit(*args, timeout=300):
    return api.call(list(args), check=True, timeout=timeout)


def shell(*args):
    return "sudo labkit " + shlex.join(args)


def get(port=PORT, path="/", timeout=1.0):
    """One request to 127.0.0.1:PORT: the body, or None if it failed."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read().decode().strip()
        c.close()
        return body if r.status == 200 else None
    except OSError:
        return None


def send(n, rate, port=PORT, path="/", out=None, stop=None, timeout=1.0):
    """At most ``n`` requests at ``rate`` a second (fewer if ``stop`` is set),
    each given ``timeout`` seconds to answer: [(seconds since the first, body
    or None)], and the time of the first."""
    out, t0 = ([] if out is None else out), time.time()
    for i in range(n):
        if stop is not None and stop.is_set():
            break
        t = time.time()
        out.append((round(t - t0, 3), get(port, path, timeout)))
        time.sleep(max(0.0, t0 + (i + 1) / rate - time.time()))
    return out, t0


class Client(threading.Thread):
    """send() in the background while the fact kills, scales or updates;
    stop() ends it early, join() waits for it."""

    def __init__(self, n, rate, port=PORT, timeout=1.0):
        super().__init__(daemon=True)
        self.n, self.rate, self.port, self.timeout = n, rate, port, timeout
        self.answers, self.halt = [], threading.Event()
        self.t0 = time.time()

    def run(self):
        self.t0 = send(self.n, self.rate, self.port, out=self.answers, stop=self.halt,
                       timeout=self.timeout)[1]

    def stop(self):
        self.halt.set()
        self.join(timeout=30)


@contextlib.contextmanager
def service(name, *options, image="labkit/base", cmd=WEB):
    """`labkit service create --name NAME OPTIONS IMAGE sh -c CMD`, removed at the end."""
    args = ["service", "create", "--name", name, *options, image, "sh", "-c", cmd]
    with network():
        try:
            labkit(*args)
            yield shell(*args)
        finally:
            api.call(["service", "rm", name], timeout=120)


def slots(name):
    from labkit.services import store
    return store.tasks(name)["slots"]


def events(name):
    from labkit.services import store
    return store.tasks(name)["events"]


def _replica_ids():
    from labkit import containers
    return [c for c in containers.all_ids() if c.split(".")[0] in ("web", "shop_front", "shop_api")]


def ps_rows(prefix):
    """`labkit ps` rows of the containers named PREFIX.N: {name: pid}."""
    rows = {}
    for line in labkit("ps").stdout.splitlines()[1:]:
        cols = line.split()
        if cols and cols[0].startswith(prefix + ".") and cols[0][len(prefix) + 1:].isdigit():
            rows[cols[0]] = int(cols[2])
    return rows


# -- 1. replicas ------------------------------------------------------------

def replicas():
    """`service create --replicas 3`: three containers web.1..3 in `labkit ps`,
    each with its own pid and PID namespace, and one virtual IP in nft."""
    with service("web", "--replicas", "3", "-p", f"{PORT}:80", *HEALTH) as cmd:
        rows = ps_rows("web")
        inodes = {name: os.readlink(f"/proc/{pid}/ns/pid") for name, pid in rows.items()}
        service_ps = labkit("service", "ps", "web").stdout
        spec = json.loads(labkit("service", "inspect", "web").stdout)[0]
        chain = api.host("nft list chain ip labkit ports").stdout
    vip = spec["Spec"]["vip"]
    rules = [line for line in lines(chain) if vip in line]
    ok = sorted(rows) == ["web.1", "web.2", "web.3"] and len(set(inodes.values())) == 3 and \
        os.readlink("/proc/self/ns/pid") not in inodes.values() and any("numgen inc mod 3" in r for r in rules)
    return fact("svc_replicas", LAYER, _("3 replicas: 3 containers, 3 pids, 3 PID namespaces, 1 virtual IP"),
                [f"{n} pid {p} {inodes[n]}" for n, p in sorted(rows.items())], f"virtual IP {vip}", ok,
                shell=[cmd, "sudo labkit ps", "sudo labkit service ps web", "sudo nft list chain ip labkit ports"],
                service_ps=service_ps, rules=rules, vip=vip)


def round_robin(n=30, rate=30):
    """Requests to the one published port are answered by the replicas in
    turn (nft's numgen counter, modulo the number of healthy replicas); from
    another container of the network the service's name answers the same."""
    with service("web", "--replicas", "3", "-p", f"{PORT}:80", *HEALTH) as cmd:
        curl = f"for i in 1 2 3 4 5 6; do curl -s --max-time 2 http://127.0.0.1:{PORT}/; done"
        by_curl = lines(api.host(curl).stdout)
        answers = send(n, rate)[0]
        hostnames = {t["container"]: labkit("exec", t["container"], "--", "hostname").stdout.strip()
                     for t in slots("web").values()}
        inside = api.call(["run", "--rm", "--network", "labkit", "labkit/base", "sh", "-c",
                           "for i in 1 2 3; do timeout 3 wget -q -O- http://web/; done"], timeout=60).stdout.split()
    bodies = [b for _, b in answers]
    seen = sorted(set(bodies) - {None})
    turn = bodies[:3]
    ok = None not in bodies and set(seen) == set(hostnames.values()) and len(seen) == 3 and \
        all(b == turn[i % 3] for i, b in enumerate(bodies)) and set(inside) == set(seen) == set(by_curl)
    return fact("svc_round_robin", LAYER,
                _("{n} requests to one port: the 3 replicas in turn; by name the same", n=n),
                f"answers from {len(seen)} replicas, in turn", f"hostnames of `labkit exec`: {len(hostnames)}", ok,
                shell=[cmd, curl, "sudo labkit run --rm --network labkit labkit/base sh -c "
                       "'for i in 1 2 3; do wget -q -O- http://web/; done'"],
                answers=answers, hostnames=hostnames, by_name=inside, by_curl=by_curl)


# -- 2. the reconcile loop --------------------------------------------------

# How long a killed replica may take to be replaced and healthy before the
# fact says it was not: a bound, not the lesson. The figure is the time it
# took (about 1 s on a laptop; an emulated classroom VM takes several).
REPLACE_BOUND = 60.0


def _until(condition, seconds, pause=0.1):
    """Poll ``condition`` until it holds (True) or ``seconds`` pass (False)."""
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            return False
        time.sleep(pause)
    return True


def kill_replace(n=20, rate=4):
    """A replica killed with `kill -9` from the host: at most a request or
    two fail, and the supervisor starts a new task in its slot."""
    with service("web", "--replicas", "3", "-p", f"{PORT}:80", *HEALTH) as cmd:
        victim = slots("web")["2"]
        client = Client(n, rate)
        client.start()
        _until(lambda: len(client.answers) >= 4, n / rate)    # the kill lands among the requests
        killed = time.time()
        os.kill(victim["pid"], signal.SIGKILL)
        new = {}

        def replaced_and_ready():
            from labkit.services.store import RUNNING
            new.update(slots("web")["2"])
            return new["task"] != victim["task"] and new["state"] == RUNNING and new["ready"]
        replaced = time.time() - killed if _until(replaced_and_ready, REPLACE_BOUND) else None
        client.join(timeout=n / rate + 30)
        timeline = events("web")
        service_ps = labkit("service", "ps", "web").stdout
    failed = sum(1 for _, b in client.answers if b is None)
    ok = replaced is not None and failed <= 2 and new["pid"] != victim["pid"] and len(client.answers) == n
    return fact("svc_kill_replace", LAYER,
                _("kill -9 of a replica: a new task takes its slot, at most 2 of 20 requests lost"),
                f"new task {new['task']} pid {new['pid']} after {replaced and round(replaced, 1)} s",
                f"killed task {victim['task']} pid {victim['pid']}; {failed} of {n} requests failed", ok,
                shell=[cmd, f"sudo kill -9 {victim['pid']}", "sudo labkit service ps web"],
                answers=client.answers, t0=client.t0, killed=killed - client.t0, replaced_after=replaced,
                failed=failed, events=timeline, service_ps=service_ps, victim=victim["task"], new=new["task"])


def scale(steps=(5, 1)):
    """`service scale web=N`: the loop starts or stops replicas until N run;
    the port answers from N different containers."""
    seen = []
    with service("web", "--replicas", "3", "-p", f"{PORT}:80", *HEALTH) as cmd:
        for want in (3,) + tuple(steps):
            if want != 3 or seen:
                labkit("service", "scale", f"web={want}")
            answers = {b for _, b in send(2 * want + 2, 20)[0]}
            seen.append({"replicas": want, "containers": sorted(ps_rows("web")), "answered_by": len(answers - {None}),
                         "failed": None in answers})
    ok = all(len(s["containers"]) == s["replicas"] == s["answered_by"] and not s["failed"] for s in seen)
    return fact("svc_scale", LAYER, _("scale 3 -> 5 -> 1: that many containers, each answering"),
                [f"{s['replicas']}: {s['answered_by']} answered" for s in seen],
                [f"{s['replicas']}: {len(s['containers'])} in labkit ps" for s in seen], ok,
                shell=[cmd] + [f"sudo labkit service scale web={w}" for w in steps], steps=seen)


CONTAINERFILE = "FROM labkit/base\nRUN echo {version} > /version\n"


@contextlib.contextmanager
def versions(*tags):
    """Images PREFIX/web:TAG, each whose /version says TAG; removed at the end with their build cache."""
    made = []
    try:
        for tag in tags:
            with tempfile.TemporaryDirectory(prefix="lab08-ctx-") as d:
                with open(os.path.join(d, "Containerfile"), "w") as f:
                    f.write(CONTAINERFILE.format(version=tag))
                labkit("build", "-t", f"{PREFIX}/web:{tag}", d)
            made.append(f"{PREFIX}/web:{tag}")
        yield made
    finally:
        if made:
            api.call(["rmi", *made])
        api.call(["builder", "prune"])


def rolling_update(rate=10):
    """`service update --image`: one replica at a time is taken out of the
    rotation, replaced, health-checked and put back; no request fails, and
    the answers move from v1 to v2."""
    with versions("v1", "v2") as (v1, v2), \
            service("web", "--replicas", "3", "-p", f"{PORT}:80", *HEALTH, image=v1) as cmd:
        # A slow answer is not a lost one: on an emulated VM a replica being
        # started can keep a request waiting for seconds. The client is bounded
        # (ten minutes at most) and stopped as soon as the update is done.
        client = Client(int(600 * rate), rate, timeout=10.0)
        client.start()
        time.sleep(0.5)              # the figure's v1 answers before the update
        t = time.time()
        labkit("service", "update", "web", "--image", v2)
        took = time.time() - t
        time.sleep(0.5)              # and v2's after it
        client.stop()
        after = {b for _, b in send(6, 20, timeout=10.0)[0]}
        timeline = events("web")            # the service's whole life: the v1 tasks from their start
    answers = client.answers
    bodies = [b for _, b in answers]
    failed = bodies.count(None)
    first_v2 = next((i for i, b in enumerate(bodies) if b and b.startswith("v2 ")), None)
    ok = failed == 0 and first_v2 is not None and all(b.startswith("v1 ") for b in bodies[:first_v2]) and \
        all(b and b.startswith("v2 ") for b in after) and len(after) == 3
    return fact("svc_rolling_update", LAYER, _("rolling update v1 -> v2, one replica at a time: no request lost"),
                f"{len(bodies)} requests, {failed} failed; after: {sorted(after)}", f"update took {took:.1f} s", ok,
                shell=[cmd, f"sudo labkit service update web --image {v2}"], answers=answers, t0=client.t0,
                events=timeline, took=took, done=round(t + took - client.t0, 3))


# -- 3. limits and cost -----------------------------------------------------

def limits(memory="32m", pids=20):
    """`--memory` and `--pids-limit` of a service are each replica's own
    cgroup limits (memory.max or memory.limit_in_bytes, pids.max)."""
    from labkit.linux import cgroups
    from labkit.course.facts.cgroups import limit_files
    with service("web", "--replicas", "2", "-m", memory, "--pids-limit", str(pids)) as cmd:
        managers = {t["container"]: cgroups.load(t["container"]) for t in slots("web").values()}
        stats = {c: m.stats() for c, m in managers.items()}
        paths = {c: m.path for c, m in managers.items()}
        files = {c: limit_files(m) for c, m in managers.items()}
    want = cgroups.parse_memory(memory)
    ok = len(stats) == 2 and len(set(paths.values())) == 2 and \
        all(s["memory_limit"] == want and s["pids_limit"] == pids for s in stats.values())
    return fact("svc_limits", LAYER, _("each replica: a cgroup of its own with the service's limits"),
                [f"{c}: memory {s['memory_limit']} pids {s['pids_limit']}" for c, s in sorted(stats.items())],
                list(paths.values()), ok, shell=[cmd] + [f"cat {p}" for c in sorted(files) for p in files[c]],
                stats=stats, paths=paths, files=files)


def pss(pid):
    """The proportional set size of a process (/proc/PID/smaps_rollup): its
    private pages, plus its share of the pages it shares with others."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree(pid):
    """``pid`` and its descendants."""
    out = [pid]
    try:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        return out
    for child in children:
        out += tree(int(child))
    return out


def cost_of(cid):
    """What one replica costs: its cgroup's memory, the Pss of its processes
    and of its monitor (the reaper's, shared among the containers it waits
    for), and the disk of its upper and work dirs."""
    from labkit.linux import cgroups
    from labkit import containers, home
    from labkit.stages.unionfs import layers_of
    from labkit.course.facts.overlay import disk_blocks
    state = containers.load(cid)
    overlay = layers_of(home.containers_dir(cid))
    return {"cgroup": cgroups.load(cid).stats()["memory_current"], "pss": sum(pss(p) for p in tree(state["pid"])),
            "monitor_pss": pss(state["monitor"]) / _watched_by(state["monitor"]), "disk": disk_blocks(overlay["upper"], overlay["work"]),
            "lowers": overlay["lowers"]}


def _watched_by(monitor):
    """How many running containers have ``monitor`` as theirs: one, or all
    those the reaper waits for."""
    from labkit import containers
    states = [containers.load(c) for c in containers.all_ids()]
    return max(1, sum(1 for st in states if st.get("monitor") == monitor and st["status"] == containers.RUNNING))


def cost(counts=(1, 4, 8)):
    """N replicas of one image: the image on disk once, each replica only
    its upper dir; memory per replica in its cgroup and in Pss."""
    from labkit.course.facts.overlay import disk_blocks
    rows = []
    with service("web", "--replicas", str(counts[0])) as cmd:
        for n in counts:
            if n != counts[0]:
                labkit("service", "scale", f"web={n}")
            each = [cost_of(t["container"]) for t in slots("web").values()]
            lower = disk_blocks(*each[0]["lowers"])
            rows.append({"n": n, "lower_bytes": lower, "copies_bytes": n * lower,
                         "shared_bytes": lower + sum(c["disk"] for c in each),
                         "cgroup": [c["cgroup"] for c in each], "pss": [c["pss"] for c in each],
                         "monitor_pss": [c["monitor_pss"] for c in each],
                         "same_lowers": all(c["lowers"] == each[0]["lowers"] for c in each)})
    mib = 1 << 20
    big = rows[-1]
    ok = all(r["same_lowers"] and len(r["pss"]) == r["n"] for r in rows) and \
        all(r["shared_bytes"] < r["copies_bytes"] for r in rows if r["n"] > 1)
    return fact("svc_cost", LAYER, _("{n} replicas share one image on disk; memory is per replica", n=big["n"]),
                f"{big['n']} replicas: {big['shared_bytes'] / mib:.1f} MiB of disk, "
                f"{max(big['cgroup']) / mib:.2f} MiB of memory each at most",
                f"{big['n']} copies: {big['copies_bytes'] / mib:.1f} MiB", ok, shell=[cmd], rows=rows,
                lower_bytes=rows[0]["lower_bytes"])


# -- 4. microservices -------------------------------------------------------

APP = os.path.join(home.source_tree(),
                   "examples", "microservices", "compose.yaml")
APP_PORT = 18090
CURL_FRONT = f"curl -s --max-time 20 http://127.0.0.1:{APP_PORT}/cgi-bin/front"


def _front_until(front, step, good, fronts=1, bound=60.0):
    """Ask the front until ``good`` holds of 3 answers in a row, from at
    least ``fronts`` of its replicas, or ``bound`` seconds pass: the answers
    (the last 3, or all when it never held) and the seconds it took — the
    figure. A classroom VM under emulation is slow to start a CGI, not
    wrong: the fact waits for what it shows rather than allowing a time."""
    start, answers = time.time(), []

    def held():
        answers.append(front())
        last = answers[-3:]
        return len(last) == 3 and all(a and good(a) for a in last) and \
            len({a.split(":")[0] for a in last}) >= fronts
    ok = _until(held, bound, pause=0.05)
    return {"step": step, "answers": answers[-3:] if ok else answers, "seconds": round(time.time() - start, 2)}


def microservices(app=APP):
    """The compose app of examples/microservices: a front of 3 replicas calls
    the API by its name; the API scaled to 0 leaves the front running (it says
    so), scaled back it answers again — the front's replicas untouched."""
    steps = []
    try:
        labkit("compose", "-f", app, "up", timeout=600)
        front = lambda: api.host(CURL_FRONT).stdout.strip() or None   # noqa: E731
        tasks_before = sorted(t["task"] for t in slots("shop_front").values())
        steps.append(_front_until(front, "up", lambda a: "api shop_api.1." in a, fronts=3))
        labkit("service", "scale", "shop_api=0")
        steps.append(_front_until(front, "api scaled to 0", lambda a: a.endswith("api unavailable")))
        labkit("service", "scale", "shop_api=1")
        steps.append(_front_until(front, "api back", lambda a: "api shop_api.1." in a))
        tasks_after = sorted(t["task"] for t in slots("shop_front").values())
        ps = labkit("compose", "-f", app, "ps").stdout
    finally:
        api.call(["compose", "-f", app, "down"], timeout=300)
        api.call(["rmi", "shop-front:latest", "shop-api:latest"])
        api.call(["builder", "prune"])
    up, down, back = (s["answers"] for s in steps)
    ok = all(a and "api shop_api.1." in a for a in up + back) and len({a.split(":")[0] for a in up}) == 3 and \
        all(a and a.endswith("api unavailable") for a in down) and tasks_before == tasks_after
    rel = os.path.relpath(app, os.getcwd()) if app == APP else app
    return fact("svc_microservices", LAYER, _("front and API: two services; the API scaled away, the front stays"),
                [f"{s['step']}: {s['answers'][0]}" for s in steps], "front tasks unchanged" if
                tasks_before == tasks_after else "front tasks replaced", ok,
                shell=[f"sudo labkit compose -f {rel} up", CURL_FRONT,
                       "sudo labkit service scale shop_api=0", "sudo labkit service scale shop_api=1",
                       f"sudo labkit compose -f {rel} ps", f"sudo labkit compose -f {rel} down"],
                steps=steps, compose_ps=ps)


def left():
    """Nothing of the services above: no service, no supervisor, no replica, no virtual IP."""
    from labkit.course.leaks import network_leftovers
    found = [x for x in network_leftovers() if x.startswith(("service", "services'"))]
    found += [f"container {c}" for c in _replica_ids()]
    return fact("svc_left", LAYER, _("nothing left: services, supervisor, replicas"), found, "", found == [])


def ipvs():
    """Whether this machine's kernel has IPVS, the balancer Docker Swarm's
    routing mesh uses: loaded (/proc/net/ip_vs), built in, or a module it
    could load. A figure of the machine the notebook runs on, not a lesson:
    a Debian VM's kernel has it as a module; a container-host kernel may not."""
    release = os.uname().release
    loaded = os.path.exists("/proc/net/ip_vs")
    try:
        with open(f"/lib/modules/{release}/modules.builtin") as f:
            builtin = any(line.rstrip().endswith("/ip_vs.ko") for line in f)
    except OSError:
        builtin = False
    import glob
    module = bool(glob.glob(f"/lib/modules/{release}/kernel/net/netfilter/ipvs/ip_vs.ko*"))
    have = loaded or builtin or module
    where = (_("loaded") if loaded else _("built in") if builtin else _("a module it can load") if module
             else _("no: neither loaded, built in, nor a module"))
    return fact("svc_ipvs", LAYER, _("IPVS, Docker Swarm's balancer, on this kernel ({release})", release=release),
                where, f"/proc/net/ip_vs: {loaded}; modules.builtin: {builtin}; module: {module}",
                loaded <= have, available=have, release=release)


def all_facts():
    return [replicas(), round_robin(), kill_replace(), scale(), rolling_update(), limits(), cost(), ipvs(), left()]
