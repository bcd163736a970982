#!/usr/bin/python3
"""A Python producer and a C consumer, with selective receive.

The producer (this process) queues jobs of two types, urgent (1) and normal (2), in the
order they come. The consumer is a C program, the postbox command, asked for the lowest type
up to 2 first (msgrcv's negative type: `postbox recv -t -2`), so it takes every urgent job
before any normal one, whatever the arrival order. Then the roles turn: the C side sends
results of type 7 and Python picks them out from among other traffic.

Usage: prodcons.py [PATH-OF-postbox]   (default: build/tools/postbox, then $PATH)
"""
import os
import shutil
import subprocess
import sys

import postbox

cli = sys.argv[1] if len(sys.argv) > 1 else None
if cli is None:
    here = os.path.dirname(os.path.abspath(__file__))
    built = os.path.join(here, "..", "..", "build", "tools", "postbox")
    cli = built if os.path.exists(built) else shutil.which("postbox")
if cli is None:
    sys.exit("prodcons.py: the postbox command is not built (run make)")

name = "prodcons-py-%d" % os.getpid()
with postbox.Mailbox(name, create=True, exclusive=True) as mb:
    try:
        jobs = [(2, "normal job 1"), (1, "URGENT job A"), (2, "normal job 2"),
                (1, "URGENT job B"), (2, "normal job 3")]
        for mtype, text in jobs:
            mb.send(text.encode(), mtype)
        # The C consumer: lowest type first, one line per job, with its type.
        out = subprocess.run([cli, "recv", name, "-t", "-2", "-n", str(len(jobs)), "--lines",
                              "--show-type"], check=True, capture_output=True, text=True).stdout
        print("C consumer took, in this order:")
        for line in out.splitlines():
            print("   ", line.replace("\t", "  "))

        # The other way: C sends a result (type 7) among noise (type 3); Python selects it.
        subprocess.run([cli, "send", name, "-t", "3", "noise"], check=True)
        subprocess.run([cli, "send", name, "-t", "7", "result: 42"], check=True)
        data, mtype = mb.recv(7)
        print("Python picked type %d: %s (left behind: %d message)"
              % (mtype, data.decode(), mb.stat().msgs))
    finally:
        mb.remove()
