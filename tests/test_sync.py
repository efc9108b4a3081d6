"""The protocol between the monitor and its children (labkit/runtime/sync.py),
without root: the diagram names every message, and messages cross a real fork."""

import os

from labkit.runtime import sync

MESSAGES = {name: value for name, value in vars(sync).items()
            if name.isupper() and isinstance(value, (str, bytes)) and name != "FORWARDED"}


def test_the_diagram_names_every_message():
    assert set(MESSAGES) == {"USERNS", "INIT_PID", "AWAITING_START", "ERROR", "MAPS_WRITTEN", "ATTACHED"}
    for name in MESSAGES:
        assert name in sync.__doc__, f"{name} is not in sync.py's diagram"
    assert len(set(MESSAGES.values())) == len(MESSAGES)


def test_messages_cross_a_fork_in_order_and_eof_ends_them():
    ch = sync.Channel()
    pid = os.fork()
    if pid == 0:
        try:
            ch.child_side()
            ch.send(sync.USERNS)
            ok = ch.expect(sync.MAPS_WRITTEN)
            ch.send(sync.INIT_PID, 4242 if ok else 0)
            ch.wait_attached()
            ch.send_error("mount(proc -> /x/proc): EPERM\n(a hint: with spaces)")
        finally:
            os._exit(0)
    ch.monitor_side()
    assert ch.recv() == (sync.USERNS, "")
    ch.tell(sync.MAPS_WRITTEN)
    assert ch.recv() == (sync.INIT_PID, "4242")
    ch.tell(sync.ATTACHED)
    assert ch.recv() == (sync.ERROR, "mount(proc -> /x/proc): EPERM\n(a hint: with spaces)")
    os.waitpid(pid, 0)
    assert ch.recv() == (None, None)
    ch.close()


def test_wait_attached_refuses_anything_but_attached():
    ch = sync.Channel()
    os.close(ch.down_w)      # the monitor is gone: EOF instead of ATTACHED
    ch.down_w = None
    try:
        ch.wait_attached()
    except Exception as e:
        assert "monitor stopped" in str(e)
    else:
        raise AssertionError("wait_attached returned without ATTACHED")
    ch.close()
