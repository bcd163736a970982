"""Bad arguments give clear exceptions, never a crash; errors map to the documented
exception classes with errno set."""
import errno
import os
import queue

import pytest

import postbox

ARG_ERRORS = (TypeError, ValueError, OverflowError, OSError, BufferError)


def test_exception_hierarchy():
    assert issubclass(postbox.Empty, BlockingIOError) and issubclass(postbox.Empty, queue.Empty)
    assert issubclass(postbox.Full, BlockingIOError) and issubclass(postbox.Full, queue.Full)
    assert issubclass(postbox.RecvTimeout, postbox.Empty)
    assert issubclass(postbox.RecvTimeout, TimeoutError)
    assert issubclass(postbox.SendTimeout, postbox.Full)
    assert issubclass(postbox.SendTimeout, TimeoutError)
    assert issubclass(postbox.Removed, OSError)


def test_missing_mailbox_is_file_not_found_with_name(name):
    with pytest.raises(FileNotFoundError) as e:
        postbox.Mailbox(name)
    assert e.value.errno == errno.ENOENT and e.value.filename == name


def test_exclusive_create_of_existing_is_file_exists(mb):
    with pytest.raises(FileExistsError):
        postbox.Mailbox(mb.name, create=True, exclusive=True)


def test_mode_forbidding_access_is_permission_error(name):
    postbox.Mailbox(name, create=True, mode=0o600).close()
    if os.getuid() != 0:
        pytest.skip("needs root to open as another user")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setuid(65534)
            postbox.Mailbox(name)
        except PermissionError:
            code = 0
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("bad", ["", "a/b", "..", "x" * 300, "nul\0byte"])
def test_bad_names_raise_value_error(bad):
    with pytest.raises(ValueError):
        postbox.Mailbox(bad, create=True)


@pytest.mark.parametrize("bad", [None, 5, b"bytes", 1.5])
def test_non_str_names_raise_type_error(bad):
    with pytest.raises(TypeError):
        postbox.Mailbox(bad)
    with pytest.raises(TypeError):
        postbox.unlink(bad)


def test_option_errors(name):
    with pytest.raises(ValueError):
        postbox.Mailbox(name, exclusive=True)
    with pytest.raises(ValueError):
        postbox.Mailbox(name, create=True, mode=0o70000)
    with pytest.raises(ValueError):
        postbox.Mailbox(name, create=True, max_msgs=-1)
    with pytest.raises(ValueError):
        postbox.Mailbox(name, create=True, max_msgs=1 << 40)
    with pytest.raises(TypeError):
        postbox.Mailbox(name, create=True, max_bytes="big")
    with pytest.raises(ValueError):
        postbox.Mailbox(name, create=True, overflow=7)
    with pytest.raises(TypeError):
        postbox.Mailbox(name, create=True, bogus=1)
    with pytest.raises(TypeError):
        postbox.Mailbox(name, True)
    with pytest.raises((ValueError, OSError)):
        postbox.Mailbox(name, create=True, max_msg_size=100, max_bytes=10)


def test_send_argument_errors(mb):
    with pytest.raises(TypeError):
        mb.send("text is not bytes")
    with pytest.raises(TypeError):
        mb.send()
    with pytest.raises(ValueError):
        mb.send(b"x", 0)
    with pytest.raises(ValueError):
        mb.send(b"x", -3)
    with pytest.raises(TypeError):
        mb.send(b"x", "1")
    with pytest.raises(OverflowError):
        mb.send(b"x", 1 << 70)
    with pytest.raises(ValueError):
        mb.send(b"x", timeout=-1)
    with pytest.raises(ValueError):
        mb.send(b"x", timeout=float("nan"))
    with pytest.raises(TypeError):
        mb.send(b"x", timeout="soon")
    with pytest.raises(TypeError):
        mb.send(b"x", 1, 2)
    with pytest.raises(TypeError):
        mb.send(b"x", typo=1)
    with pytest.raises(TypeError):
        mb.send(b"x", data=b"y")
    assert mb.stat().msgs == 0


def test_oversized_message_is_oserror_emsgsize(name):
    with postbox.Mailbox(name, create=True, max_msg_size=16) as mb:
        with pytest.raises(OSError) as e:
            mb.send(b"x" * 17)
        assert e.value.errno == errno.EMSGSIZE


def test_recv_argument_errors(mb):
    with pytest.raises(ValueError):
        mb.recv(0, exclude=True)
    with pytest.raises(ValueError):
        mb.recv(-2, exclude=True)
    with pytest.raises(TypeError):
        mb.recv("0")
    with pytest.raises(BufferError):
        mb.recv_into(b"read-only bytes")
    with pytest.raises(TypeError):
        mb.recv_into()
    with pytest.raises(ValueError):
        mb.recv(timeout=-0.5)
    with pytest.raises(TypeError):
        mb.peek(1, 2)
    with pytest.raises(TypeError):
        mb.notify("SIGUSR1")
    with pytest.raises(ValueError):
        mb.notify(9)  # SIGKILL
    with pytest.raises(ValueError):
        mb.notify(-1)


class Weird:
    def __index__(self):
        raise RuntimeError("weird")

    def __bool__(self):
        raise RuntimeError("weird")

    def __float__(self):
        raise RuntimeError("weird")


VALUES = [None, -1, 0, 1, 2**63, -(2**63), 2**64, 1.5, float("inf"), float("nan"), "s", b"b",
          bytearray(3), memoryview(b"m"), [], {}, object(), Weird()]


@pytest.mark.parametrize("method", ["send", "recv", "peek", "recv_into", "claim"])
def test_any_argument_value_gives_an_exception_or_a_result_never_a_crash(name, method):
    with postbox.Mailbox(name, create=True, max_msgs=4) as mb:
        fn = getattr(mb, method)
        for v in VALUES:
            for args, kwargs in [((v,), {}), ((b"x", v), {}), ((bytearray(8), v), {}),
                                 ((), {"block": v}), ((), {"timeout": v}),
                                 ((), {"exclude": v}), ((), {"truncate": v}),
                                 ((), {"sync": v}), ((v, v, v), {})]:
                if method != "send" and "sync" in kwargs:
                    continue
                # Never wait: a zero timeout where block is the value under test.
                if "block" in kwargs:
                    kwargs["timeout"] = 0
                elif "timeout" in kwargs:
                    kwargs["block"] = False
                else:
                    kwargs["block"] = False
                try:
                    r = fn(*args, **kwargs)
                    if isinstance(r, postbox.Claim):
                        r.release()
                except ARG_ERRORS:
                    pass
                except RuntimeError as e:
                    assert str(e) == "weird"
                while True:  # keep it from filling up
                    try:
                        mb.recv(block=False)
                    except postbox.Empty:
                        break
