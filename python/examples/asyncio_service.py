#!/usr/bin/python3
"""An asyncio service on a mailbox.

The service waits for requests with `async for` (built on Mailbox.fileno() and the event
loop, so it never blocks the loop), and answers each on the type the client asked for: a
request is "REPLY-TYPE:text", the answer is the text upper-cased. Alongside, a ticker task
shows that the loop stays free. Clients are ordinary blocking code in other threads (they
could as well be other processes, in any language). Once every client has its answer the
mailbox is removed, which ends the service's `async for`.
"""
import asyncio
import os
import threading

import postbox

REQUEST = 1
CLIENTS = 3


async def service(mb, served):
    async for msg in mb.messages_async(REQUEST):
        reply_type, _, text = msg.data.partition(b":")
        mb.send(text.upper(), int(reply_type))
        served.append(int(reply_type))
        print("service: answered client on type %d" % int(reply_type))
    print("service: the mailbox was removed, stopping")


async def ticker(stop):
    ticks = 0
    while not stop.is_set():
        ticks += 1
        await asyncio.sleep(0.001)
    print("ticker: %d ticks of the event loop while serving" % ticks)


def client(name, number, answers):
    with postbox.Mailbox(name) as mb:
        reply_type = 100 + number
        mb.send(b"%d:hello from client %d" % (reply_type, number), REQUEST)
        answers[number] = mb.recv(reply_type).data


async def main():
    name = "asyncio-svc-%d" % os.getpid()
    answers = {}
    served = []
    with postbox.Mailbox(name, create=True, exclusive=True) as mb:
        stop = asyncio.Event()
        tick = asyncio.create_task(ticker(stop))
        threads = [threading.Thread(target=client, args=(name, i, answers))
                   for i in range(CLIENTS)]
        for t in threads:
            t.start()
        serving = asyncio.create_task(service(mb, served))
        await asyncio.get_running_loop().run_in_executor(None, lambda: [t.join() for t in threads])
        mb.remove()  # every client has its answer: this ends the service's async for
        await serving
        stop.set()
        await tick
    for number in sorted(answers):
        print("client %d got: %s" % (number, answers[number].decode()))


asyncio.run(main())
