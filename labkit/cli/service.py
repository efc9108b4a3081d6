"""`labkit service` (docker swarm's service commands) and `labkit compose`
(compose's up, down and ps): labkit/services/."""

from labkit.errors import need_root


def add_parsers(sub):
    """docker swarm's service commands, and compose's up, down and ps."""
    _service_parsers(sub)
    _compose_parsers(sub)


def _service_parsers(sub):
    import argparse
    svc = sub.add_parser("service", help="services: N replicas of one image behind one address "
                         "(create, ls, ps, scale, update, logs, inspect, rm)")
    ssub = svc.add_subparsers(dest="service_command", metavar="ACTION")
    ssub.required = True
    c = ssub.add_parser("create", help="a service of --replicas identical containers, kept running")
    c.add_argument("--name", required=True, help="the service; its replicas are the containers NAME.1, NAME.2...")
    c.add_argument("--replicas", default=1, help="how many (default 1, at most 50)")
    c.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:]HOSTPORT:PORT[/PROTO]",
                   help="one host port for all the replicas, in turn (127.0.0.1 unless IP is given)")
    c.add_argument("--network", help="the network of the replicas (default: labkit)")
    c.add_argument("--alias", action="append", default=[], metavar="NAME",
                   help="one more name the service's address answers to on its network")
    c.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
    c.add_argument("-m", "--memory", help="memory limit of each replica, e.g. 32m")
    c.add_argument("--cpus", help="CPU quota of each replica, in cores")
    c.add_argument("--pids-limit", dest="pids", help="maximum number of processes of each replica")
    c.add_argument("--health-cmd", metavar="CMD", help="a shell command run inside each replica: exit 0 is healthy")
    c.add_argument("--health-interval", default="1s", metavar="DURATION", help="between checks (default 1s; docker's is 30s)")
    c.add_argument("--health-timeout", default="2s", metavar="DURATION", help="a check that takes longer fails")
    c.add_argument("--health-retries", type=int, default=3, metavar="N", help="failures in a row that make it unhealthy")
    c.add_argument("--health-start-period", default="0s", metavar="DURATION",
                   help="failures in this time after the start do not count")
    c.add_argument("-d", "--detach", action="store_true", help="do not wait for the replicas to be ready")
    c.add_argument("image", metavar="IMAGE")
    c.add_argument("cmd", nargs=argparse.REMAINDER, help="the command (default: the image's)")
    ssub.add_parser("ls", help="list services")
    x = ssub.add_parser("ps", help="the replicas of a service, and the ones they replaced")
    x.add_argument("name", metavar="SERVICE")
    x = ssub.add_parser("inspect", help="a service's spec, replicas and last events, as JSON")
    x.add_argument("names", nargs="+", metavar="SERVICE")
    x = ssub.add_parser("logs", help="what the replicas wrote, each line with its replica")
    x.add_argument("name", metavar="SERVICE")
    x = ssub.add_parser("scale", help="SERVICE=N: more or fewer replicas")
    x.add_argument("pairs", nargs="+", metavar="SERVICE=N")
    x.add_argument("-d", "--detach", action="store_true")
    x = ssub.add_parser("update", help="a rolling update: one replica at a time, each ready before the next")
    x.add_argument("name", metavar="SERVICE")
    x.add_argument("--image", metavar="IMAGE")
    x.add_argument("--replicas")
    x.add_argument("-d", "--detach", action="store_true")
    x = ssub.add_parser("rm", help="remove services: every replica, the address, the port")
    x.add_argument("-t", "--time", type=float, metavar="SECONDS",
                   help="each replica's time between SIGTERM and SIGKILL (default 2)")
    x.add_argument("names", nargs="+", metavar="SERVICE")
    ssub.add_parser("supervise", help=argparse.SUPPRESS)
    for x in ssub.choices.values():
        x.set_defaults(func=cmd_service)


def _compose_parsers(sub):
    cp = sub.add_parser("compose", help="an application of services from one compose file: up, down, ps")
    cp.add_argument("-f", "--file", default="compose.yaml", metavar="FILE", help="default: ./compose.yaml")
    cp.add_argument("-p", "--project-name", dest="project", metavar="NAME",
                    help="prefix of its services and networks (default: the file's directory)")
    csub = cp.add_subparsers(dest="compose_command", metavar="ACTION")
    csub.required = True
    csub.add_parser("up", help="build, create networks and services, wait until they are ready")
    x = csub.add_parser("down", help="remove its services and networks")
    x.add_argument("-t", "--timeout", type=float, metavar="SECONDS",
                   help="each replica's time to stop after SIGTERM, then SIGKILL (default 2)")
    csub.add_parser("ps", help="its services' replicas")
    for x in csub.choices.values():
        x.set_defaults(func=cmd_compose)


def cmd_service(a):
    if a.service_command not in ("ls", "ps", "inspect", "logs"):
        need_root(f"labkit service {a.service_command}")
    from labkit.services import command
    return command.main(a)


def cmd_compose(a):
    if a.compose_command != "ps":
        need_root(f"labkit compose {a.compose_command}")
    from labkit.services import compose
    return compose.main(a)
