#!/usr/bin/env python3
"""Peer measurement for benches/spawn.rs: multiprocessing.Process start+join.

Usage: python_process.py ROUNDS [pinned]
Prints one line per start method: `python_<method> median_us=<x> min_us=<y>`.
"""
import multiprocessing as mp
import os
import sys
import time


def nop():
    pass


def measure(method, rounds):
    ctx = mp.get_context(method)
    ctx.Process(target=nop).start()  # warm-up (forkserver starts its server)
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        p = ctx.Process(target=nop)
        p.start()
        p.join()
        samples.append((time.perf_counter() - t0) * 1e6)
        assert p.exitcode == 0
    samples.sort()
    return samples[len(samples) // 2], samples[0]


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    if len(sys.argv) > 2 and sys.argv[2] == "pinned":
        os.sched_setaffinity(0, {0})
    for method in ("fork", "forkserver", "spawn"):
        med, lo = measure(method, rounds)
        print(f"python_{method} median_us={med:.1f} min_us={lo:.1f}", flush=True)
