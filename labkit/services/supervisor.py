"""The reconcile loop: what is wanted (service.json) against what runs.

One process, `labkit service supervise`, started by the first `service
create` (or `labkit gc`, or any `labkit service` command, when services exist
and it does not run) and ending with the last `service rm`. Every TICK it
takes the services' lock and, for each service:

  1. collects the replicas it started (`labkit run -d` finished: running, or
     failed to start, with labkit's one-line error);
  2. observes them: a replica whose container exited, was killed (`kill -9`
     from the host) or removed is retired and its slot restarted, at once the
     first time, then after 1, 2, 4 ... 16 s while it keeps failing within
     10 s of its start (a crash loop, Kubernetes' CrashLoopBackOff);
  3. runs health checks (`labkit exec NAME.N sh -c CMD`, each a process it
     polls) and marks replicas healthy or, after --health-retries failures in
     a row, unhealthy: those are replaced like dead ones;
  4. takes one step of a rolling update: one replica at a time leaves the
     rotation, drains for DRAIN seconds, is replaced, and the next one waits
     until the new one is ready;
  5. starts the slots that are missing, retires those above --replicas;
  6. puts the ready replicas in rotation behind the service's virtual IP
     (labkit/networks/vips.py): one nft transaction when the set changes.

Why one loop in one process, and not one monitor per service or a daemon
always on? One process sees every service at once (a port or an address
can only be taken once), it needs no daemon between lessons, and since the
spec and the observations are files, killing it loses nothing: the next
`labkit service ...` or `labkit gc` starts it again and it carries on from
the files. The replicas do not depend on it: each is a container with its
own monitor, which also takes it out of the rotation the moment it dies
(its endpoint goes, and with it its place in the map) — the loop only
replaces it.
"""

import json
import os
import signal
import sys
import time

from labkit.containers import CREATING, RUNNING, STOPPING
from labkit.services import store, tasks

TICK = 0.2          # seconds between passes
DRAIN = 1.0         # seconds a replica stays up, out of the rotation, before it is stopped
# Seconds between SIGTERM and SIGKILL for a replica that goes (Docker gives
# 10): short, as a PID 1 without a handler ignores SIGTERM; `compose down -t`.
GRACE = 2.0
STEADY = 10.0       # a replica that ran this long was not crash-looping
BACKOFF_MAX = 16.0
START_TIMEOUT = 60.0
UPDATE_TIMEOUT = 60.0   # a new replica not ready by then pauses the update (Swarm's failure action)
# Seconds a replica whose program exited may stay "stopping" (its monitor, or
# the reaper's finisher, tears it down and then writes the exit code) before
# it is retired without one.
FINISH_TIMEOUT = 5.0


def backoff(failures):
    """Seconds before restarting a slot that failed ``failures`` times in a row."""
    return 0.0 if failures <= 1 else min(2.0 ** (failures - 2), BACKOFF_MAX)


def _netns():
    return os.readlink("/proc/self/ns/net")


