"""Exercises a student does and labkit checks against the real system.

Each exercise has an id ("09.least-caps": notebook, then a name), a goal, a
check that looks at what is really there (a container's /proc/PID/status,
its cgroup, what it can open), three graded hints (1: where to read, 2: the
flag or call, 3: the command), a reference solution and a reset. The
solution and the reset are shell commands, the ones a student would type:
`labkit lab solve` runs exactly those.

Beside its exercises, each module keeps, as data an instructor can read,
ALTERNATIVES (other correct solutions: other tools, orders, spellings; the
check accepts each) and NEAR_MISSES (wrong ones, each with the words its ✗
says); `labkit lab variants ID` prints them, and the tests run every one.

In a notebook:                      In a terminal (the VM's shell):
    from labkit import lab              labkit lab list
    lab.check("09.least-caps")          labkit lab check 09.least-caps   (exit 0 when done)
    lab.hint("09.least-caps", 2)        labkit lab hint 09.least-caps 2
                                        labkit lab solve 09.least-caps
                                        labkit lab reset 09.least-caps
"""

import importlib
import os
import re
import subprocess
import sys
import time

from labkit.containers import RUNNING
from labkit.course.chapters import NAMES
from labkit.errors import LabkitError, NotFound, one_line
from labkit.i18n import _

# The modules that hold each notebook's exercises, in course order.
MODULES = tuple(NAMES)   # the course map: labkit/course/chapters.py


class Exercise:
    def __init__(self, id, title, goal, hints, check, solution, reset, log=None):
        self.id, self.title, self.goal = id, title, goal
        self.hints = list(hints)             # three, from a pointer to the answer
        self._check = check                  # () -> (done, what was seen)
        self.solution = list(solution)       # shell commands
        self.reset_commands = list(reset)
        # Where the exercise's start line sends what it prints (the task
        # says so): a typo or a bad config.json then has a reason, which a
        # ✗ shows. The reset removes it, and its directory when empty.
        self.log = log
        if log:
            self.reset_commands.append(f"rm -f {log}; rmdir {os.path.dirname(log)} 2>/dev/null || true")
        # Set from the module's ALTERNATIVES and NEAR_MISSES (see exercises()).
        self.alternatives = {}               # name -> other correct commands
        self.near_misses = {}                # name -> (commands, words the ✗ says)

    @property
    def notebook(self):
        return self.id.split(".", 1)[0]

    def check(self):
        """(done, what was seen). A check that cannot finish (a command that
        hangs, the student's code crashing it, a tool missing) is a ✗ with
        one line saying what stopped it, never a traceback."""
        try:
            return self._check()
        except subprocess.TimeoutExpired as e:
            return False, _("the check gave up on `{command}` after {seconds:g} s: is something of yours "
                            "still waiting?", command=" ".join(map(str, e.cmd)) if isinstance(e.cmd, list)
                            else e.cmd, seconds=e.timeout)
        except FileNotFoundError as e:
            return False, _("the check needs {path}, which is not there", path=e.filename)
        except (OSError, ValueError, LookupError, LabkitError) as e:
            return False, _("the check could not finish: {error}", error=one_line(f"{type(e).__name__}: {e}"))


def exercises():
    found = []
    for name in MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        for ex in module.EXERCISES:
            ex.module = name
            ex.alternatives = getattr(module, "ALTERNATIVES", {}).get(ex.id, {})
            ex.near_misses = getattr(module, "NEAR_MISSES", {}).get(ex.id, {})
            found.append(ex)
    return found


def get(exercise_id):
    for ex in exercises():
        if ex.id == exercise_id:
            return ex
    raise NotFound(f"no exercise '{exercise_id}'", "`labkit lab list` shows every exercise")


def env():
    """The environment for labkit commands: this interpreter's labkit first on
    PATH, and ROOTFS, the base root filesystem the notebooks' shell commands
    name (a student's terminal sets it once: export ROOTFS=…)."""
    extra = {"PATH": os.path.dirname(sys.executable) + ":" + os.environ.get("PATH", "")}
    if "ROOTFS" not in os.environ:
        from labkit import home
        extra["ROOTFS"] = home.rootfs_dir("base")
    return dict(os.environ, **extra)


def sh(cmd, timeout=60):
    """A shell command of a check, with env(); its CompletedProcess."""
    return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=timeout, env=env())


def pattern(*argv):
    """An extended regular expression for the command line ``argv`` however a
    student spells the program: `sleep 1011`, `/bin/sleep 1011`, `busybox
    sleep 1011`. pgrep -f and pkill -f read it as find() does (the command
    line's words joined by spaces), so a check and its reset agree."""
    words = [re.sub(r"([.^$*+?(){}\[\]|\\])", r"\\\1", w) for w in argv]
    return "^([^ ]*/)?(busybox )?" + " ".join(words) + "$"


