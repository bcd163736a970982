"""Across processes and signals: a private mailbox shared after os.fork(), ping-pong between
two processes, removal seen by a waiter in another process, Ctrl-C (SIGINT) during a blocking
receive raising KeyboardInterrupt, and a signal handler that does not raise letting the wait
resume (PEP 475)."""
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

import postbox
from conftest import tool, wait_for


@pytest.fixture
def run_child():
    """Forks; the child runs fn() and exits 0 if it returns, 1 if it raises. Children still
    running when the test ends (it failed) are killed and reaped."""
    pids = []

    def start(fn):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                fn()
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
        return pid

    yield start
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def exit_code(pid):
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_private_mailbox_is_shared_with_a_forked_child(run_child):
    with postbox.Mailbox.private() as mb:
        def child():
            for i in range(1, 101):
                mb.send(i.to_bytes(2, "little"), type=1 + i % 3)
            assert mb.recv(9) == (b"from parent", 9)
            mb.send(b"bye", 5)

        pid = run_child(child)
        got = [mb.recv(2) for _ in range(34)]  # selective receive of one type across fork
        assert [int.from_bytes(d, "little") for d, _ in got] == list(range(1, 101, 3))
        mb.send(b"from parent", 9)
        assert mb.recv(5) == (b"bye", 5)
        assert exit_code(pid) == 0
        assert mb.stat().msgs == 66


def test_ping_pong_between_two_processes(mb, run_child):
    rounds = 2000

    def echo():
        with postbox.Mailbox(mb.name) as box:
            for _ in range(rounds):
                data, t = box.recv(1)
                box.send(data, 2)

    pid = run_child(echo)
    for i in range(rounds):
        payload = i.to_bytes(4, "little")
        mb.send(payload, 1)
        assert mb.recv(2) == (payload, 2)
    assert exit_code(pid) == 0


def test_removal_by_another_process_wakes_a_waiter_with_removed(mb, run_child):
    def waiter():
        with postbox.Mailbox(mb.name) as box:
            try:
                box.recv()
            except postbox.Removed:
                return
            raise AssertionError("recv returned")

    pid = run_child(waiter)
    wait_for(lambda: mb.stat().recv_waiters == 1, "child waiting")
    mb.remove()
    assert exit_code(pid) == 0


