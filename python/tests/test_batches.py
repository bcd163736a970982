"""Batches: send_many() over pbx_sendv/pbx_timedsendv and recv_many() over
pbx_recvv/pbx_timedrecvv, with their partial-success rules (docs/python.md, "Batches")."""
import errno
import threading

import pytest

import postbox
from conftest import wait_for


def test_send_many_then_recv_many_in_order(mb):
    assert mb.send_many([b"a", (b"bb", 2), bytearray(b"ccc"), (memoryview(b"dddd"), 7)], 5) == 4
    got = mb.recv_many(10)
    assert got == [(b"a", 5), (b"bb", 2), (b"ccc", 5), (b"dddd", 7)]
    assert all(isinstance(m, postbox.Message) for m in got)
    assert got[3].data == b"dddd" and got[3].type == 7


def test_generators_and_received_messages_can_be_sent(mb):
    assert mb.send_many(bytes([i]) * i for i in range(1, 6)) == 5
    first = mb.recv_many(5)
    assert len(first) == 5
    assert mb.send_many(first) == 5  # a Message is a (data, type) pair
    assert mb.recv_many(5) == first
    assert mb.send_many([]) == 0


def test_recv_many_selects_by_type_and_takes_up_to_max(mb):
    mb.send_many([(b"x1", 1), (b"y1", 2), (b"x2", 1), (b"y2", 2), (b"x3", 1)])
    assert mb.recv_many(2, 1) == [(b"x1", 1), (b"x2", 1)]
    assert mb.recv_many(10, 2) == [(b"y1", 2), (b"y2", 2)]
    assert mb.recv_many(10, -1, block=False) == [(b"x3", 1)]
    assert mb.stat().msgs == 0


def test_recv_many_exclude_and_lowest_types(mb):
    mb.send_many([(b"a", 3), (b"b", 1), (b"c", 2), (b"d", 3)])
    assert mb.recv_many(2, 3, exclude=True) == [(b"b", 1), (b"c", 2)]
    mb.send_many([(b"e", 1), (b"f", 2)])
    assert mb.recv_many(10, -2) == [(b"e", 1), (b"f", 2)]
    assert mb.recv_many(10) == [(b"a", 3), (b"d", 3)]


def test_recv_many_empty_raises_empty_and_timeout(mb):
    with pytest.raises(postbox.Empty) as e:
        mb.recv_many(4, block=False)
    assert e.value.errno == errno.ENOMSG
    with pytest.raises(postbox.RecvTimeout):
        mb.recv_many(4, timeout=0.01)


def test_send_many_checks_every_entry_before_sending(name):
    with postbox.Mailbox(name, create=True, max_msg_size=64) as mb:
        with pytest.raises(OSError) as e:
            mb.send_many([b"ok", b"x" * 65])
        assert e.value.errno == errno.EMSGSIZE
        with pytest.raises(ValueError):
            mb.send_many([b"ok", (b"bad", 0)])
        with pytest.raises(TypeError):
            mb.send_many([b"ok", (b"bad", 1, 2)])
        with pytest.raises(TypeError):
            mb.send_many([b"ok", "text"])
        with pytest.raises(TypeError):
            mb.send_many(5)
        with pytest.raises(ValueError):
            mb.send_many([b"ok"], 0)
        assert mb.stat().msgs == 0


def test_send_many_full_raises_only_when_none_went(name):
    with postbox.Mailbox(name, create=True, max_msgs=3) as mb:
        assert mb.send_many([b"1", b"2", b"3", b"4", b"5"], block=False) == 3
        with pytest.raises(postbox.Full) as e:
            mb.send_many([b"6"], block=False)
        assert e.value.errno == errno.EAGAIN
        with pytest.raises(postbox.SendTimeout):
            mb.send_many([b"6", b"7"], timeout=0.01)
        mb.recv()
        assert mb.send_many([b"4", b"5"], timeout=0.01) == 1
        assert [m.data for m in mb.recv_many(10)] == [b"2", b"3", b"4"]


def test_send_many_blocks_until_a_receiver_makes_room(name):
    with postbox.Mailbox(name, create=True, max_msgs=2) as mb:
        got = []

        def drain():
            with postbox.Mailbox(name) as rx:
                while len(got) < 50:
                    got.extend(m.data for m in rx.recv_many(8))

        t = threading.Thread(target=drain)
        t.start()
        assert mb.send_many(b"%d" % i for i in range(50)) == 50
        t.join()
        assert got == [b"%d" % i for i in range(50)]


def test_recv_many_waits_for_the_first_then_takes_what_is_there(mb):
    out = []
    t = threading.Thread(target=lambda: out.extend(mb.recv_many(100)))
    t.start()
    wait_for(lambda: mb.stat().recv_waiters == 1, "recv_many waits")
    mb.send_many([b"p", b"q"])
    t.join()
    # The waiter wakes at the first commit and takes what is there by then: one or both.
    assert 1 <= len(out) <= 2 and out[0] == (b"p", 1)
    if len(out) == 1:
        out.extend(mb.recv_many(100, block=False))
    assert out == [(b"p", 1), (b"q", 1)]


def test_recv_many_truncate(name):
    with postbox.Mailbox(name, create=True, max_msg_size=16) as mb:
        mb.send_many([b"short", b"x" * 16])
        assert mb.recv_many(2, truncate=True) == [(b"short", 1), (b"x" * 16, 1)]


def test_removed_after_some_were_sent_carries_the_count(name):
    # Three fit; the fourth waits; removing the mailbox ends the wait: 3 were queued.
    with postbox.Mailbox(name, create=True, max_msgs=3) as mb:
        err = []

        def send():
            try:
                mb.send_many([b"a", b"b", b"c", b"d"])
            except postbox.Removed as e:
                err.append(e)

        t = threading.Thread(target=send)
        t.start()
        wait_for(lambda: mb.stat().send_waiters == 1, "the batch waits for room")
        mb.remove()
        t.join()
        assert len(err) == 1 and err[0].sent == 3 and err[0].errno == errno.EIDRM


def test_large_batches_and_large_messages(name):
    with postbox.Mailbox(name, create=True, max_msg_size=300000, max_msgs=64,
                         max_bytes=1 << 24) as mb:
        big = [bytes([i]) * 250000 for i in range(8)]
        assert mb.send_many(big) == 8
        got = []
        while len(got) < 8:
            got.extend(m.data for m in mb.recv_many(8))  # at most 1 MiB of room per call
        assert got == big


@pytest.mark.parametrize("bad", [0, -1])
def test_recv_many_bad_max(mb, bad):
    with pytest.raises(ValueError):
        mb.recv_many(bad)
    with pytest.raises(TypeError):
        mb.recv_many("3")
    with pytest.raises(TypeError):
        mb.recv_many()
