"""Shared fixtures of the binding's tests: every mailbox lives in a private POSTBOX_DIR (run.sh
makes one; run by hand, one is made here) and is unlinked after its test, even on failure."""
import itertools
import os
import tempfile

import pytest

if "POSTBOX_DIR" not in os.environ:
    os.environ["POSTBOX_DIR"] = tempfile.mkdtemp(prefix="pbx-py.")

import postbox  # noqa: E402  (after POSTBOX_DIR is set)

_names = itertools.count()


@pytest.fixture
def name():
    """A fresh mailbox name, unlinked after the test."""
    n = "py-%d-%d" % (os.getpid(), next(_names))
    yield n
    try:
        postbox.unlink(n)
    except FileNotFoundError:
        pass


@pytest.fixture
def mb(name):
    """A new mailbox with the default limits, closed and unlinked after the test."""
    box = postbox.Mailbox(name, create=True)
    yield box
    box.close()


def wait_for(predicate, what, tries=20000):
    """Polls predicate until it holds; bounded by a number of tries, not a time budget."""
    import time

    for _ in range(tries):
        if predicate():
            return
        time.sleep(0.001)
    raise AssertionError("never happened: " + what)


def tool(env_name, what):
    """Path of a program the build made (the postbox command, the C peer), or skip."""
    path = os.environ.get(env_name)
    if not path or not os.path.exists(path):
        pytest.skip("%s not built (run the tests through ctest)" % what)
    return path
