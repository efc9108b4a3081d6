"""The protocol between the monitor and its children (labkit/runtime/sync.py),
without root: the diagram names every message, and messages cross a real fork."""

import os

from labkit.runtime import sync

MESSAGES = {name: value for name, value in vars(sync).items()
            if name.isupper() and isinstance(value, (str, bytes)) and name != "FORWARDED"}


def test_the_diagram_names_every_message():
    assert set(MESSAGES) == {"USERNS", "INIT_PID", "NETNS", "AWAITING_START", "ERROR", "MAPS_WRITTEN", "ATTACHED"}
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


def test_the_network_stage_waits_for_netns_and_no_longer_after_init_pid():
    """The monitor moves a veth into the init's namespace once the init says
    NETNS (sync.wait_netns); an init that fails first is an error with its
    text; after INIT_PID (the intermediate forked the init into its
    namespaces) there is nothing to wait for."""
    import pytest
    from labkit.errors import SetupError
    for last in ("netns", "error", "eof"):
        ch = sync.Channel()
        pid = os.fork()
        if pid == 0:
            try:
                ch.child_side()
                if last == "netns":
                    ch.send(sync.NETNS)
                elif last == "error":
                    ch.send_error("unshare(CLONE_NEWNET): EPERM")
            finally:
                os._exit(0)
        ch.monitor_side()
        if last == "netns":
            ch.wait_netns()
            ch.wait_netns()            # once is enough: a second call returns at once
        else:
            with pytest.raises(SetupError, match="EPERM" if last == "error" else "before its network"):
                ch.wait_netns()
        os.waitpid(pid, 0)
        ch.close()
    ch = sync.Channel()
    ch.netns_ready = True              # what the monitor's handshake sets on INIT_PID
    ch.wait_netns()
    ch.close()

