#!/usr/bin/env python3
"""multiprocessing.Manager().dict() get / set / update ops/s from 1, 2 and
4 processes: the baseline ShmDict is compared against (benches/dict.rs).

update = the seeds' pattern done safely: `with lock: d[k] = d[k] + 1`
using a Manager lock (a Manager dict has no atomic read-modify-write).

Run: python3 benches/python_manager_dict.py [ops_per_process [OP PROCS]]
With OP (get, set or update) and PROCS, runs that one case and prints one
machine-readable line `ops_per_s=...` (benches/dict.rs does this to
interleave Python with ShmDict); otherwise prints the full table.
"""
import multiprocessing as mp
import sys
import time

KEYS = 1000


def key(i):
    return "key-%06d" % (i % KEYS)


def worker(d, lock, op, w, n, start, out):
    start.wait()
    t0 = time.perf_counter()
    for i in range(n):
        k = key(i * 7 + w * 331)
        if op == "get":
            d[k]
        elif op == "set":
            d[k] = i
        else:
            with lock:
                d[k] = d[k] + 1
    out.put(time.perf_counter() - t0)


def run(manager, op, procs, n):
    d = manager.dict({key(i): 0 for i in range(KEYS)})
    lock = manager.Lock()
    start = mp.Event()
    out = mp.Queue()
    ps = [mp.Process(target=worker, args=(d, lock, op, w, n, start, out)) for w in range(procs)]
    for p in ps:
        p.start()
    time.sleep(0.2)
    t0 = time.perf_counter()
    start.set()
    for p in ps:
        p.join()
    wall = time.perf_counter() - t0
    return procs * n / wall


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    if len(sys.argv) > 3:
        op, procs = sys.argv[2], int(sys.argv[3])
        with mp.Manager() as m:
            run(m, op, procs, n)  # warm-up: the manager's first requests are slower
            print("ops_per_s=%.1f" % run(m, op, procs, n))
        return
    with mp.Manager() as m:
        print("| op | processes | ops/s (aggregate) | µs/op per process |")
        print("|---|---|---|---|")
        for op in ("get", "set", "update"):
            for procs in (1, 2, 4):
                ops = run(m, op, procs, n if op != "update" else n // 3)
                print("| %s | %d | %.0f | %.1f |" % (op, procs, ops, procs / ops * 1e6))
                sys.stdout.flush()


if __name__ == "__main__":
    main()
