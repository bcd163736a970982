"""Every item of the Mailbox API in one process: send and the receive family, selection by
type, claims, iteration, stat/peers/notify/fileno, overflow policies, private and spool
mailboxes, and close() while another thread waits."""
import array
import os
import queue
import selectors
import signal
import threading

import pytest

import postbox
from conftest import wait_for


def test_send_and_recv_round_trip_keeps_type_and_bytes(mb):
    assert mb.send(b"hello", 3) == 0
    msg = mb.recv()
    assert msg.data == b"hello" and msg.type == 3
    assert isinstance(msg, postbox.Message)


def test_message_unpacks_as_data_then_type(mb):
    mb.send(b"\x00\xffbin", type=7)
    data, mtype = mb.recv()
    assert (data, mtype) == (b"\x00\xffbin", 7)


def test_empty_message_round_trips(mb):
    mb.send(b"")
    assert mb.recv() == (b"", 1)


def test_send_takes_any_bytes_like_object(mb):
    mb.send(bytearray(b"ba"))
    mb.send(memoryview(b"xmvx")[1:3])
    mb.send(array.array("i", [1, 2]))
    assert mb.recv().data == b"ba"
    assert mb.recv().data == b"mv"
    assert mb.recv().data == array.array("i", [1, 2]).tobytes()


def test_send_rejects_non_contiguous_buffer(mb):
    with pytest.raises((BufferError, TypeError)):
        mb.send(memoryview(b"abcdef")[::2])
    assert mb.stat().msgs == 0


def test_recv_selects_by_type_like_msgrcv(mb):
    for t in (5, 3, 9, 3):
        mb.send(bytes([t]), t)
    assert mb.recv(9).type == 9  # exactly that type
    assert mb.recv(-4).type == 3  # lowest type <= 4
    assert mb.recv(3, exclude=True).type == 5  # any type but 3
    assert mb.recv(0).type == 3  # the oldest left


def test_peek_leaves_the_message_queued(mb):
    mb.send(b"p", 4)
    assert mb.peek() == (b"p", 4)
    assert mb.stat().msgs == 1
    assert mb.recv() == (b"p", 4)


def test_recv_into_writes_into_the_callers_buffer(mb):
    mb.send(b"abcdef", 2)
    buf = bytearray(10)
    assert mb.recv_into(buf) == (6, 2)
    assert buf[:6] == b"abcdef"


def test_recv_into_too_small_leaves_message_unless_truncate(mb):
    mb.send(b"abcdef")
    small = bytearray(3)
    with pytest.raises(OSError) as e:
        mb.recv_into(small)
    assert e.value.errno == 7  # E2BIG
    assert mb.stat().msgs == 1
    assert mb.recv_into(small, truncate=True) == (3, 1)
    assert small == b"abc" and mb.stat().msgs == 0


def test_large_mailbox_receives_messages_bigger_than_the_stack_buffer(name):
    with postbox.Mailbox(name, create=True, max_msg_size=1 << 20, max_bytes=4 << 20) as mb:
        big = os.urandom(300000)
        mb.send(big, 2)
        small = b"s" * 17
        mb.send(small)
        assert mb.recv() == (big, 2)
        assert mb.recv() == (small, 1)
        assert mb.max_msg_size == 1 << 20


def test_large_mailbox_waits_and_selects_like_a_small_one(name):
    with postbox.Mailbox(name, create=True, max_msg_size=1 << 16) as mb:
        with pytest.raises(postbox.Empty):
            mb.recv(block=False)
        big = b"b" * 20000
        mb.send(big, 3)
        mb.send(b"small", 2)
        assert mb.peek(3) == (big, 3)
        assert mb.recv(-2) == (b"small", 2)
        got = []
        t = threading.Thread(target=lambda: got.append(mb.recv(4)))
        t.start()
        wait_for(lambda: mb.stat().recv_waiters == 1, "receiver waiting")
        mb.send(b"w" * 9000, 4)
        t.join()
        assert got == [(b"w" * 9000, 4)]
        with mb.claim(3) as c:
            assert c.data == big


def test_nonblocking_recv_raises_empty_with_errno(mb):
    with pytest.raises(postbox.Empty) as e:
        mb.recv(block=False)
    assert isinstance(e.value, queue.Empty) and isinstance(e.value, BlockingIOError)
    assert e.value.errno == 42  # ENOMSG


def test_recv_timeout_raises_recv_timeout(mb):
    with pytest.raises(TimeoutError) as e:
        mb.recv(timeout=0.01)
    assert isinstance(e.value, postbox.RecvTimeout) and isinstance(e.value, queue.Empty)
    assert e.value.errno == 110  # ETIMEDOUT


def test_blocking_send_into_full_mailbox_raises_full_or_send_timeout(name):
    with postbox.Mailbox(name, create=True, max_msgs=2) as mb:
        mb.send(b"1")
        mb.send(b"2")
        with pytest.raises(postbox.Full) as e:
            mb.send(b"3", block=False)
        assert isinstance(e.value, queue.Full) and e.value.errno == 11  # EAGAIN
        with pytest.raises(postbox.SendTimeout) as e:
            mb.send(b"3", timeout=0.01)
        assert isinstance(e.value, TimeoutError)


