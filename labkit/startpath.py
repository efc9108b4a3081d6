"""The shortcuts that keep a container's start fast, in one place.

Starting a container is the hot path: `labkit run` and `labkit-runtime run`
are fresh interpreters, so every module they import is paid at every start
(`make bench` measures it; tests/test_startpath.py keeps the list out of
sys.modules). Measured on the course's machines (python -X importtime):

  signal        the `signal` module imports enum (~3 ms); its C core
                `_signal` has every function and constant used here.
  json          imports re, and re imports enum (~5 ms together): state.json
                is written with the C encoder json.dumps itself uses (dumps()).
  shutil        imports bz2, lzma and fnmatch (~3 ms): remove_tree() is rm -r.
  argparse      ~6 ms with gettext and re: `labkit run` reads its options
                from one table (labkit/cli.py).
  dataclasses   ~20 ms with inspect: configs are plain classes.
  threading     nothing on the start path needs a thread.
  _socket,      the C modules' own initialisation (~1 M instructions for
  resource      _socket with fcntl, ~0.4 M for resource, measured with
                valgrind --tool=callgrind): lo is brought up and rlimits are
                set through the syscall layer's ctypes instead.
  jsonschema    ~100 ms: labkit/oci/validate.py checks a config.json against
                the spec's schema once and caches the parsed config by the
                sha256 of its bytes, in marshal format (no json to read it
                again); the digest comes from the builtin _sha256, as
                hashlib would load OpenSSL for it (~5 ms).

Besides imports:

  gc            a start allocates enough for the cyclic garbage collector to
                run a full pass in the middle of it (~2 ms), and a start makes
                no cycles worth collecting: it is off (gc.disable) for the
                whole of a short command. A detached monitor, which lives as
                long as its container, turns it back on once the caller is told.

Everything else imports what it needs, as usual; only the run path is fenced.
"""

import gc
import os
import _signal as signal  # noqa: F401 (re-exported: `from ..startpath import signal`)


def hold_gc():
    """No cyclic garbage collection until resume_gc(): for a command that
    starts a container (labkit run, labkit-runtime create/run/exec)."""
    gc.disable()


def resume_gc():
    gc.enable()


def _not_serializable(o):
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def dumps(obj):
    """json.dumps(obj) in its default, compact form, from json's own C
    encoder; json itself where _json lacks it (the pure-Python encoder would
    cost ~1 ms a save)."""
    try:
        from _json import encode_basestring_ascii, make_encoder
    except ImportError:
        import json
        return json.dumps(obj)
    # markers (circular check), default, string encoder, indent,
    # key and item separators, sort_keys, skipkeys, allow_nan: json.dumps's.
    encode = make_encoder({}, _not_serializable, encode_basestring_ascii, None,
                          ": ", ", ", False, False, True)
    return "".join(encode(obj, 0))


def remove_tree(top):
    """rm -r. os.walk does not follow symlinks: a link is removed, never
    what it points to."""
    for base, dirs, files in os.walk(top, topdown=False):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(base, d))]:
            try:
                os.unlink(os.path.join(base, name))
            except FileNotFoundError:
                pass
        for name in dirs:
            try:
                os.rmdir(os.path.join(base, name))
            except (FileNotFoundError, NotADirectoryError):
                pass
    try:
        os.rmdir(top)
    except FileNotFoundError:
        pass
