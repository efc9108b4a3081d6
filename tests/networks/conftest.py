"""Every network test runs in a network namespace of its own (the `netns`
fixture of tests/conftest.py); `outside` is a namespace beyond it."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from net_helpers import Outside  # noqa: E402


@pytest.fixture
def outside(netns):
    o = Outside()
    yield o
    o.close()