def test_drop_newest_raises_full_with_enobufs_and_counts_the_drop(name):
    with postbox.Mailbox(name, create=True, max_msgs=1, overflow=postbox.DROP_NEWEST) as mb:
        mb.send(b"kept")
        with pytest.raises(postbox.Full) as e:
            mb.send(b"dropped")
        assert e.value.errno == 105  # ENOBUFS
        assert mb.stat().dropped == 1
        assert mb.recv().data == b"kept"


def test_drop_oldest_returns_how_many_were_discarded(name):
    with postbox.Mailbox(name, create=True, max_msgs=2, overflow=postbox.DROP_OLDEST) as mb:
        assert mb.send(b"a") == 0
        assert mb.send(b"b") == 0
        assert mb.send(b"c") == 1
        assert [mb.recv().data for _ in range(2)] == [b"b", b"c"]


def test_blocking_recv_in_one_thread_gets_what_another_sends(mb):
    got = []
    t = threading.Thread(target=lambda: got.append(mb.recv(5)))
    t.start()
    wait_for(lambda: mb.stat().recv_waiters == 1, "receiver waiting")
    mb.send(b"x", 5)
    t.join()
    assert got == [(b"x", 5)]


def test_gil_is_released_while_a_call_waits(mb):
    """A counter thread must advance while the main thread waits in recv(): it counts, then
    sends the message the main thread waits for. With the GIL held in the wait, the counter
    could not run and recv() would time out instead."""
    counted = []

    def counter():
        wait_for(lambda: mb.stat().recv_waiters == 1, "main thread waiting")
        n = 0
        for _ in range(200000):
            n += 1
        counted.append(n)
        mb.send(b"done", 2)

    t = threading.Thread(target=counter)
    t.start()
    try:
        msg = mb.recv(2, timeout=60)
    finally:
        t.join()
    assert msg == (b"done", 2) and counted == [200000]


def test_sync_send_returns_once_a_receiver_took_the_message(mb):
    got = []
    t = threading.Thread(target=lambda: got.append(mb.recv()))
    t.start()
    mb.send(b"sync", sync=True)
    assert got == [(b"sync", 1)] or mb.stat().received == 1
    t.join()
    assert got == [(b"sync", 1)]


def test_claim_ack_removes_and_release_puts_back(mb):
    mb.send(b"one", 1)
    c = mb.claim()
    assert (c.data, c.type, c.settled) == (b"one", 1, False)
    assert mb.stat().claimed == 1
    with pytest.raises(postbox.Empty):
        mb.recv(block=False)  # hidden from other receivers
    c.release()
    assert c.settled and mb.stat().claimed == 0
    c2 = mb.claim()
    c2.ack()
    assert mb.stat().msgs == 0
    with pytest.raises(ValueError):
        c2.ack()


def test_claim_context_acks_on_success_and_releases_on_exception(mb):
    mb.send(b"job", 4)
    with mb.claim(4) as c:
        assert c.data == b"job"
    assert mb.stat().msgs == 0
    mb.send(b"job2", 4)
    with pytest.raises(RuntimeError):
        with mb.claim(4):
            raise RuntimeError("worker failed")
    assert mb.stat().claimed == 0
    assert mb.recv() == (b"job2", 4)


def test_claim_dropped_unsettled_is_released(mb):
    mb.send(b"x")
    c = mb.claim()
    del c
    assert mb.stat().claimed == 0
    assert mb.recv().data == b"x"


def test_claim_with_timeout_times_out_and_then_claims(mb):
    with pytest.raises(postbox.RecvTimeout):
        mb.claim(timeout=0.01)
    mb.send(b"late", 2)
    with mb.claim(2, timeout=5) as c:
        assert c.data == b"late"


def test_iteration_yields_messages_and_ends_when_removed(mb):
    for i in range(3):
        mb.send(bytes([i]), i + 1)
    got = []

    def remover():
        wait_for(lambda: len(got) == 3 and mb.stat().recv_waiters == 1, "iterator waiting")
        postbox.unlink(mb.name)

    t = threading.Thread(target=remover)
    t.start()
    for msg in mb:
        got.append(msg)
    t.join()
    assert got == [(b"\x00", 1), (b"\x01", 2), (b"\x02", 3)]


def test_stat_reports_limits_and_counters(name):
    with postbox.Mailbox(name, create=True, mode=0o640, max_msgs=10, max_bytes=1000,
                         max_msg_size=100) as mb:
        mb.send(b"12345")
        st = mb.stat()
        assert isinstance(st, postbox.Stat)
        assert (st.msgs, st.bytes, st.max_msgs, st.max_bytes, st.max_msg_size) == (1, 5, 10, 1000, 100)
        assert st.mode == 0o640 and st.overflow == postbox.BLOCK
        assert st.last_send_pid == os.getpid() and st.last_recv_time is None
        assert st.sent == 1 and st.received == 0


