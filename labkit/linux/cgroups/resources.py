"""What a container may use, in OCI runtime-spec units, and every unit
conversion between the way a user writes a limit, cgroup v1 and cgroup v2.

The rest of the package reads a Resources and writes files; nothing else
converts units. Numbers follow the runtime spec's `linux.resources`:
memory and swap in bytes (swap = memory + swap, as v1's memsw), cpu quota and
period in microseconds, cpu shares as v1's cpu.shares, cpu weight as v2's
cpu.weight.
"""

from labkit.errors import LabkitError

# v1's cpu.shares range and v2's cpu.weight range (the kernel's limits).
MIN_SHARES, MAX_SHARES = 2, 262144
MIN_WEIGHT, MAX_WEIGHT = 1, 10000
DEFAULT_PERIOD = 100000          # us: the kernel's default cfs period
UNLIMITED = -1

_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


class Resources:
    """The limits, one attribute each; None = not asked for.

    A plain class rather than a dataclass: this module is on the container
    start path whenever a limit is set (labkit/startpath.py)."""

    # name: unit (for reading only; every default is None)
    FIELDS = {
        "memory": "bytes (memory.limit_in_bytes / memory.max)",
        "memory_swap": "bytes, memory + swap; -1 = unlimited swap",
        "memory_reservation": "bytes: reclaimed down to it first under pressure (soft limit / memory.low)",
        "memory_swappiness": "0-100: how readily its pages are swapped (v1 only)",
        "oom_kill_disable": "True: the OOM killer leaves it alone, it waits for memory (v1 only)",
        "cpu_shares": "relative, v1 style (1024 = one share unit)",
        "cpu_weight": "relative, v2 style (100 = default)",
        "cpu_quota": "us of cpu time per period; -1 = no limit",
        "cpu_period": "us",
        "pids_limit": "max processes; -1 = no limit",
        "cpuset_cpus": '"0", "0-1", "0,2"',
        "cpuset_mems": "NUMA nodes, same syntax",
        "devices": "device rules in order (labkit/linux/cgroups/devices.py); None = the parent's",
    }
    __slots__ = tuple(FIELDS)

    def __init__(self, memory=None, memory_swap=None, cpu_shares=None, cpu_weight=None,
                 cpu_quota=None, cpu_period=None, pids_limit=None, cpuset_cpus=None,
                 cpuset_mems=None, devices=None, memory_reservation=None, memory_swappiness=None,
                 oom_kill_disable=None):
        self.memory = memory
        self.memory_swap = memory_swap
        self.memory_reservation = memory_reservation
        self.memory_swappiness = memory_swappiness
        self.oom_kill_disable = oom_kill_disable
        self.cpu_shares = cpu_shares
        self.cpu_weight = cpu_weight
        self.cpu_quota = cpu_quota
        self.cpu_period = cpu_period
        self.pids_limit = pids_limit
        self.cpuset_cpus = cpuset_cpus
        self.cpuset_mems = cpuset_mems
        self.devices = devices

    def _values(self):
        return tuple(getattr(self, name) for name in self.FIELDS)

    def __eq__(self, other):
        return type(other) is type(self) and other._values() == self._values()

    def __repr__(self):
        return "Resources(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.FIELDS) + ")"

    def controllers(self):
        """The controllers whose files these limits are written to."""
        wanted = []
        if any(v is not None for v in (self.memory, self.memory_swap, self.memory_reservation,
                                       self.memory_swappiness, self.oom_kill_disable)):
            wanted.append("memory")
        if any(v is not None for v in (self.cpu_shares, self.cpu_weight,
                                       self.cpu_quota, self.cpu_period)):
            wanted.append("cpu")
        if self.pids_limit is not None:
            wanted.append("pids")
        if self.cpuset_cpus is not None or self.cpuset_mems is not None:
            wanted.append("cpuset")
        if self.devices is not None:
            wanted.append("devices")
        return wanted

    # -- from what a user writes -----------------------------------------

    @classmethod
    def from_dict(cls, d):
        """Build from ContainerConfig.resources: the field names above, plus
        docker's spellings `cpus` (0.5) and `pids` (an alias of pids_limit).
        Sizes may be strings such as "64m"."""
        if isinstance(d, Resources):
            return d
        known = set(cls.FIELDS)
        r = cls()
        for key, value in (d or {}).items():
            if value is None:
                continue
            if key == "cpus":
                r.cpu_quota, r.cpu_period = parse_cpus(value)
            elif key == "pids":
                r.pids_limit = _int("pids", value)
            elif key == "oom_kill_disable":
                r.oom_kill_disable = bool(value)
            elif key in ("memory", "memory_swap", "memory_reservation"):
                r_value = parse_memory(value, flag=key.replace("_", "-"))
                setattr(r, key, r_value)
            elif key in ("cpuset_cpus", "cpuset_mems"):
                setattr(r, key, _cpulist(key, value))
            elif key == "devices":
                from labkit.linux.cgroups.devices import parse
                r.devices = parse(value)
            elif key in known:
                setattr(r, key, _int(key, value))
            else:
                raise LabkitError(
                    f"unknown resource '{key}'",
                    "use one of: cpus, pids, " + ", ".join(sorted(known)))
        validate(r)
        return r


