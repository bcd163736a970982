#!/usr/bin/python3
"""The lecture's last message-passing program, in Python.

A parent makes a private mailbox (System V's msgget(IPC_PRIVATE)) and forks. The parent
sends a message of type 42 carrying the number 252; the child receives type 42, prints
"Received 252!" and removes the mailbox (msgctl(IPC_RMID)). The parent waits for the child,
then shows that the removal took effect: its next send raises postbox.Removed.
"""
import os
import struct
import sys

import postbox

LECTURE_TYPE = 42

mb = postbox.Mailbox.private()
pid = os.fork()
if pid == 0:
    data, _ = mb.recv(LECTURE_TYPE)
    print("Received %d!" % struct.unpack("i", data))
    mb.remove()
    os._exit(0)

mb.send(struct.pack("i", 252), LECTURE_TYPE)
_, status = os.waitpid(pid, 0)
try:
    mb.send(b"too late", LECTURE_TYPE)
except postbox.Removed as e:
    print("parent: the mailbox is gone (%s)" % e.strerror)
mb.close()
sys.exit(os.waitstatus_to_exitcode(status))
