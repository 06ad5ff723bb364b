#!/usr/bin/env python3
"""Peer measurement for benches/pool.rs: multiprocessing.Pool on the same tasks.

Usage: python_pool.py WORKERS ROUNDS [WARMUP_MAPS TINY_ROUNDS [quick|full]]
(quick: skip the fib maps, reported as nan)
Prints `key=value` lines: map_tiny_ms (Pool.map of x*x over 100,000 ints,
default chunksize; median of TINY_ROUNDS after WARMUP_MAPS untimed maps), map_fib_ms (Pool.map of fib(22) over 1,000 items) with
WORKERS and with 1 worker (map_fib1_ms), imap1_ms (imap_unordered of x*x
over 10,000 ints, chunksize 1), and apply_us / apply_p10_us / apply_p90_us
(apply_async().get() round trip: median, 10th and 90th percentiles).
"""
import multiprocessing as mp
import sys
import time


def square(x):
    return x * x


def fib(n):
    return 1 if n <= 2 else fib(n - 1) + fib(n - 2)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def quantile(xs, q):
    xs = sorted(xs)
    return xs[round((len(xs) - 1) * q)]


def imap1(pool):
    n = 0
    for r in pool.imap_unordered(square, range(10_000), 1):
        n += r
    return n


def timed(f, rounds):
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        f()
        out.append(time.perf_counter() - t0)
    return median(out)


def main():
    workers, rounds = int(sys.argv[1]), int(sys.argv[2])
    warmup = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    tiny_rounds = int(sys.argv[4]) if len(sys.argv) > 4 else rounds
    quick = len(sys.argv) > 5 and sys.argv[5] == "quick"
    ctx = mp.get_context("fork")
    data = list(range(100_000))
    with ctx.Pool(workers) as pool:
        pool.map(square, range(1000))  # warm-up
        r = pool.map(square, data)
        assert r == [x * x for x in data]
        for _ in range(warmup):
            pool.map(square, data)
        print(f"map_tiny_ms={timed(lambda: pool.map(square, data), tiny_rounds) * 1e3:.3f}")
        if quick:
            print("map_fib_ms=nan")
        else:
            print(f"map_fib_ms={timed(lambda: pool.map(fib, [22] * 1000), rounds) * 1e3:.3f}")
        print(f"imap1_ms={timed(lambda: imap1(pool), rounds) * 1e3:.3f}")
        lat = []
        for _ in range(500):
            t0 = time.perf_counter()
            pool.apply_async(square, (3,)).get()
            lat.append(time.perf_counter() - t0)
        print(f"apply_us={median(lat) * 1e6:.1f}")
        print(f"apply_p10_us={quantile(lat, 0.1) * 1e6:.1f}")
        print(f"apply_p90_us={quantile(lat, 0.9) * 1e6:.1f}")
    if quick:
        print("map_fib1_ms=nan")
        return
    with ctx.Pool(1) as pool:
        pool.map(fib, [22] * 10)
        print(f"map_fib1_ms={timed(lambda: pool.map(fib, [22] * 1000), rounds) * 1e3:.3f}")


if __name__ == "__main__":
    main()
