"""The type stub (postbox/__init__.pyi) against the module: every name it declares exists, every
public name of the module is declared, the fields of Stat and Peer match, and every keyword
the stub gives a method is accepted by the method itself (so an editor or mypy that trusts the
stub is never told of an argument the C code rejects). Read with ast: mypy is not needed."""
import ast
import os

import pytest

import postbox

STUB = os.path.join(os.path.dirname(postbox.__file__), "__init__.pyi")


@pytest.fixture(scope="module")
def stub():
    with open(STUB) as f:
        return ast.parse(f.read())


def top_names(tree):
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign):
            names.add(node.target.id)
    return names


def classes(tree):
    return {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}


def members(cls):
    out = {}
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = node
        elif isinstance(node, ast.AnnAssign):
            out[node.target.id] = node
    return out


def test_the_stub_declares_every_public_name_and_nothing_else(stub):
    declared = top_names(stub)
    assert set(postbox.__all__) <= declared
    missing = [n for n in declared if not hasattr(postbox, n)]
    assert missing == []


def test_the_stub_declares_every_public_method_of_mailbox_and_claim(stub):
    cls = classes(stub)
    for name, runtime in (("Mailbox", postbox.Mailbox), ("Claim", postbox.Claim)):
        declared = members(cls[name])
        public = {n for n in dir(runtime) if not n.startswith("_")}
        assert public <= set(declared), name
        assert [n for n in declared if not hasattr(runtime, n)] == [], name


def test_stat_and_peer_fields_match(stub, mb):
    cls = classes(stub)
    st = mb.stat()
    assert len(members(cls["Stat"])) == postbox.Stat.n_fields
    for field in members(cls["Stat"]):
        getattr(st, field)
    assert len(members(cls["Peer"])) == postbox.Peer.n_fields
    peer = mb.peers()[0]
    for field in members(cls["Peer"]):
        getattr(peer, field)


# A value of the right kind for each parameter name the stub uses.
VALUES = {"data": b"x", "buffer": bytearray(16), "type": 1, "block": False, "timeout": None,
          "sync": False, "exclude": False, "truncate": False}


@pytest.mark.parametrize("method", ["send", "recv", "peek", "recv_into", "claim"])
def test_every_keyword_in_the_stub_is_accepted(stub, mb, method):
    fn = members(classes(stub)["Mailbox"])[method]
    args = fn.args
    names = [a.arg for a in args.args[1:]] + [a.arg for a in args.kwonlyargs]
    assert names, method
    mb.send(b"x", 1)
    kwargs = {n: VALUES[n] for n in names}
    try:
        result = getattr(postbox.Mailbox, method)(mb, **kwargs)
    except (postbox.Empty, postbox.Full):
        return  # accepted, then found nothing or no room: not a TypeError
    if method == "claim":
        result.release()


def test_positional_parameters_are_the_ones_the_stub_allows(stub, mb):
    """The stub's positional parameters (before *) can be passed by position."""
    fn = members(classes(stub)["Mailbox"])["send"]
    assert [a.arg for a in fn.args.args] == ["self", "data", "type"]
    mb.send(b"p", 3)
    assert mb.recv(3) == (b"p", 3)
    buf = bytearray(4)
    mb.send(b"q", 2)
    assert mb.recv_into(buf, 2) == (1, 2)