def ensure():
    """Start the supervisor unless it runs. Call with store.Lock held: a
    supervisor that finds no service left exits under that lock, so a service
    written under it is never orphaned."""
    import subprocess
    from labkit.errors import LabkitError
    pid = store.supervisor_pid()
    if pid is not None:
        with open(store.supervisor_file()) as f:
            netns = json.load(f).get("netns")
        if netns != _netns():
            raise LabkitError(f"the services' supervisor (pid {pid}) runs in another network namespace ({netns})",
                              "run labkit service commands where the first service was made, "
                              "or remove every service first")
        return pid
    from labkit.api import labkit_argv
    log = os.open(os.path.join(store.root(), "supervisor.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        proc = subprocess.Popen(labkit_argv("service", "supervise"), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log, start_new_session=True, cwd="/")
    finally:
        os.close(log)
    return proc.pid


def log(message):
    print(time.strftime("%H:%M:%S ") + message, flush=True)


class Supervisor:
    def __init__(self):
        self.starting = {}   # container -> its `labkit run -d` process
        self.checks = {}     # container -> (health check process, started at)
        self.exiting = {}    # container -> when it was first seen "stopping"
        self.stopping = False

    def main(self):
        import fcntl
        from labkit.containers import start_time
        os.makedirs(store.root(), exist_ok=True)
        fd = os.open(os.path.join(store.root(), "supervisor.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0     # another one runs
        signal.signal(signal.SIGTERM, lambda *a: setattr(self, "stopping", True))
        signal.signal(signal.SIGINT, lambda *a: setattr(self, "stopping", True))
        store.write_json(store.supervisor_file(), {"pid": os.getpid(), "start": start_time(os.getpid()), "netns": _netns()})
        log(f"supervisor {os.getpid()} started")
        while not self.stopping:
            with store.Lock():
                names = store.names()
                if not names and not self.starting and not self.checks:
                    os.unlink(store.supervisor_file())
                    log("no service left: supervisor exits")
                    return 0
                for name in names:
                    try:
                        self.reconcile(name)
                    except Exception as e:   # one broken service must not stop the others
                        log(f"{name}: {type(e).__name__}: {e}")
            time.sleep(TICK)
        log("supervisor stopped (the replicas keep running; the next labkit service command starts it again)")
        try:
            os.unlink(store.supervisor_file())
        except FileNotFoundError:
            pass
        return 0

    # ---- one pass over one service ----------------------------------
    def reconcile(self, name):
        try:
            spec = store.load(name)
        except Exception:
            return
        obs = store.tasks(name)
        before = json.dumps(obs, sort_keys=True)
        slots = obs["slots"]
        now = time.time()
        if spec.get("removing"):
            return self._remove(spec, obs, now)
        changed = False
        for key in sorted(slots, key=int):
            changed |= self._observe(spec, obs, slots[key], now)
        changed |= self._update_step(spec, obs, now)
        for slot in range(1, spec["replicas"] + 1):
            task = slots.get(str(slot))
            if task is None or (task["state"] == store.WAITING and now >= task["next_start"]):
                slots[str(slot)] = self._start(spec, obs, slot, task, now)
                changed = True
        for key in [k for k in slots if int(k) > spec["replicas"]]:
            task = slots[key]
            if task["state"] in (store.RUNNING, store.STARTING):
                self._drain(obs, task, now, "scaled down")
                changed = True
            elif task["state"] == store.WAITING:
                del slots[key]
                changed = True
        changed |= self._rotate(spec, obs)
        if changed or json.dumps(obs, sort_keys=True) != before:   # a check's count, its time
            store.save_tasks(name, obs)

    def _remove(self, spec, obs, now):
        """`service rm`: every replica goes (a start under way is waited for
        first, so that no container is made after), then the virtual IP and
        the files."""
        from concurrent.futures import ThreadPoolExecutor
        from labkit.networks import endpoints
        from labkit.startpath import remove_tree
        for task in obs["slots"].values():
            if task["container"] in self.starting:
                proc = self.starting[task["container"]][0]
                if proc.poll() is None:
                    return
                proc.communicate()
                del self.starting[task["container"]]
            self.checks.pop(task["container"], None)
        # all at once: each stop may wait out its grace time (a PID 1 that ignores SIGTERM)
        grace = spec.get("stop_grace", GRACE)
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda task: tasks.retire(spec, task, timeout=grace), obs["slots"].values()))
        obs["slots"].clear()
        endpoints.remove_service(spec["network"], spec["name"])
        remove_tree(store.root(spec["name"]))
        log(f"{spec['name']}: removed (stop grace {grace:g} s)")

    def _event(self, obs, task, what, detail=""):
        obs["events"].append({"t": time.time(), "slot": task["slot"], "task": task["task"],
                              "container": task["container"], "event": what, "detail": detail})
        log(f"{task['container']} ({task['task']}): {what}{': ' + detail if detail else ''}")

    def _start(self, spec, obs, slot, old, now):
        task_id = os.urandom(3).hex()
        cid = store.container(spec["name"], slot)
        history = (old or {}).get("history", [])
        task = {"slot": slot, "task": task_id, "container": cid, "generation": spec["generation"],
                "image": spec["image"], "state": store.STARTING, "health": "starting" if spec.get("health") else None,
                "ready": False, "pid": None, "ip": None, "created": now, "started": None, "exit_code": None,
                "error": (old or {}).get("error") if (old or {}).get("failures") else None,
                "failures": (old or {}).get("failures", 0), "next_start": None, "streak": 0,
                "last_check": 0.0, "drain_until": None, "history": history}
        if tasks.state(cid) is not None:       # a leftover of a pass that was cut short
            tasks.retire(spec, task, timeout=0)
        self.starting[cid] = (tasks.start(spec, slot, task_id), now)
        self._event(obs, task, store.STARTING, spec["image"])
        return task

    def _retire(self, spec, obs, task, now, why, failed, grace=GRACE):
        """The container goes; the slot waits for its next start (or goes, above --replicas)."""
        self.checks.pop(task["container"], None)
        tasks.retire(spec, task, timeout=grace)   # short: a PID 1 without a handler ignores SIGTERM
        ran = now - (task["started"] or now)
        failures = (task["failures"] + 1 if ran < STEADY else 1) if failed else 0
        past = {k: task[k] for k in ("task", "image", "started", "exit_code", "error")}
        past.update(ended=now, why=why)
        task.update(state=store.WAITING, ready=False, pid=None, failures=failures, drain_until=None,
                    next_start=now + backoff(failures), history=([past] + task["history"])[:store.HISTORY])
        self._event(obs, task, "retired", why)

    def _observe(self, spec, obs, task, now):
        cid, state = task["container"], task["state"]
        if state == store.STARTING:
            proc, since = self.starting.get(cid, (None, now))
            if proc is None:          # started by a supervisor that is gone: look at the container
                return self._adopt(spec, obs, task, now)
            if proc.poll() is None:
                if now - since > START_TIMEOUT:
                    proc.kill()
                return False
            out, err = proc.communicate()
            del self.starting[cid]
            if proc.returncode == 0:
                st = tasks.state(cid) or {}
                task.update(state=store.RUNNING, started=now, pid=st.get("pid"), ip=tasks.address(spec["network"], cid))
                self._event(obs, task, store.RUNNING, f"pid {task['pid']}, {task['ip']}")
            else:
                task["error"] = (err.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
                self._event(obs, task, "failed to start", task["error"])
                self._retire(spec, obs, task, now, "failed to start", failed=True)
            return True
        if state in (store.RUNNING, store.DRAINING):
            st = tasks.state(cid)
            if st is not None and st["status"] == STOPPING and self._finishing(task, now):
                return True
            self.exiting.pop(cid, None)
            if st is None or st["status"] != RUNNING:
                task["exit_code"] = (st or {}).get("exit_code")
                why = "removed" if st is None else f"exited ({task['exit_code']})"
                if state == store.DRAINING:
                    self._retire(spec, obs, task, now, why, failed=False)
                else:
                    self._retire(spec, obs, task, now, why, failed=True)
                self._maybe_drop(spec, obs, task)
                return True
            if state == store.DRAINING:
                if now >= task["drain_until"]:
                    self._retire(spec, obs, task, now, task["why"], failed=False)
                    self._maybe_drop(spec, obs, task)
                    return True
                return False
            return self._health(spec, obs, task, now)
        return False

    def _finishing(self, task, now):
        """Whether to wait for a replica whose program has exited: its
        monitor is still tearing it down and has not written the exit code
        (a `kill -9` from the host is seen at once, its 137 a moment later).
        Meanwhile it leaves the rotation."""
        since = self.exiting.setdefault(task["container"], now)
        task["ready"] = False
        return now - since < FINISH_TIMEOUT

    def _maybe_drop(self, spec, obs, task):
        if task["slot"] > spec["replicas"]:
            obs["slots"].pop(str(task["slot"]), None)

    def _adopt(self, spec, obs, task, now):
        st = tasks.state(task["container"])
        if st is not None and st["status"] == RUNNING:
            task.update(state=store.RUNNING, started=task["started"] or now, pid=st.get("pid"),
                        ip=tasks.address(spec["network"], task["container"]))
        elif now - task["created"] > START_TIMEOUT or st is None or st["status"] != CREATING:
            self._retire(spec, obs, task, now, "lost while starting", failed=True)
        else:
            return False
        return True

    def _health(self, spec, obs, task, now):
        """Whether the running replica may take connections: its health
        check passed; or, without one, its first published port answers; or,
        with neither, it runs."""
        health, cid = spec.get("health"), task["container"]
        if not health:
            if task["ready"]:
                return False
            ports = spec["ports"]
            task["ready"] = not ports or (task["ip"] is not None and tasks.probe(task["ip"], ports[0]["port"]))
            if task["ready"]:
                task["error"] = None
                self._event(obs, task, "ready")
            return task["ready"]
        if cid in self.checks:
            proc, since = self.checks[cid]
            # timeout(1) inside enforces --health-timeout on the command; this
            # bound is for an image without it, or an exec that never enters.
            if proc.poll() is None and now - since < health["timeout"] + tasks.EXEC_GRACE:
                return False
            if proc.poll() is None:
                proc.kill()
            out = proc.communicate()[0]
            del self.checks[cid]
            passed = proc.returncode == 0
            return self._judge(spec, obs, task, now, passed, (out or "").strip()[-200:])
        if now - task["last_check"] >= health["interval"]:
            task["last_check"] = now
            self.checks[cid] = (tasks.check(cid, health["cmd"], health["timeout"]), now)
        return False

    def _judge(self, spec, obs, task, now, passed, output):
        health = spec["health"]
        if passed:
            task["streak"] = 0
            if task["health"] != "healthy":
                task.update(health="healthy", ready=True, error=None)
                self._event(obs, task, "healthy")
                return True
            return False
        task["last_output"] = output
        if now - task["started"] < health["start_period"]:
            return False
        task["streak"] += 1
        if task["streak"] < health["retries"]:
            return False
        task.update(health="unhealthy", ready=False)
        task["error"] = f"health check failed {task['streak']} times: {output or 'no output'}"
        self._event(obs, task, "unhealthy", output)
        self._retire(spec, obs, task, now, "unhealthy", failed=True)
        return True

    def _drain(self, obs, task, now, why):
        task.update(state=store.DRAINING, ready=False, drain_until=now + DRAIN, why=why)
        self._event(obs, task, store.DRAINING, why)

    def _update_step(self, spec, obs, now):
        """A rolling update, one replica at a time (Swarm's parallelism 1, stop-first)."""
        gen = spec["generation"]
        slots = [obs["slots"][k] for k in sorted(obs["slots"], key=int) if int(k) <= spec["replicas"]]
        old = [t for t in slots if t["generation"] < gen and t["state"] != store.WAITING]
        update = obs.get("update")
        if not old:
            if update and update["state"] == store.UPDATING:
                if len(slots) == spec["replicas"] and all(t["ready"] for t in slots):
                    update.update(state=store.COMPLETED, ended=now)
                    log(f"{spec['name']}: update to generation {gen} completed")
                    return True
            return False
        if update is None or update.get("generation") != gen:
            obs["update"] = update = {"state": store.UPDATING, "generation": gen, "started": now, "message": ""}
        if update["state"] == store.PAUSED:
            return False
        busy = [t for t in slots if t["generation"] == gen and not t["ready"]]
        if busy:
            late = [t for t in busy if now - t["created"] > UPDATE_TIMEOUT]
            if late:
                update.update(state=store.PAUSED, message=f"{late[0]['container']} did not become ready: "
                              f"{late[0].get('error') or late[0]['state']}")
                log(f"{spec['name']}: update paused: {update['message']}")
                return True
            return False
        if any(t["state"] in (store.DRAINING, store.STARTING, store.WAITING) for t in slots) or len(slots) < spec["replicas"]:
            return False
        self._drain(obs, old[0], now, f"update to generation {gen}")
        return True

    def _rotate(self, spec, obs):
        from labkit.networks import endpoints
        ready = [obs["slots"][k]["container"] for k in sorted(obs["slots"], key=int)
                 if obs["slots"][k]["state"] == store.RUNNING and obs["slots"][k]["ready"]]
        if ready != obs.get("backends"):
            endpoints.set_backends(spec["network"], spec["name"], ready)
            obs["backends"] = ready
            return True
        return False


def main():
    sys.exit(Supervisor().main())
