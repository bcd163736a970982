"""Read-only handles: Mailbox(name, readonly=True) opens with PBX_RDONLY. stat() and peers()
work and see the read-write users' doing; every other call raises postbox.ReadOnly (errno
EBADF, a PermissionError) and changes nothing."""
import errno
import os

import pytest

import postbox


def test_looking_handle_sees_stat_and_peers(mb):
    mb.send(b"abc", type=3)
    with postbox.Mailbox(mb.name, readonly=True) as ro:
        assert ro.readonly and not mb.readonly
        st = ro.stat()
        assert st.msgs == 1 and st.bytes == 3
        # A looking handle is not a participant: the peers are the read-write handle's process.
        assert [p.pid for p in ro.peers()] == [os.getpid()]
        assert ro.peers()[0].handles == 1
    assert mb.recv() == (b"abc", 3)


@pytest.mark.parametrize(
    "call",
    [
        lambda ro: ro.send(b"x"),
        lambda ro: ro.send_many([b"x", b"y"]),
        lambda ro: ro.recv(block=False),
        lambda ro: ro.recv(),
        lambda ro: ro.recv_many(4),
        lambda ro: ro.peek(),
        lambda ro: ro.recv_into(bytearray(16)),
        lambda ro: ro.claim(),
        lambda ro: ro.recv_loan(),
        lambda ro: ro.notify(0),
        lambda ro: ro.fileno(),
        lambda ro: ro.remove(),
        lambda ro: next(iter(ro)),
    ],
)
def test_every_other_call_raises_read_only_and_changes_nothing(mb, call):
    mb.send(b"kept", type=2)
    with postbox.Mailbox(mb.name, readonly=True) as ro:
        with pytest.raises(postbox.ReadOnly) as e:
            call(ro)
        assert e.value.errno == errno.EBADF
        assert isinstance(e.value, PermissionError)
    assert mb.stat().msgs == 1
    assert mb.recv(block=False) == (b"kept", 2)


def test_readonly_cannot_create(name):
    with pytest.raises(ValueError):
        postbox.Mailbox(name, create=True, readonly=True)
    with pytest.raises(FileNotFoundError):
        postbox.Mailbox(name, readonly=True)


def test_large_message_mailbox_refuses_too(name):
    # recv() of a mailbox with messages above the stack buffer takes another path.
    with postbox.Mailbox(name, create=True, max_msg_size=65536) as rw:
        rw.send(b"z" * 20000)
        with postbox.Mailbox(name, readonly=True) as ro:
            with pytest.raises(postbox.ReadOnly):
                ro.recv()
        assert rw.stat().msgs == 1


def _as_nobody(fn):
    """Runs fn() in a child that became uid 65534; returns its exit code. The private
    POSTBOX_DIR (mode 0700 from mktemp) is made 0755 for the child's time, so that the
    mailbox's own mode is what decides."""
    d = os.environ["POSTBOX_DIR"]
    old = os.stat(d).st_mode & 0o7777
    os.chmod(d, 0o755)  # as tests/test_readonly.c does
    try:
        return _fork_as_nobody(fn)
    finally:
        os.chmod(d, old)


def _fork_as_nobody(fn):
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            os.setgid(65534)
            os.setuid(65534)
            code = fn()
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_another_user_may_look_at_a_0644_mailbox(name):
    if os.getuid() != 0:
        pytest.skip("needs root to look as another user")
    with postbox.Mailbox(name, create=True, mode=0o644) as rw:
        rw.send(b"one")
        rw.send(b"two")

        def look():
            try:
                postbox.Mailbox(name)  # read-write needs write permission
                return 4
            except postbox.ReadOnly:
                return 5
            except PermissionError:
                pass
            with postbox.Mailbox(name, readonly=True) as ro:
                if ro.stat().msgs != 2:
                    return 6
                try:
                    ro.recv(block=False)
                    return 7
                except postbox.ReadOnly:
                    return 0

        assert _as_nobody(look) == 0
        assert rw.stat().msgs == 2


def test_another_user_may_not_look_at_a_0600_mailbox(name):
    if os.getuid() != 0:
        pytest.skip("needs root to look as another user")
    postbox.Mailbox(name, create=True, mode=0o600).close()

    def look():
        try:
            postbox.Mailbox(name, readonly=True)
            return 4
        except postbox.ReadOnly:
            return 5
        except PermissionError:
            return 0

    assert _as_nobody(look) == 0
