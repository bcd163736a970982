"""Interoperability with C: a C program built against the library (python/tests/c_peer.c)
and the postbox command, in both directions, with types and binary payloads."""
import json
import os
import subprocess

import postbox
from conftest import tool

BINARY = bytes(range(256)) + b"\x00\x00end"


def peer(*args, **kw):
    return subprocess.run([tool("PBX_TEST_PEER", "c_peer")] + [str(a) for a in args],
                          check=True, capture_output=True, timeout=120, **kw)


def cli(*args, **kw):
    return subprocess.run([tool("PBX_TEST_CLI", "the postbox command")] + [str(a) for a in args],
                          check=True, capture_output=True, timeout=120, **kw)


def test_python_sends_c_receives_types_and_binary(mb):
    mb.send(b"skip me", 3)
    mb.send(BINARY, 7)
    out = peer("recv", mb.name, 7).stdout.decode().split()
    assert out == ["7", BINARY.hex()]
    assert mb.recv() == (b"skip me", 3)


def test_c_sends_python_receives_types_and_binary(mb):
    peer("send", mb.name, 4, BINARY.hex())
    peer("send", mb.name, 2, "00")
    assert mb.recv(-3) == (b"\x00", 2)
    assert mb.recv() == (BINARY, 4)


def test_producer_consumer_with_a_c_process_selecting_by_type(mb):
    """Python produces type 1, a C process reverses each and answers as type 2."""
    n = 200
    proc = subprocess.Popen([tool("PBX_TEST_PEER", "c_peer"), "echo", mb.name, str(n)])
    try:
        for i in range(n):
            payload = os.urandom(1 + i % 50)
            mb.send(payload, 1)
            assert mb.recv(2) == (payload[::-1], 2)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_python_sends_the_cli_receives(mb):
    mb.send(BINARY, 9)
    mb.send(b"text", 1)
    assert cli("recv", mb.name, "-t", 9).stdout == BINARY
    out = cli("recv", mb.name, "--json").stdout
    assert json.loads(out) == {"type": 1, "size": 4, "data": "text"}


def test_the_cli_sends_python_receives(mb):
    cli("send", mb.name, "-t", 6, input=BINARY)
    cli("send", mb.name, "hello")
    assert mb.recv(6) == (BINARY, 6)
    assert mb.recv() == (b"hello", 1)


def test_cli_sees_python_created_limits_and_python_sees_cli_created(name):
    with postbox.Mailbox(name, create=True, max_msgs=17) as mb:
        mb.send(b"x")
        out = cli("stat", name).stdout.decode()
        assert "1 of 17" in out
    postbox.unlink(name)
    cli("create", name, "--max-msgs", 33)
    with postbox.Mailbox(name) as mb:
        assert mb.stat().max_msgs == 33


def test_the_cli_removes_and_python_sees_removed(mb):
    cli("rm", mb.name)
    try:
        mb.send(b"x")
    except postbox.Removed:
        return
    raise AssertionError("send into a removed mailbox succeeded")


EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples")


def example(script, *args):
    import sys

    return subprocess.run([sys.executable, os.path.join(EXAMPLES, script)] + list(args),
                          check=True, capture_output=True, text=True, timeout=120).stdout


def test_example_lecture():
    out = example("lecture.py")
    assert "Received 252!" in out and "mailbox is gone" in out


def test_example_prodcons_c_consumer_takes_urgent_first():
    out = example("prodcons.py", tool("PBX_TEST_CLI", "the postbox command"))
    lines = [l.split() for l in out.splitlines() if l.startswith("    ")]
    assert [l[0] for l in lines] == ["1", "1", "2", "2", "2"]
    assert "Python picked type 7: result: 42" in out


def test_example_asyncio_service_answers_every_client():
    out = example("asyncio_service.py")
    for i in range(3):
        assert "client %d got: HELLO FROM CLIENT %d" % (i, i) in out
