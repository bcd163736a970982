# Type hints for the postbox package (the C extension postbox._postbox and its Python part).
import queue
from collections.abc import AsyncIterator, Iterable, Iterator
from types import TracebackType
from typing import Any, NamedTuple, Optional, Tuple, Type, Union

from typing_extensions import Buffer, Self

BLOCK: int
DROP_NEWEST: int
DROP_OLDEST: int
DURABLE_ALWAYS: int
DURABLE_BATCH: int
DURABLE_NONE: int
PEER_OPENED: int
PEER_SENT: int
PEER_RECEIVED: int
PEER_NOTIFY: int
PEER_WATCH: int
NAME_MAX: int
library_version: str
__version__: str

class Empty(BlockingIOError, queue.Empty): ...
class Full(BlockingIOError, queue.Full): ...
class RecvTimeout(Empty, TimeoutError): ...
class SendTimeout(Full, TimeoutError): ...
class Removed(OSError): ...
class ReadOnly(PermissionError): ...

class Message(Tuple[bytes, int]):
    @property
    def data(self) -> bytes: ...
    @property
    def type(self) -> int: ...

class Stat(NamedTuple):
    msgs: int
    bytes: int
    max_msgs: int
    max_bytes: int
    max_msg_size: int
    overflow: int
    mode: int
    uid: int
    gid: int
    last_send_pid: int
    last_recv_pid: int
    last_send_time: Optional[float]
    last_recv_time: Optional[float]
    sent: int
    received: int
    dropped: int
    repairs: int
    send_waiters: int
    recv_waiters: int
    region_size: int
    claimed: int

class Peer(NamedTuple):
    pid: int
    roles: int
    since: float
    handles: int
    notify_signal: int

class Claim:
    @property
    def data(self) -> bytes: ...
    @property
    def type(self) -> int: ...
    @property
    def id(self) -> int: ...
    @property
    def settled(self) -> bool: ...
    def ack(self) -> None: ...
    def release(self) -> None: ...
    def __enter__(self) -> Claim: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

class Loan:
    @property
    def data(self) -> Union[memoryview, bytes]: ...
    @property
    def type(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int) -> memoryview: ...
    def close(self) -> None: ...
    def __enter__(self) -> Loan: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

class Mailbox:
    def __new__(
        cls,
        name: str,
        *,
        create: bool = ...,
        exclusive: bool = ...,
        mode: int = ...,
        max_msgs: Optional[int] = ...,
        max_bytes: Optional[int] = ...,
        max_msg_size: Optional[int] = ...,
        overflow: Optional[int] = ...,
        durability: Optional[int] = ...,
        readonly: bool = ...,
    ) -> Self: ...
    @classmethod
    def private(
        cls,
        *,
        mode: int = ...,
        max_msgs: Optional[int] = ...,
        max_bytes: Optional[int] = ...,
        max_msg_size: Optional[int] = ...,
        overflow: Optional[int] = ...,
    ) -> Self: ...
    @property
    def name(self) -> Optional[str]: ...
    @property
    def closed(self) -> bool: ...
    @property
    def max_msg_size(self) -> int: ...
    @property
    def readonly(self) -> bool: ...
    def send(
        self,
        data: Buffer,
        type: int = ...,
        *,
        block: bool = ...,
        timeout: Optional[float] = ...,
        sync: bool = ...,
    ) -> int: ...
    def recv(
        self,
        type: int = ...,
        *,
        block: bool = ...,
        timeout: Optional[float] = ...,
        exclude: bool = ...,
        truncate: bool = ...,
    ) -> Message: ...
    def peek(
        self,
        type: int = ...,
        *,
        block: bool = ...,
        timeout: Optional[float] = ...,
        exclude: bool = ...,
        truncate: bool = ...,
    ) -> Message: ...
    def recv_into(
        self,
        buffer: Buffer,
        type: int = ...,
        *,
        block: bool = ...,
        timeout: Optional[float] = ...,
        exclude: bool = ...,
        truncate: bool = ...,
    ) -> Tuple[int, int]: ...
    def claim(
        self,
        type: int = ...,
        *,
        block: bool = ...,
        timeout: Optional[float] = ...,
        exclude: bool = ...,
        truncate: bool = ...,
    ) -> Claim: ...
    def recv_loan(
        self,
        type: int = ...,
        *,
        block: bool = ...,
        exclude: bool = ...,
    ) -> Loan: ...
    def send_many(
        self,
        messages: Iterable[Union[Buffer, Tuple[Buffer, int]]],
        type: int = ...,
        *,
        block: bool = ...,
        timeout: Optional[float] = ...,
    ) -> int: ...
    def recv_many(
        self,
        max: int,
        type: int = ...,
        *,
        block: bool = ...,
        timeout: Optional[float] = ...,
        exclude: bool = ...,
        truncate: bool = ...,
    ) -> list[Message]: ...
    def stat(self) -> Stat: ...
    def peers(self) -> list[Peer]: ...
    def notify(self, signal: int, value: int = ...) -> None: ...
    def fileno(self) -> int: ...
    def remove(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...
    def __iter__(self) -> Iterator[Message]: ...
    def __next__(self) -> Message: ...
    async def recv_async(
        self, type: int = ..., *, exclude: bool = ..., truncate: bool = ...
    ) -> Message: ...
    def __aiter__(self) -> AsyncIterator[Message]: ...
    def messages_async(
        self, type: int = ..., *, exclude: bool = ..., truncate: bool = ...
    ) -> AsyncIterator[Message]: ...

def unlink(name: str) -> None: ...
def strerror(errno: int) -> str: ...