def test_peers_lists_this_process_with_its_roles(mb):
    mb.send(b"x")
    mb.recv()
    peers = mb.peers()
    me = [p for p in peers if p.pid == os.getpid()]
    assert len(me) == 1
    assert me[0].roles & postbox.PEER_OPENED and me[0].roles & postbox.PEER_SENT
    assert me[0].roles & postbox.PEER_RECEIVED and me[0].handles == 1


def test_notify_sends_the_signal_when_a_message_arrives(mb):
    old = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
    try:
        mb.notify(signal.SIGUSR1, 42)
        assert [p.notify_signal for p in mb.peers()] == [signal.SIGUSR1]
        mb.send(b"wake")
        info = signal.sigtimedwait([signal.SIGUSR1], 30)
        assert info is not None and info.si_signo == signal.SIGUSR1
        assert info.si_code == -1  # SI_QUEUE
        mb.notify(0)
        assert [p.notify_signal for p in mb.peers()] == [0]
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def test_fileno_is_readable_while_a_message_waits(mb):
    fd = mb.fileno()
    assert fd == mb.fileno()
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        mb.send(b"ready")
        assert sel.select(timeout=30) != []
        mb.recv()
        wait_for(lambda: sel.select(timeout=0) == [], "descriptor unreadable once drained")


def test_close_is_idempotent_and_later_calls_raise_value_error(mb):
    mb.close()
    mb.close()
    assert mb.closed
    with pytest.raises(ValueError):
        mb.send(b"x")
    with pytest.raises(ValueError):
        mb.recv(block=False)
    with pytest.raises(ValueError):
        mb.stat()


def test_context_manager_closes(name):
    with postbox.Mailbox(name, create=True) as mb:
        assert not mb.closed
    assert mb.closed


def test_close_while_another_thread_waits_keeps_the_handle_until_the_call_returns(name):
    mb = postbox.Mailbox(name, create=True)
    other = postbox.Mailbox(name)
    got = []
    t = threading.Thread(target=lambda: got.append(mb.recv()))
    t.start()
    wait_for(lambda: other.stat().recv_waiters == 1, "receiver waiting")
    mb.close()
    assert mb.closed
    assert [p.handles for p in other.peers()] == [2]  # the waiter still holds it
    other.send(b"after close")
    t.join()
    assert got == [(b"after close", 1)]
    assert [p.handles for p in other.peers()] == [1]  # released by the waiter's return
    other.close()


def test_remove_wakes_a_blocked_receiver_with_removed(mb):
    errors = []

    def waiter():
        try:
            mb.recv()
        except postbox.Removed as e:
            errors.append(e)

    t = threading.Thread(target=waiter)
    t.start()
    wait_for(lambda: mb.stat().recv_waiters == 1, "receiver waiting")
    other = postbox.Mailbox(mb.name)
    other.remove()
    t.join()
    assert len(errors) == 1 and errors[0].errno == 43  # EIDRM
    with pytest.raises(postbox.Removed):
        other.remove()
    other.close()
    with pytest.raises(FileNotFoundError):
        postbox.Mailbox(mb.name)


def test_unlink_removes_by_name(name):
    postbox.Mailbox(name, create=True).close()
    postbox.unlink(name)
    with pytest.raises(FileNotFoundError):
        postbox.unlink(name)


def test_private_mailbox_has_no_name_and_works(name):
    with postbox.Mailbox.private(max_msgs=8) as mb:
        assert mb.name is None and "private" in repr(mb)
        assert isinstance(mb, postbox.Mailbox)
        mb.send(b"p", 2)
        assert mb.recv() == (b"p", 2)
        assert mb.stat().max_msgs == 8


def test_spool_mailbox_works_like_a_shared_memory_one(tmp_path):
    path = "spool:" + str(tmp_path / "box")
    with postbox.Mailbox(path, create=True, durability=postbox.DURABLE_NONE) as mb:
        mb.send(b"durable", 3)
        mb.send(b"\x00bin", 1)
        assert mb.recv(3) == (b"durable", 3)
        with mb.claim() as c:
            assert c.data == b"\x00bin"
        assert mb.stat().msgs == 0
    with postbox.Mailbox(path) as again:
        again.send(b"x")
    with postbox.Mailbox(path) as again:
        assert again.recv(block=False).data == b"x"
    postbox.unlink(path)


def test_open_existing_keeps_its_limits(name):
    postbox.Mailbox(name, create=True, max_msgs=3).close()
    with postbox.Mailbox(name, create=True, max_msgs=99) as mb:
        assert mb.stat().max_msgs == 3


def test_module_metadata():
    assert postbox.__version__ == postbox.library_version
    assert postbox.strerror(43) == postbox.strerror(-43) != ""
    assert postbox.BLOCK == 0 and postbox.DROP_NEWEST == 1 and postbox.DROP_OLDEST == 2
