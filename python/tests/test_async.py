"""The asyncio helpers, built on fileno(): recv_async(), async for, selective receive while
other types wait, cancellation, removal."""
import asyncio
import os
import threading

import pytest

import postbox
from conftest import wait_for


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def test_recv_async_returns_a_queued_message_at_once(mb):
    mb.send(b"ready", 2)
    assert run(mb.recv_async()) == (b"ready", 2)


def test_recv_async_waits_without_blocking_the_loop(mb):
    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        t = asyncio.create_task(ticker())
        loop = asyncio.get_running_loop()
        # Another thread sends once the loop has gone round a good many times.
        threading.Thread(target=lambda: (wait_for(lambda: ticks > 100, "loop ticking"),
                                         mb.send(b"late", 4))).start()
        msg = await mb.recv_async()
        t.cancel()
        return msg, ticks, loop

    msg, ticks, _ = run(main())
    assert msg == (b"late", 4) and ticks > 100


def test_recv_async_selects_by_type_while_other_types_wait(mb):
    mb.send(b"other", 1)

    async def main():
        task = asyncio.create_task(mb.recv_async(5))
        await asyncio.sleep(0.01)
        assert not task.done()
        mb.send(b"wanted", 5)
        return await task

    assert run(main()) == (b"wanted", 5)
    assert mb.recv(block=False) == (b"other", 1)


def test_async_for_yields_until_removed(mb):
    for i in range(3):
        mb.send(bytes([i]), 1)

    async def main():
        got = []
        async for msg in mb:
            got.append(msg.data)
            if len(got) == 3:
                postbox.unlink(mb.name)
        return got

    assert run(main()) == [b"\x00", b"\x01", b"\x02"]


def test_cancelled_recv_async_takes_nothing(mb):
    async def main():
        task = asyncio.create_task(mb.recv_async())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    mb.send(b"still here")
    assert mb.recv(block=False).data == b"still here"


def test_messages_async_filters_by_type(mb):
    for t in (1, 2, 1, 2):
        mb.send(bytes([t]), t)

    async def main():
        got = []
        async for msg in mb.messages_async(2):
            got.append(msg.type)
            if len(got) == 2:
                break
        return got

    assert run(main()) == [2, 2]
    assert mb.stat().msgs == 2


def test_asyncio_loop_add_reader_on_fileno(mb):
    async def main():
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        loop.add_reader(mb.fileno(), lambda: ready.done() or ready.set_result(True))
        try:
            os.sched_yield()
            mb.send(b"x")
            return await ready
        finally:
            loop.remove_reader(mb.fileno())

    assert run(main()) is True


def test_import_postbox_does_not_import_asyncio():
    """asyncio is imported only by whoever uses it (it was 90 % of `import postbox`)."""
    import subprocess
    import sys

    code = "import sys, postbox; print('asyncio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.strip() == "False"
