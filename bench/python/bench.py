#!/usr/bin/python3
"""make bench-python: postbox from Python against what Python programs use today.

Three scenarios, each with 16-byte messages, each run for four transports in the same run:
  call       one process sends a message and receives it back, in a loop (per-call cost)
  pingpong   two processes bounce a message: type 1 one way, type 2 back (round-trip latency)
  stream     one process sends, another receives, as fast as they can (throughput)
(the two processes of pingpong and stream are pinned to two different CPUs, when there are two)
and two more that compare the binding's batches with its single calls (same run, same pattern):
  call-batch     one process sends --batch messages, then receives them: send_many()+recv_many()
                 against as many send()s then recv()s (ns per message sent and received)
  stream-batch   as stream, the producer calling send_many() and the consumer recv_many()
transports:
  postbox          the binding (postbox.Mailbox)
  postbox-batch    the binding's send_many()/recv_many() (the batch cases only)
  sysv-kernel      the sysv_ipc module (Debian python3-sysv-ipc) on the kernel's queues
  sysv-postbox     the same sysv_ipc code with LD_PRELOAD=libpostbox-sysv.so
  mp-queue         multiprocessing.Queue (pipes, pickling and a feeder thread)

Each figure is the median of --repeat runs of a fresh worker process (so LD_PRELOAD applies
from its start); the transports take turns within each repetition, and each ratio is the
median of the ratios taken within one repetition, so that a load that comes and goes on a
shared machine weighs on every transport alike. Output: one machine-readable line per figure
("figure CASE TRANSPORT VALUE UNIT") followed by one with every run's value ("runs CASE
TRANSPORT V1 V2 ..."), then a table with the load average and the ratios against the issue's
targets. Every message is checked; the benchmark never judges speed by itself (it exits 0
whatever the ratios).

Usage: bench.py --preload build/sysv/libpostbox-sysv.so [--quick] [--repeat N]
                [--calls N] [--rounds N] [--stream N] [--batch N] [--no-batch]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

PAYLOAD = b"0123456789abcdef"  # 16 bytes
TRANSPORTS = ["postbox", "sysv-kernel", "sysv-postbox", "mp-queue"]
CASES = ["call", "pingpong", "stream"]
BATCH_TRANSPORTS = ["postbox", "postbox-batch"]
BATCH_CASES = ["call-batch", "stream-batch"]
BATCH = 32  # messages per batch (--batch); the default mailbox holds 4096


# ---- the transports, each as (send, recv, cleanup) factories -------------------------------
# open_pair() returns an object usable in both processes after fork(): a mailbox, a System V
# queue id, or two multiprocessing queues.

class PostboxT:
    def __init__(self):
        import postbox

        self.mb = postbox.Mailbox.private()

    def sender(self):
        send = self.mb.send
        return lambda data, t=1: send(data, t)

    def receiver(self):
        recv = self.mb.recv
        return lambda t=0: recv(t)

    def close(self):
        self.mb.close()


class SysvT:
    def __init__(self):
        import sysv_ipc

        self.q = sysv_ipc.MessageQueue(None, sysv_ipc.IPC_CREX, mode=0o600)

    def sender(self):
        send = self.q.send
        return lambda data, t=1: send(data, True, t)

    def receiver(self):
        receive = self.q.receive
        return lambda t=0: receive(True, t)

    def close(self):
        try:
            self.q.remove()
        except Exception:
            pass


class MpQueueT:
    """Two queues stand for the two types (a Queue has no selection by type)."""

    def __init__(self):
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self.queues = {1: ctx.Queue(), 2: ctx.Queue()}

    def sender(self):
        q = self.queues
        return lambda data, t=1: q[t].put(data)

    def receiver(self):
        q = self.queues
        return lambda t=0: q[t if t else 1].get()

    def flush(self):
        """A forked child must let the feeder thread write everything before it exits."""
        self.close()

    def close(self):
        for q in self.queues.values():
            q.close()
            q.join_thread()


def flush(tr):
    if hasattr(tr, "flush"):
        tr.flush()


def make_transport(name):
    if name.startswith("postbox"):
        return PostboxT()
    if name.startswith("sysv"):
        return SysvT()
    return MpQueueT()


# ---- the scenarios ----------------------------------------------------------------------------

# The two processes of a two-process scenario run on two different CPUs, for every transport
# (as the C benchmark's "two processes on two CPUs", docs/performance.md): left to itself the
# scheduler tends to wake a receiver on its sender's CPU, where neither can run while the other
# does, and the figure then measures the scheduler more than the transport.
CPUS = sorted(os.sched_getaffinity(0))


def pin(which):
    if len(CPUS) >= 2:
        os.sched_setaffinity(0, {CPUS[which]})


def fork_run(fn):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            pin(1)
            fn()
            code = 0
        finally:
            os._exit(code)
    return pid


def reap(pid):
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("bench: the other process failed")


def case_call(tr, n):
    send, recv = tr.sender(), tr.receiver()
    for _ in range(min(n // 10, 10000)):
        send(PAYLOAD)
        recv()
    t0 = time.perf_counter()
    for _ in range(n):
        send(PAYLOAD)
        if recv()[0] != PAYLOAD:
            raise SystemExit("bench: wrong payload")
    t1 = time.perf_counter()
    return (t1 - t0) / n * 1e9, "ns/call"


def case_call_mp(tr, n):
    send, recv = tr.sender(), tr.receiver()
    t0 = time.perf_counter()
    for _ in range(n):
        send(PAYLOAD)
        if recv() != PAYLOAD:
            raise SystemExit("bench: wrong payload")
    t1 = time.perf_counter()
    return (t1 - t0) / n * 1e9, "ns/call"


def case_pingpong(tr, n):
    mp = isinstance(tr, MpQueueT)

    def echo():
        send, recv = tr.sender(), tr.receiver()
        for _ in range(n + 100):
            m = recv(1)
            send(m if mp else m[0], 2)
        flush(tr)

    pid = fork_run(echo)
    pin(0)
    send, recv = tr.sender(), tr.receiver()
    for _ in range(100):
        send(PAYLOAD, 1)
        recv(2)
    t0 = time.perf_counter()
    for _ in range(n):
        send(PAYLOAD, 1)
        m = recv(2)
        if (m if mp else m[0]) != PAYLOAD:
            raise SystemExit("bench: wrong payload")
    t1 = time.perf_counter()
    reap(pid)
    return (t1 - t0) / n * 1e6, "us/round-trip"


def case_stream(tr, n):
    mp = isinstance(tr, MpQueueT)

    def produce():
        send = tr.sender()
        for _ in range(n):
            send(PAYLOAD, 1)
        flush(tr)

    recv = tr.receiver()
    pin(0)
    t0 = time.perf_counter()
    pid = fork_run(produce)
    for _ in range(n):
        m = recv(1)
        if (m if mp else m[0]) != PAYLOAD:
            raise SystemExit("bench: wrong payload")
    t1 = time.perf_counter()
    reap(pid)
    return n / (t1 - t0) / 1e6, "M msg/s"


def case_call_batch(tr, n, many):
    """n messages in rounds of BATCH: all sent, then all received."""
    mb = tr.mb
    batch = [PAYLOAD] * BATCH
    expect = [(PAYLOAD, 1)] * BATCH
    rounds = max(n // BATCH, 1)
    send, recv, send_many, recv_many = mb.send, mb.recv, mb.send_many, mb.recv_many
    for warm in (True, False):
        t0 = time.perf_counter()
        for _ in range(rounds // 10 if warm else rounds):
            if many:
                if send_many(batch) != BATCH or recv_many(BATCH) != expect:
                    raise SystemExit("bench: wrong batch")
            else:
                for m in batch:
                    send(m)
                for _ in batch:
                    if recv()[0] != PAYLOAD:
                        raise SystemExit("bench: wrong payload")
        t1 = time.perf_counter()
    return (t1 - t0) / (rounds * BATCH) * 1e9, "ns/message"


def case_stream_batch(tr, n, many):
    mb = tr.mb
    batch = [PAYLOAD] * BATCH
    n = max(n // BATCH, 1) * BATCH

    def produce():
        if many:
            for _ in range(n // BATCH):
                mb.send_many(batch)
        else:
            for _ in range(n):
                mb.send(PAYLOAD)

    pin(0)
    t0 = time.perf_counter()
    pid = fork_run(produce)
    got = 0
    if many:
        while got < n:
            ms = mb.recv_many(BATCH)
            for m in ms:
                if m[0] != PAYLOAD:
                    raise SystemExit("bench: wrong payload")
            got += len(ms)
    else:
        for _ in range(n):
            if mb.recv()[0] != PAYLOAD:
                raise SystemExit("bench: wrong payload")
    t1 = time.perf_counter()
    reap(pid)
    return n / (t1 - t0) / 1e6, "M msg/s"


def worker(transport, case, n):
    tr = make_transport(transport)
    try:
        if case in BATCH_CASES:
            fn = case_call_batch if case == "call-batch" else case_stream_batch
            value, unit = fn(tr, n, transport == "postbox-batch")
            print("RESULT %r %s" % (value, unit))
            return
        if case == "call":
            fn = case_call_mp if isinstance(tr, MpQueueT) else case_call
        else:
            fn = case_pingpong if case == "pingpong" else case_stream
        value, unit = fn(tr, n)
    finally:
        tr.close()
    print("RESULT %r %s" % (value, unit))


# ---- the driver ---------------------------------------------------------------------------------

def run_worker(args, transport, case, n, workdir):
    env = dict(os.environ, POSTBOX_DIR=workdir)
    env.pop("LD_PRELOAD", None)
    if transport == "sysv-postbox":
        env["LD_PRELOAD"] = args.preload
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", transport, case,
                          str(n), str(args.batch)], env=env, check=True, capture_output=True, text=True,
                         timeout=900).stdout
    line = [l for l in out.splitlines() if l.startswith("RESULT ")][-1]
    _, value, unit = line.split(" ", 2)
    return float(value), unit


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        global BATCH
        BATCH = int(sys.argv[5])
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preload", required=True, help="path of libpostbox-sysv.so")
    p.add_argument("--quick", action="store_true", help="small counts (a smoke test)")
    p.add_argument("--repeat", type=int, default=None, help="runs per figure (median)")
    p.add_argument("--calls", type=int, default=None)
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--stream", type=int, default=None)
    p.add_argument("--batch", type=int, default=BATCH, help="messages per batch (batch cases)")
    p.add_argument("--no-batch", action="store_true", help="leave out the batch cases")
    args = p.parse_args()
    try:
        import sysv_ipc  # noqa: F401
    except ImportError:
        raise SystemExit("bench-python: sysv_ipc is missing (Debian: apt-get install python3-sysv-ipc)")
    if not os.path.exists(args.preload):
        raise SystemExit("bench-python: %s is missing (run make first)" % args.preload)
    counts = {"call": 200000, "pingpong": 20000, "stream": 300000}
    if args.quick:
        counts = {"call": 20000, "pingpong": 2000, "stream": 20000}
    if not 1 <= args.batch <= 4096:
        raise SystemExit("bench-python: --batch must be 1 to 4096 (the mailbox's capacity)")
    for case, opt in (("call", args.calls), ("pingpong", args.rounds), ("stream", args.stream)):
        if opt:
            counts[case] = opt
    repeat = args.repeat or (1 if args.quick else 5)
    counts["call-batch"] = counts["call"]
    counts["stream-batch"] = counts["stream"]
    plan = [(case, TRANSPORTS) for case in CASES]
    if not args.no_batch:
        plan += [(case, BATCH_TRANSPORTS) for case in BATCH_CASES]

    # The transports take turns within each repetition, so that the load of a shared machine,
    # which changes from second to second, weighs on all of them alike; a ratio is also taken
    # within each repetition (one turn of every transport) and its median reported.
    results = {}
    runs = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="pbx-bench-py.") as workdir:
        for case, transports in plan:
            for _ in range(repeat):
                for transport in transports:
                    runs.setdefault((case, transport), []).append(
                        run_worker(args, transport, case, counts[case], workdir))
            for transport in transports:
                value = statistics.median(v for v, _ in runs[case, transport])
                unit = runs[case, transport][0][1]
                results[case, transport] = value
                print("figure %s %s %.4g %s" % (case, transport, value, unit.replace(" ", "_")),
                      flush=True)
                print("runs %s %s %s" % (case, transport, " ".join(
                    "%.4g" % v for v, _ in runs[case, transport])), flush=True)
    load_after = os.getloadavg()

    def ratio(case, num, den):
        """The median over the repetitions of num / den, each taken in one repetition."""
        return statistics.median(a[0] / b[0] for a, b in zip(runs[case, num], runs[case, den]))

    units = {"call": "ns per send+recv", "pingpong": "us per round trip",
             "stream": "M msg/s"}
    print()
    print("Python, 16-byte messages, median of %d runs (%s); load average %.1f before, %.1f "
          "after, on %d CPUs" % (repeat, ", ".join("%s %d" % (c, counts[c]) for c in CASES),
                                 load_before[0], load_after[0], os.cpu_count() or 0))
    print("%-10s %-18s %12s %12s %12s %12s" % ("case", "unit", *TRANSPORTS))
    for case in CASES:
        print("%-10s %-18s %12.4g %12.4g %12.4g %12.4g" % (
            case, units[case], *[results[case, t] for t in TRANSPORTS]))
    print()
    print("ratios: the median of the ratios taken within each repetition")
    print("ping-pong:  postbox %.1fx faster than sysv_ipc on the kernel (target 20x); "
          "%.2fx sysv_ipc under libpostbox-sysv.so" % (
              ratio("pingpong", "sysv-kernel", "postbox"),
              ratio("pingpong", "sysv-postbox", "postbox")))
    print("streaming:  postbox %.1fx multiprocessing.Queue (target 10x)" % (
        ratio("stream", "postbox", "mp-queue")))
    print("call:       postbox %.1fx faster than sysv_ipc on the kernel" % (
        ratio("call", "sysv-kernel", "postbox")))
    print("sysv_ipc under libpostbox-sysv.so against the kernel: call %.1fx, ping-pong %.1fx, "
          "stream %.1fx" % (ratio("call", "sysv-kernel", "sysv-postbox"),
                            ratio("pingpong", "sysv-kernel", "sysv-postbox"),
                            ratio("stream", "sysv-postbox", "sysv-kernel")))
    if args.no_batch:
        return
    print()
    print("batches of %d, 16-byte messages, median of %d runs:" % (args.batch, repeat))
    print("%-14s %-18s %14s %14s" % ("case", "unit", *BATCH_TRANSPORTS))
    print("%-14s %-18s %14.4g %14.4g" % ("call-batch", "ns per message", *[
        results["call-batch", t] for t in BATCH_TRANSPORTS]))
    print("%-14s %-18s %14.4g %14.4g" % ("stream-batch", "M msg/s", *[
        results["stream-batch", t] for t in BATCH_TRANSPORTS]))
    print("call-batch:   send_many+recv_many %.2fx faster per message than send+recv" % (
        ratio("call-batch", "postbox", "postbox-batch")))
    print("stream-batch: send_many/recv_many %.2fx the throughput of send/recv" % (
        ratio("stream-batch", "postbox-batch", "postbox")))

if __name__ == "__main__":
    main()