def _command_lines():
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline") as f:
                    yield int(d), f.read().rstrip("\0").replace("\0", " ")
            except OSError:
                continue


def _look(argv):
    """(the pids running ``argv``, whether another process is on its way to
    it: one whose command line holds it further on, as setsid -f chroot …
    sleep 1011 or unshare … sh -c '…; exec sleep 1022' before their exec)."""
    want, command = re.compile(pattern(*argv)), " ".join(argv)
    pids, coming = [], False
    for pid, words in _command_lines():
        if want.fullmatch(words):
            pids.append(pid)
        elif command in words:
            coming = True
    return sorted(pids), coming


def find(*argv):
    """The pids of the processes running ``argv`` (see pattern): what a
    student started, found by what it is and not by how it was typed."""
    return _look(argv)[0]


def started(*argv, wait=2.0):
    """The one process running ``argv``, or (None, why not). A process
    started in the background a moment ago may still be exec'ing its command
    (setsid -f returns at the fork; chroot or unshare exec it next): while
    one is on its way, a check run right after its start line waits for it,
    up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    pids, coming = _look(argv)
    while not pids and coming and time.monotonic() < deadline:
        time.sleep(0.05)
        pids, coming = _look(argv)
    if not pids:
        return None, _("no process runs `{command}` (ps -ef | grep '{command}')", command=" ".join(argv))
    if len(pids) > 1:
        return None, _("{n} processes run `{command}` (pids {pids}): leave one", n=len(pids),
                       command=" ".join(argv), pids=pids)
    return pids[0], None


def kill_line(*argv):
    """A reset's command: kill every process running ``argv`` (any spelling
    the check accepts), and wait until they are gone (a cgroup or a mount
    they hold can then go)."""
    match = pattern(*argv)
    return (f"pkill -KILL -f '{match}' || true; "
            f"for i in $(seq 50); do pgrep -f '{match}' >/dev/null || break; sleep 0.1; done")


def wait_line(*argv):
    """A solution's last command: wait (5 s at most) until a process started
    in the background runs ``argv``: it has exec'd its command."""
    return f"for i in $(seq 50); do pgrep -f '{pattern(*argv)}' >/dev/null && break; sleep 0.1; done"


def background(cmd, *argv, log=None):
    """A solution's commands: start ``cmd`` detached from the shell (so that a
    notebook cell or a terminal gets its prompt back), what it prints in
    ``log`` (else nowhere), then wait for ``argv``."""
    if log:
        return [f"mkdir -p {os.path.dirname(log)} && setsid -f {cmd} >{log} 2>&1", wait_line(*argv)]
    return [f"setsid -f {cmd} >/dev/null 2>&1", wait_line(*argv)]


def log_tail(path, lines=3):
    """The last ``lines`` lines of a start line's log, or None when it is
    missing or empty. nohup's note that it gave the command /dev/null for a
    terminal's input (a cell's `!` line has one) is nohup's, not the
    command's: left out."""
    try:
        with open(path, errors="replace") as f:
            said = [line for line in f.read()[-4096:].strip().splitlines() if line != "nohup: ignoring input"]
    except OSError:
        return None
    return said[-lines:] or None


def own_namespace(pid, kind):
    """True when process ``pid`` has a ``kind`` namespace other than the
    checker's: the inode of /proc/PID/ns/KIND differs (namespaces(7))."""
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino != os.stat(f"/proc/self/ns/{kind}").st_ino


def nsenter(pid, flags, cmd):
    """``cmd`` run in some of process ``pid``'s namespaces (nsenter -t PID -u/-n/…)."""
    return sh(f"nsenter -t {pid} {flags} {cmd}")


def running(name):
    """The pid of container ``name``'s init, or (None, why not): what a check
    says first when the student's container is not there."""
    from labkit import containers
    try:
        state = containers.load(name)
    except NotFound:
        return None, _("there is no container named {name}", name=name)
    if state.get("status") != RUNNING or not state.get("pid"):
        return None, _("container {name} is {status}, not running", name=name, status=state.get("status"))
    return state["pid"], None


def rm_line(name):
    """A reset's command: remove container ``name`` if there is one."""
    return f"labkit ps -a -q | grep -qx {name} && labkit rm -f {name} >/dev/null || true"


def _shell(commands):
    """Run a solution's or a reset's commands as a student would type them
    (without the sudo: this runs as root already)."""
    for cmd in commands:
        r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, env=env(), timeout=120)
        if r.returncode != 0:
            raise LabkitError(f"`{cmd}` exited {r.returncode}: {r.stderr.strip()}",
                              "run it by hand to see what it says")


