"""Receive loans: Mailbox.recv_loan() over pbx_recv_loan/pbx_loan_piece/pbx_return. The view of
the payload is read-only, in place, and cannot outlive the loan: close() refuses while a view
exists, and the handle stays open until the loan ends."""
import errno
import gc

import pytest

import postbox


def test_one_piece_payload_is_a_read_only_view_in_place(mb):
    mb.send(b"hello loan", type=4)
    with mb.recv_loan() as loan:
        assert loan.type == 4 and len(loan) == 10 and not loan.closed
        view = loan.data
        assert isinstance(view, memoryview) and view.readonly
        assert bytes(view) == b"hello loan"
        with pytest.raises(TypeError):
            view[0] = 0
        assert mb.stat().claimed == 1  # lent: out of the queue, not yet removed
        view.release()
    assert loan.closed
    st = mb.stat()
    assert st.msgs == 0 and st.received == 1
    with pytest.raises(ValueError):
        loan.data


def test_close_refuses_while_a_view_exists_and_keeps_the_loan(mb):
    mb.send(b"abc")
    loan = mb.recv_loan()
    view = loan.data
    alias = memoryview(view)  # another view of the same managed buffer
    view.release()
    with pytest.raises(BufferError):
        loan.close()
    assert not loan.closed and bytes(alias) == b"abc"  # still valid: the loan is held
    assert mb.stat().claimed == 1
    alias.release()
    loan.close()
    loan.close()  # idempotent
    assert mb.stat().msgs == 0


def test_the_with_block_refuses_to_end_under_a_live_view(mb):
    mb.send(b"xyz")
    with pytest.raises(BufferError):
        with mb.recv_loan() as loan:
            kept = loan.data
    assert bytes(kept) == b"xyz" and not loan.closed
    del kept
    loan.close()
    assert mb.stat().msgs == 0


def test_dropped_loan_is_returned_and_mailbox_close_waits_for_it(name):
    with postbox.Mailbox(name, create=True) as rw:
        rw.send(b"one")
        rw.send(b"two")
        other = postbox.Mailbox(name)
        loan = other.recv_loan()
        view = loan.data
        other.close()  # deferred: the loan holds the handle
        assert bytes(view) == b"one"
        with pytest.raises(ValueError):
            other.recv()
        del view, loan
        gc.collect()
        st = rw.stat()
        assert st.msgs == 1 and st.claimed == 0 and st.received == 1
        assert rw.recv() == (b"two", 1)


def test_multi_piece_payload_is_bytes(name):
    with postbox.Mailbox(name, create=True, max_msg_size=65536) as mb:
        payload = bytes(range(256)) * 100
        mb.send(payload, type=9)
        with mb.recv_loan() as loan:
            data = loan.data
            assert loan.type == 9 and data == payload
            if isinstance(data, memoryview):  # the library kept it in one piece
                data.release()
        assert mb.stat().msgs == 0


def test_empty_payload_and_selection(mb):
    mb.send(b"", type=2)
    mb.send(b"t1", type=1)
    with mb.recv_loan(1) as loan:
        assert bytes(loan.data) == b"t1"
    with mb.recv_loan(1, exclude=True) as loan:
        assert loan.data == b"" and loan.type == 2
    with pytest.raises(postbox.Empty) as e:
        mb.recv_loan(block=False)
    assert e.value.errno == errno.ENOMSG
    with pytest.raises(ValueError):
        mb.recv_loan(0, exclude=True)
    with pytest.raises(TypeError):
        mb.recv_loan(timeout=1)


def test_loan_is_not_a_writable_buffer(mb):
    import io

    mb.send(b"ro")
    with mb.recv_loan() as loan:
        with pytest.raises((BufferError, TypeError)):
            io.BytesIO(b"XY").readinto(loan)  # asks for a writable buffer
        assert loan.data == b"ro"  # a temporary view, released at once


def test_spool_loans_by_copying_follow_the_same_rules(tmp_path):
    path = "spool:" + str(tmp_path / "box")
    with postbox.Mailbox(path, create=True) as mb:
        mb.send(b"durable", type=3)
        loan = mb.recv_loan()
        view = loan.data
        with pytest.raises(BufferError):
            loan.close()
        assert bytes(view) == b"durable" and loan.type == 3
        view.release()
        loan.close()
        with pytest.raises(postbox.Empty):
            mb.recv(block=False)
        mb.remove()
