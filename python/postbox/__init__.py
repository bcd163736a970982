"""postbox: typed message mailboxes between processes on one Linux host.

A thin Python face over the postbox C library (the C extension ``postbox._postbox``, which
links the library statically). The guide is docs/python.md; in short::

    import postbox

    with postbox.Mailbox("jobs", create=True) as mb:
        mb.send(b"hello", type=2)
        data, mtype = mb.recv()          # a Message; also msg.data, msg.type

Errors are OSError subclasses with ``errno`` set: Empty (also queue.Empty and
BlockingIOError), Full (also queue.Full), RecvTimeout/SendTimeout (also TimeoutError),
Removed (EIDRM), ReadOnly (EBADF: a call a readonly=True handle may not make; also
PermissionError), and the builtin FileNotFoundError, FileExistsError, PermissionError.
"""

import sys as _sys

from . import _postbox
from ._postbox import (  # noqa: F401  (re-exported)
    BLOCK,
    DROP_NEWEST,
    DROP_OLDEST,
    DURABLE_ALWAYS,
    DURABLE_BATCH,
    DURABLE_NONE,
    NAME_MAX,
    PEER_NOTIFY,
    PEER_OPENED,
    PEER_RECEIVED,
    PEER_SENT,
    PEER_WATCH,
    Claim,
    Empty,
    Full,
    Loan,
    Message,
    Peer,
    ReadOnly,
    RecvTimeout,
    Removed,
    SendTimeout,
    Stat,
    library_version,
    strerror,
    unlink,
)

__version__ = library_version

__all__ = [
    "Mailbox", "Message", "Claim", "Loan", "Stat", "Peer",
    "Empty", "Full", "RecvTimeout", "SendTimeout", "Removed", "ReadOnly",
    "unlink", "strerror",
    "BLOCK", "DROP_NEWEST", "DROP_OLDEST",
    "DURABLE_ALWAYS", "DURABLE_BATCH", "DURABLE_NONE",
    "PEER_OPENED", "PEER_SENT", "PEER_RECEIVED", "PEER_NOTIFY", "PEER_WATCH",
    "NAME_MAX",
]

# While the readiness descriptor says "a message is there" but none matches a selective
# receive (messages of other types wait), recv_async() polls with this back-off instead of
# spinning on the level-triggered descriptor.
_SELECTIVE_POLL_MIN = 0.001
_SELECTIVE_POLL_MAX = 0.05


class Mailbox(_postbox.Mailbox):
    __doc__ = _postbox.Mailbox.__doc__
    __slots__ = ()

    async def recv_async(self, type=0, *, exclude=False, truncate=False):
        """Receive without blocking the event loop: ``await mb.recv_async()``.

        Waits on fileno() with ``loop.add_reader`` and takes the message with
        ``recv(block=False)``. Raises Removed when the mailbox is removed. Cancelling the
        awaiting task leaves no message taken.
        """
        # asyncio is imported by whoever runs an event loop; `import postbox` does not import
        # it (that took 65 ms, ten times the rest of the import).
        asyncio = _sys.modules.get("asyncio") or __import__("asyncio")
        loop = asyncio.get_running_loop()
        fd = self.fileno()
        backoff = _SELECTIVE_POLL_MIN
        while True:
            try:
                return self.recv(type, block=False, exclude=exclude, truncate=truncate)
            except Empty:
                pass
            ready = loop.create_future()

            def wake(fut=ready):
                if not fut.done():
                    fut.set_result(None)

            loop.add_reader(fd, wake)
            try:
                await ready
            finally:
                loop.remove_reader(fd)
            if type == 0:
                continue
            # Readable but perhaps only for other types: try, then back off if it missed.
            try:
                return self.recv(type, block=False, exclude=exclude, truncate=truncate)
            except Empty:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _SELECTIVE_POLL_MAX)

    async def _aiter(self, type, exclude, truncate):
        while True:
            try:
                yield await self.recv_async(type, exclude=exclude, truncate=truncate)
            except Removed:
                return

    def __aiter__(self):
        """``async for msg in mb:`` receives messages until the mailbox is removed."""
        return self._aiter(0, False, False)

    def messages_async(self, type=0, *, exclude=False, truncate=False):
        """An async iterator over the messages that match, until the mailbox is removed."""
        return self._aiter(type, exclude, truncate)