def parse_memory(text, flag="memory"):
    """docker's size syntax: 64m -> 67108864; a bare number is bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        s = str(text).strip().lower()
        number, unit = s, "b"
        if s and s[-1].isalpha():
            number, unit = s[:-1], s[-1]
            if s.endswith("b") and len(s) > 1 and s[-2] in "kmg":  # "64mb"
                number, unit = s[:-2], s[-2]
        if unit not in _UNITS:
            raise LabkitError(f"--{flag} {text}: unknown unit '{str(text).strip()[-1]}'",
                              "use b, k, m or g, as in 64m")
        try:
            value = int(float(number) * _UNITS[unit])
        except ValueError:
            raise LabkitError(f"--{flag} {text}: not a size",
                              "write a number and a unit, as in 64m") from None
    if value < 0 and value != UNLIMITED:
        raise LabkitError(f"--{flag} {text}: a size cannot be negative",
                          "write a positive size such as 64m, or -1 for no limit")
    return value


def parse_cpus(value, period=DEFAULT_PERIOD):
    """docker's --cpus: 0.5 -> (50000, 100000), half of one cpu per period."""
    try:
        cpus = float(value)
    except (TypeError, ValueError):
        raise LabkitError(f"--cpus {value}: not a number",
                          "write how many cpus, as in 0.5 or 2") from None
    if cpus <= 0:
        raise LabkitError(f"--cpus {value}: must be more than 0",
                          "write how many cpus, as in 0.5 or 2")
    return int(round(cpus * period)), period


def _int(name, value):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise LabkitError(f"resource {name}={value!r}: not an integer") from None


def _cpulist(name, value):
    s = str(value).replace(" ", "")
    if not s or any(ch not in "0123456789,-" for ch in s):
        raise LabkitError(f"resource {name}={value!r}: not a cpu list",
                          "write it as cpuset(7) does, as in 0 or 0-1 or 0,2")
    return s


# -- validation: small checks on values only the user can get wrong ------
# Values the kernel judges (a period too short, a limit it will not take)
# are left to the kernel, so that its answer names the file and the value.

def validate(r):
    for check in (_check_shares, _check_weight, _check_pids, _check_quota, _check_swappiness):
        check(r)


def _check_swappiness(r):
    # runc's range; a swappiness past 100 is refused by the kernel only on some versions.
    if r.memory_swappiness is not None and not 0 <= r.memory_swappiness <= 100:
        raise LabkitError(f"memory swappiness {r.memory_swappiness} is out of range", "use 0..100")


def _check_shares(r):
    if r.cpu_shares is not None and not MIN_SHARES <= r.cpu_shares <= MAX_SHARES:
        raise LabkitError(f"cpu_shares {r.cpu_shares} is out of range",
                          f"use {MIN_SHARES}..{MAX_SHARES}; 1024 is the default")


def _check_weight(r):
    if r.cpu_weight is not None and not MIN_WEIGHT <= r.cpu_weight <= MAX_WEIGHT:
        raise LabkitError(f"cpu_weight {r.cpu_weight} is out of range",
                          f"use {MIN_WEIGHT}..{MAX_WEIGHT}; 100 is the default")


def _check_pids(r):
    if r.pids_limit is not None and r.pids_limit < 1 and r.pids_limit != UNLIMITED:
        raise LabkitError(f"pids limit {r.pids_limit} is too small",
                          "a container needs at least 1 process; -1 means no limit")


def _check_quota(r):
    if r.cpu_quota is not None and r.cpu_quota < 1 and r.cpu_quota != UNLIMITED:
        raise LabkitError(f"cpu_quota {r.cpu_quota} must be positive",
                          "or -1 for no limit")


# -- v1 <-> v2 ------------------------------------------------------------

def shares_to_weight(shares):
    """cpu.shares [2, 262144] -> cpu.weight [1, 10000], linearly, as the OCI
    runtimes do, so 2 maps to 1 and 262144 to 10000 (1024 -> 39)."""
    return 1 + ((shares - MIN_SHARES) * (MAX_WEIGHT - 1)) // (MAX_SHARES - MIN_SHARES)


def weight_to_shares(weight):
    """The inverse of shares_to_weight (up to rounding)."""
    return MIN_SHARES + ((weight - 1) * (MAX_SHARES - MIN_SHARES)) // (MAX_WEIGHT - 1)


def v1_shares(r):
    if r.cpu_shares is not None:
        return r.cpu_shares
    if r.cpu_weight is not None:
        return weight_to_shares(r.cpu_weight)
    return None


def v2_weight(r):
    if r.cpu_weight is not None:
        return r.cpu_weight
    if r.cpu_shares is not None:
        return shares_to_weight(r.cpu_shares)
    return None


def v2_cpu_max(r):
    """cpu.max: "$QUOTA $PERIOD", "max" for no quota."""
    if r.cpu_quota is None and r.cpu_period is None:
        return None
    quota = "max" if r.cpu_quota in (None, UNLIMITED) else str(r.cpu_quota)
    return f"{quota} {r.cpu_period or DEFAULT_PERIOD}"


def v2_swap_max(r):
    """memory.swap.max counts swap alone; OCI's swap is memory + swap."""
    if r.memory_swap is None:
        return None
    if r.memory_swap == UNLIMITED:
        return "max"
    if r.memory is None:
        raise LabkitError("memory_swap needs a memory limit too",
                          "give memory as well, as docker's --memory-swap does")
    # May be negative: the kernel then refuses it and we report its answer.
    return str(r.memory_swap - r.memory)


def v2_limit(value):
    return "max" if value == UNLIMITED else str(value)


def v1_limit(value):
    return str(value)