def test_sigint_during_blocking_recv_raises_keyboard_interrupt(mb):
    code = textwrap.dedent("""
        import sys, postbox
        mb = postbox.Mailbox(sys.argv[1])
        try:
            mb.recv()
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
            sys.exit(0)
        print("recv returned", flush=True)
        sys.exit(1)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, mb.name], stdout=subprocess.PIPE)
    try:
        wait_for(lambda: mb.stat().recv_waiters == 1, "child blocked in recv")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out.decode().strip() == "KeyboardInterrupt"
    assert proc.returncode == 0
    assert mb.stat().recv_waiters == 0


def test_signal_handler_runs_and_the_wait_resumes(mb):
    """EINTR never surfaces: the handler runs in the main thread, then recv() waits on."""
    handled = []
    old = signal.signal(signal.SIGUSR1, lambda s, f: handled.append(s))
    main = threading.get_ident()

    def poker():
        wait_for(lambda: mb.stat().recv_waiters == 1, "main thread waiting")
        signal.pthread_kill(main, signal.SIGUSR1)
        wait_for(lambda: handled and mb.stat().recv_waiters == 1, "handler ran, wait resumed")
        mb.send(b"after the signal", 3)

    t = threading.Thread(target=poker)
    t.start()
    try:
        msg = mb.recv(3, timeout=120)
    finally:
        t.join()
        signal.signal(signal.SIGUSR1, old)
    assert msg == (b"after the signal", 3)
    assert handled == [signal.SIGUSR1]


def test_signal_handler_exception_propagates_out_of_recv(mb):
    class Stop(Exception):
        pass

    def handler(s, f):
        raise Stop()

    old = signal.signal(signal.SIGUSR2, handler)
    main = threading.get_ident()

    def poker():
        wait_for(lambda: mb.stat().recv_waiters == 1, "main thread waiting")
        signal.pthread_kill(main, signal.SIGUSR2)

    t = threading.Thread(target=poker)
    t.start()
    try:
        with pytest.raises(Stop):
            mb.recv()
    finally:
        t.join()
        signal.signal(signal.SIGUSR2, old)
    assert mb.stat().recv_waiters == 0


def test_timed_recv_resumes_with_the_time_left_after_a_signal(mb):
    handled = []
    old = signal.signal(signal.SIGUSR1, lambda s, f: handled.append(s))
    main = threading.get_ident()

    def poker():
        wait_for(lambda: mb.stat().recv_waiters == 1, "main thread waiting")
        signal.pthread_kill(main, signal.SIGUSR1)

    t = threading.Thread(target=poker)
    t.start()
    try:
        with pytest.raises(postbox.RecvTimeout):
            mb.recv(timeout=0.5)
    finally:
        t.join()
        signal.signal(signal.SIGUSR1, old)
    assert handled == [signal.SIGUSR1]


def test_timed_claim_resumes_after_a_signal_and_takes_a_message_sent_meanwhile(mb):
    """claim(timeout=...) waits in pbx_timedclaim: a handler that does not raise lets it wait
    on, and a message sent while it waits is claimed (not merely seen) by it."""
    handled = []
    old = signal.signal(signal.SIGUSR1, lambda s, f: handled.append(s))
    main = threading.get_ident()

    def poker():
        wait_for(lambda: mb.stat().recv_waiters == 1, "main thread waiting")
        signal.pthread_kill(main, signal.SIGUSR1)
        wait_for(lambda: handled and mb.stat().recv_waiters == 1, "handler ran, wait resumed")
        mb.send(b"job", 6)

    t = threading.Thread(target=poker)
    t.start()
    try:
        c = mb.claim(6, timeout=120)
    finally:
        t.join()
        signal.signal(signal.SIGUSR1, old)
    assert (c.data, c.type) == (b"job", 6)
    assert handled == [signal.SIGUSR1]
    assert mb.stat().claimed == 1
    c.ack()
    assert mb.stat().claimed == 0 and mb.stat().msgs == 0


@pytest.mark.parametrize("max_msg_size", [64, 65536])
def test_a_blocking_call_waits_for_a_stopped_lock_holder_instead_of_failing(name, max_msg_size):
    """The first attempt is made with PBX_NOWAIT, which gives up (-EAGAIN) when the receive
    lock's holder is stopped; a call that may block must wait for the holder instead (it
    raised Empty before). Both receive paths: a small mailbox's and a large one's."""
    import time

    mb = postbox.Mailbox(name, create=True, max_msg_size=max_msg_size)
    mb.send(b"first!", 3)  # for the holder
    mb.send(b"second", 4)  # for us
    holder = subprocess.Popen([tool("PBX_TEST_HOLDER", "c_holder"), name])
    continued = []
    try:
        _, status = os.waitpid(holder.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), "the holder did not stop inside its receive"

        def resume():
            time.sleep(0.5)  # let the main thread reach the lock first (not an assertion)
            continued.append(True)
            os.kill(holder.pid, signal.SIGCONT)

        t = threading.Thread(target=resume)
        t.start()
        try:
            msg = mb.recv(4)
        finally:
            t.join()
        assert msg == (b"second", 4)
        assert continued == [True]
        assert holder.wait(timeout=120) == 0
        # The same for a claim.
        mb.send(b"third!", 5)
        mb.send(b"fourth", 6)
        holder = subprocess.Popen([tool("PBX_TEST_HOLDER", "c_holder"), name])
        _, status = os.waitpid(holder.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status)
        continued.clear()
        t = threading.Thread(target=resume)
        t.start()
        try:
            c = mb.claim(6)
        finally:
            t.join()
        assert (c.data, c.type) == (b"fourth", 6)
        c.ack()
        assert holder.wait(timeout=120) == 0
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGCONT)
            holder.kill()
            holder.wait()
        mb.close()


def test_close_in_a_forked_child_is_not_held_up_by_a_parent_threads_wait(mb, run_child):
    """A parent thread waits in recv() when the process forks: that call does not exist in
    the child, so the child's close() must release the inherited handle at once."""
    got = []
    t = threading.Thread(target=lambda: got.append(mb.recv(7)))
    t.start()
    wait_for(lambda: mb.stat().recv_waiters == 1, "parent thread waiting")

    # The mailbox's file (docs/cli.md: POSTBOX_DIR/pbx.NAME), found in the maps by inode.
    ino = str(os.stat(os.path.join(os.environ["POSTBOX_DIR"], "pbx." + mb.name)).st_ino)

    def mapped():
        with open("/proc/self/maps") as f:
            return [line for line in f if len(line.split()) > 4 and line.split()[4] == ino]

    def child():
        assert mapped() != []
        mb.close()
        assert mapped() == []  # unmapped at once: pbx_close() ran

    pid = run_child(child)
    code = exit_code(pid)
    mb.send(b"release the waiter", 7)
    t.join()
    assert code == 0
    assert got == [(b"release the waiter", 7)]