# A reset's command: unmount a /proc of another PID namespace stacked on the
# host's (see proc_is_the_hosts), until /proc/self is this process again.
PROC_RECOVER = "while ! readlink /proc/self >/dev/null 2>&1; do umount /proc || break; done"


def proc_is_the_hosts():
    """True when /proc shows this process's PID namespace. A /proc mounted in
    a new mount namespace whose / was still shared (the default on systemd
    hosts) propagates to the host's /proc: then /proc/self, seen from the
    host, is nobody, and every tool that reads /proc lies or fails."""
    try:
        return os.readlink("/proc/self") == str(os.getpid())
    except OSError:
        return False


def check(exercise_id, out=print):
    """✔ or ✗ with what was seen and the first hint; True when done."""
    ex = get(exercise_id)
    if not proc_is_the_hosts():
        out(wrap("✗ " + _("{id}: the host's /proc is not the host's any more: a /proc of another PID namespace "
                     "is mounted over it (a mount made where / was shared propagates to the host). Recover: "
                     "`sudo umount /proc` until `ls -l /proc/self` works (labkit lab reset 02.pid-alone does "
                     "it); make / private first next time: mount --make-rprivate /", id=ex.id)))
        return False
    done, seen = ex.check()
    if done:
        out(wrap(f"✔ {ex.id}: {seen}"))
        return done
    lines = [f"✗ {ex.id}: {seen}"]
    said = log_tail(ex.log) if ex.log else None
    if said:
        lines.append("  " + _("your start line printed (the end of {log}):", log=ex.log))
        lines += ["    " + line for line in said]
    lines += ["  " + _("hint 1: {hint}", hint=_(ex.hints[0])), "  " + _("(more: lab.hint({id}, 2))", id=repr(ex.id))]
    out(wrap("\n".join(lines)))
    return done


WIDTH = 100     # a notebook's output area breaks longer lines anywhere, mid-word too


def wrap(text):
    """Each line of ``text`` wrapped at WIDTH on spaces, its continuation
    indented under its first word: what a check or a hint says reads as
    rows in JupyterLab and in an 80-column terminal alike."""
    import textwrap
    out = []
    for line in text.split("\n"):
        indent = " " * (len(line) - len(line.lstrip()) + 2)
        out.append(textwrap.fill(line, WIDTH, subsequent_indent=indent, break_long_words=False,
                                 break_on_hyphens=False) if len(line) > WIDTH else line)
    return "\n".join(out)


def hint(exercise_id, n=1, out=print):
    ex = get(exercise_id)
    if not 1 <= n <= len(ex.hints):
        raise LabkitError(f"{ex.id} has hints 1 to {len(ex.hints)}", _("ask for one of those"))
    out(wrap(_("hint {n}: {hint}", n=n, hint=_(ex.hints[n - 1]))))
    # Nothing returned: a notebook cell would show the hint a second time.


def solve(exercise_id):
    """Reset, then run the reference solution."""
    ex = get(exercise_id)
    reset(exercise_id)
    _shell(ex.solution)


def reset(exercise_id):
    _shell(get(exercise_id).reset_commands)


_predictions = {}


def predict(question, guess, out=print):
    """Write down a guess before the next cell shows what happens; ``reveal``
    puts the two side by side. A guess written first is what makes the run
    worth watching."""
    _predictions[question] = str(guess).strip()
    if _predictions[question]:
        out(_("noted for {question}: {guess} — now run the next cell", question=question,
              guess=repr(_predictions[question])))
    else:
        out(_("{question}: write your guess in the quotes first, then run the next cell", question=question))
    return _predictions[question]


def reveal(question, seen, out=print):
    """What happened, beside the guess made with ``predict``."""
    guess = _predictions.get(question) or _("(no guess written)")
    out(_("{question}\n  you predicted: {guess}\n  the system says: {seen}", question=question, guess=guess,
          seen=seen))
    return seen


def variants(exercise_id):
    """The reference, the other correct solutions and the near misses of an
    exercise, each with its commands (and, for a near miss, the words its ✗
    says): what the tests run, for an instructor to read."""
    ex = get(exercise_id)
    out = [f"{ex.id}: {_(ex.title)}", "", _("reference (✔):")] + [f"    {c}" for c in ex.solution]
    for name, commands in ex.alternatives.items():
        out += ["", _("another correct solution, {name} (✔):", name=name)] + [f"    {c}" for c in commands]
    for name, (commands, words) in ex.near_misses.items():
        out += ["", _("near miss, {name} (✗ … {words} …):", name=name, words=words)] + [f"    {c}" for c in commands]
    return "\n".join(out)


def show_solution(exercise_id):
    return "\n".join("sudo " + c for c in get(exercise_id).solution)
