"""`labkit lab|tour|doctor|url`: the course's commands (labkit/course/)."""

from labkit.errors import need_root
from labkit.course.chapters import NAMES
from labkit.errors import LabkitError


def add_parsers(sub):
    d = sub.add_parser("doctor", help="check this machine: kernel features and the tools the labs use")
    d.set_defaults(func=cmd_doctor)

    t = sub.add_parser("tour", help="run every stage headless and print what each proves")
    t.add_argument("layers", nargs="*", metavar="LAYER",
                   help=f"only these stages ({' '.join(NAMES)})")
    t.set_defaults(func=cmd_tour)

    lab = sub.add_parser("lab", help="the exercises: list, check, hint, solve, reset, variants")
    lsub = lab.add_subparsers(dest="lab_command", metavar="ACTION")
    lsub.required = True
    lsub.add_parser("list", help="every exercise, one a line").set_defaults(func=cmd_lab)
    for action, text in (("check", "exit 0 when it is done, 1 with a hint when not"),
                         ("solve", "run the reference solution"), ("reset", "undo the exercise"),
                         ("variants", "for an instructor: the other correct solutions and the near misses "
                                      "the tests run, with what each ✗ says")):
        x = lsub.add_parser(action, help=text)
        x.add_argument("id", metavar="ID")
        x.set_defaults(func=cmd_lab)
    h = lsub.add_parser("hint", help="hint N (1: where to read, 2: the flag, 3: the command)")
    h.add_argument("id", metavar="ID")
    h.add_argument("n", nargs="?", type=int, default=1, metavar="N")
    h.set_defaults(func=cmd_lab)

    u = sub.add_parser("url", help="print the URL (with its token) of the running JupyterLab")
    u.set_defaults(func=cmd_url)


def cmd_lab(a):
    from labkit.course import lab
    from labkit.i18n import _
    if a.lab_command == "list":
        for ex in lab.exercises():
            print(f"{ex.id:<18} {ex.notebook:<4} {_(ex.title)}")
        return 0
    if a.lab_command == "hint":
        lab.hint(a.id, a.n)
        return 0
    if a.lab_command == "variants":
        print(lab.variants(a.id))
        return 0
    need_root(f"labkit lab {a.lab_command}")
    if a.lab_command == "check":
        return 0 if lab.check(a.id) else 1
    getattr(lab, a.lab_command)(a.id)
    print(f"{a.id}: {a.lab_command} done")
    return 0


def cmd_doctor(a):
    from labkit.course import doctor
    return doctor.main()


def cmd_tour(a):
    from labkit.course import tour
    unknown = [name for name in a.layers if name not in tour.LAYERS]
    if unknown:
        raise LabkitError(f"labkit tour: no stage named {', '.join(map(repr, unknown))}",
                          f"the stages are {' '.join(tour.LAYERS)}")
    need_root("labkit tour")
    return tour.main(a.layers or tour.LAYERS)


def cmd_url(a):
    from labkit.course import jupyter
    return jupyter.print_url()
