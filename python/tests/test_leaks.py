"""No leaks under a million calls: reference counts of the objects passed in stay put, the
number of live objects stays put, and the process's resident memory stays flat. Bounded by
work (a fixed number of calls), never by time."""
import gc
import sys

import pytest

import postbox

CALLS = 1_000_000


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def live_objects():
    gc.collect()
    return len(gc.get_objects())


def test_a_million_sends_and_receives_leak_nothing(mb):
    data = b"0123456789abcdef"
    buf = bytearray(64)
    send, recv, recv_into = mb.send, mb.recv, mb.recv_into
    for _ in range(10000):  # warm up allocator pools
        send(data, 2)
        recv()
    refs = sys.getrefcount(data), sys.getrefcount(buf), sys.getrefcount(postbox.Message)
    total = sys.gettotalrefcount() if hasattr(sys, "gettotalrefcount") else None
    objects = live_objects()
    rss = rss_kib()
    for i in range(CALLS // 2):
        send(data, 2)
        if i & 1:
            recv(2)
        else:
            recv_into(buf)
    grown = rss_kib() - rss
    assert (sys.getrefcount(data), sys.getrefcount(buf), sys.getrefcount(postbox.Message)) == refs
    assert live_objects() - objects < 100
    if total is not None:
        assert sys.gettotalrefcount() - total < 100
    assert grown < 2048, "RSS grew by %d KiB over %d calls" % (grown, CALLS)


def test_errors_and_claims_in_a_loop_leak_nothing(mb):
    data = bytearray(b"x" * 40)
    for _ in range(5000):
        try:
            mb.recv(block=False)
        except postbox.Empty:
            pass
    objects = live_objects()
    rss = rss_kib()
    for _ in range(200_000):
        try:
            mb.recv(block=False)
        except postbox.Empty:
            pass
    for _ in range(100_000):
        mb.send(data, 3)
        with mb.claim(3) as c:
            assert c.type == 3
    for _ in range(100_000):
        mb.stat()
    grown = rss_kib() - rss
    assert sys.getrefcount(data) == 2
    assert live_objects() - objects < 100
    assert grown < 2048, "RSS grew by %d KiB" % grown


@pytest.mark.parametrize("size", [1 << 14, 1 << 20])
def test_large_receives_leak_nothing(name, size):
    with postbox.Mailbox(name, create=True, max_msg_size=size, max_bytes=4 * size) as mb:
        payload = b"y" * (size // 2)
        for _ in range(100):
            mb.send(payload)
            mb.recv()
        rss = rss_kib()
        for _ in range(5000):
            mb.send(payload)
            assert len(mb.recv().data) == size // 2
        grown = rss_kib() - rss
        assert grown < 4 * size // 1024 + 2048, "RSS grew by %d KiB" % grown


def test_batches_leak_nothing(mb):
    data = b"0123456789abcdef"
    view = bytearray(b"v" * 24)
    batch = [data, (view, 2), (memoryview(data), 3)] * 8
    for _ in range(2000):
        mb.send_many(batch)
        mb.recv_many(24)
    refs = sys.getrefcount(data), sys.getrefcount(view), sys.getrefcount(batch)
    objects = live_objects()
    rss = rss_kib()
    for _ in range(20_000):  # 480 000 messages each way
        assert mb.send_many(batch) == 24
        assert len(mb.recv_many(24)) == 24
    for _ in range(20_000):  # the error paths: nothing to take, a bad entry
        try:
            mb.recv_many(8, block=False)
        except postbox.Empty:
            pass
        try:
            mb.send_many([data, (view, 0)])
        except ValueError:
            pass
        try:
            mb.send_many([(view, 2), "not bytes"])  # fails after a view was taken
        except TypeError:
            pass
    grown = rss_kib() - rss
    assert (sys.getrefcount(data), sys.getrefcount(view), sys.getrefcount(batch)) == refs
    assert live_objects() - objects < 100
    assert grown < 2048, "RSS grew by %d KiB" % grown
    # A bytearray with an export cannot be resized: every view was released.
    view.append(0)
