#!/usr/bin/env python3
"""Python multiprocessing side of the shmkit comparison suite.

Run by the suite once per round: `mp_bench.py '<json config>'`. Prints one
JSON object on stdout with every figure it measured. Each workload checks
that every message arrived exactly once, as the Rust side does, and exits
non-zero if not. Uses the platform's default start method (reported).
"""

import json
import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor


def _stamp(size, i):
    b = bytearray(size)
    n = min(size, 8)
    b[:n] = i.to_bytes(8, "little")[:n]
    return bytes(b)


def _seq(b):
    return int.from_bytes(b[:8].ljust(8, b"\0"), "little")


def _queue_producer(q, size, count):
    for i in range(count):
        q.put(_stamp(size, i))


def queue_tp(size, count):
    q = mp.Queue(maxsize=1024)
    p = mp.Process(target=_queue_producer, args=(q, size, count))
    p.start()
    t0 = None
    for i in range(count):
        m = q.get()
        if t0 is None:
            t0 = time.perf_counter()
        if len(m) != size or (size >= 8 and _seq(m) != i):
            raise SystemExit("mp.Queue: bad message")
    dt = time.perf_counter() - t0
    p.join()
    # The first message starts the clock, so count-1 are timed.
    return (count - 1) / dt


def _pipe_producer(conn, size, count):
    for i in range(count):
        conn.send_bytes(_stamp(size, i))
    conn.close()


def pipe_tp(size, count):
    a, b = mp.Pipe(duplex=False)
    p = mp.Process(target=_pipe_producer, args=(b, size, count))
    p.start()
    b.close()
    t0 = None
    for i in range(count):
        m = a.recv_bytes()
        if t0 is None:
            t0 = time.perf_counter()
        if len(m) != size or (size >= 8 and _seq(m) != i):
            raise SystemExit("mp.Pipe: bad message")
    dt = time.perf_counter() - t0
    p.join()
    return (count - 1) / dt


def _int_producer(q, count):
    for i in range(count):
        q.put(i)


def queue_int_tp(count):
    q = mp.Queue(maxsize=1024)
    p = mp.Process(target=_int_producer, args=(q, count))
    p.start()
    t0 = None
    for i in range(count):
        v = q.get()
        if t0 is None:
            t0 = time.perf_counter()
        if v != i:
            raise SystemExit("mp.Queue ints: bad value")
    dt = time.perf_counter() - t0
    p.join()
    return (count - 1) / dt


def _pipe_echo(conn, n):
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())


def _queue_echo(qa, qb, n):
    for _ in range(n):
        qb.put(qa.get())


def _quantiles(samples):
    s = sorted(samples)

    def q(x):
        return s[min(len(s) - 1, round((len(s) - 1) * x))]

    return {"median": q(0.5), "p99": q(0.99), "p999": q(0.999)}


def pipe_rt(n):
    a, b = mp.Pipe()
    warm = max(10, n // 10)
    p = mp.Process(target=_pipe_echo, args=(b, n + warm))
    p.start()
    samples = []
    for i in range(n + warm):
        m = _stamp(8, i)
        t0 = time.perf_counter_ns()
        a.send_bytes(m)
        r = a.recv_bytes()
        dt = time.perf_counter_ns() - t0
        if r != m:
            raise SystemExit("mp.Pipe round trip: bad reply")
        if i >= warm:
            samples.append(dt)
    p.join()
    return _quantiles(samples)


def queue_rt(n):
    qa, qb = mp.Queue(), mp.Queue()
    warm = max(10, n // 10)
    p = mp.Process(target=_queue_echo, args=(qa, qb, n + warm))
    p.start()
    samples = []
    for i in range(n + warm):
        t0 = time.perf_counter_ns()
        qa.put(i)
        r = qb.get()
        dt = time.perf_counter_ns() - t0
        if r != i:
            raise SystemExit("mp.Queue round trip: bad reply")
        if i >= warm:
            samples.append(dt)
    p.join()
    return _quantiles(samples)


def _nxn_producer(q, start, per, go):
    go.wait()
    for i in range(start, start + per):
        q.put(i)


def _nxn_consumer(q, per, out):
    s = 0
    for _ in range(per):
        s += q.get()
    out.put(s)


def nxn(n, total):
    per = total // n
    total = per * n
    q, out, go = mp.Queue(maxsize=1024), mp.Queue(), mp.Event()
    procs = [mp.Process(target=_nxn_consumer, args=(q, per, out)) for _ in range(n)]
    procs += [mp.Process(target=_nxn_producer, args=(q, p * per, per, go)) for p in range(n)]
    for p in procs:
        p.start()
    time.sleep(0.2)  # let every process reach its first wait
    t0 = time.perf_counter()
    go.set()
    s = sum(out.get() for _ in range(n))
    dt = time.perf_counter() - t0
    for p in procs:
        p.join()
    if s != total * (total - 1) // 2:
        raise SystemExit("mp.Queue N×N: wrong sum")
    return total / dt


def _lock_worker(lock, counter, iters, go):
    go.wait()
    for _ in range(iters):
        with lock:
            counter.value += 1


def lock_handoff(iters):
    lock, go = mp.Lock(), mp.Event()
    counter = mp.Value("q", 0, lock=False)
    procs = [mp.Process(target=_lock_worker, args=(lock, counter, iters, go)) for _ in range(2)]
    for p in procs:
        p.start()
    time.sleep(0.2)
    t0 = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
    dt = time.perf_counter() - t0
    if counter.value != 2 * iters:
        raise SystemExit("mp.Lock: lost increments")
    return dt * 1e9 / (2 * iters)


def manager_dict(keys, ops):
    with mp.Manager() as m:
        d = m.dict()
        t0 = time.perf_counter()
        for i in range(ops):
            k = i % keys
            d[k] = k * 3
        set_ns = (time.perf_counter() - t0) * 1e9 / ops
        t0 = time.perf_counter()
        for i in range(ops):
            k = i % keys
            if d[k] != k * 3:
                raise SystemExit("Manager dict: wrong value")
        get_ns = (time.perf_counter() - t0) * 1e9 / ops
    return {"get_ns": get_ns, "set_ns": set_ns}


def add_one(x):
    return x + 1


def pool(workers, tasks, rounds):
    with mp.Pool(workers) as p:
        p.map(add_one, range(workers * 2))
        t0 = time.perf_counter()
        s = sum(p.imap_unordered(add_one, range(tasks), chunksize=1))
        imap = tasks / (time.perf_counter() - t0)
        if s != tasks * (tasks + 1) // 2:
            raise SystemExit("Pool: wrong results")
        samples = []
        for i in range(rounds):
            t0 = time.perf_counter_ns()
            if p.apply_async(add_one, (i,)).get() != i + 1:
                raise SystemExit("Pool.apply_async: wrong result")
            samples.append(time.perf_counter_ns() - t0)
    with ProcessPoolExecutor(workers) as ex:
        list(ex.map(add_one, range(workers * 2)))
        t0 = time.perf_counter()
        s = sum(ex.map(add_one, range(tasks), chunksize=1))
        ex_rate = tasks / (time.perf_counter() - t0)
        if s != tasks * (tasks + 1) // 2:
            raise SystemExit("ProcessPoolExecutor: wrong results")
        ex_samples = []
        for i in range(rounds):
            t0 = time.perf_counter_ns()
            if ex.submit(add_one, i).result() != i + 1:
                raise SystemExit("ProcessPoolExecutor.submit: wrong result")
            ex_samples.append(time.perf_counter_ns() - t0)
    return {
        "imap_tasks_per_s": imap,
        "apply_async_ns": _quantiles(samples)["median"],
        "executor_map_tasks_per_s": ex_rate,
        "executor_submit_ns": _quantiles(ex_samples)["median"],
    }


def main():
    cfg = json.loads(sys.argv[1])
    out = {"start_method": mp.get_start_method(), "python": sys.version.split()[0]}
    out["queue_tp"] = {str(s): queue_tp(s, c) for s, c in cfg["tp"]}
    out["pipe_tp"] = {str(s): pipe_tp(s, c) for s, c in cfg["tp"]}
    out["queue_int_tp"] = queue_int_tp(cfg["int_count"])
    out["pipe_rt"] = pipe_rt(cfg["rt"])
    out["queue_rt"] = queue_rt(cfg["rt"])
    out["nxn"] = {str(n): nxn(n, cfg["nxn_total"]) for n in cfg["nxn"]}
    out["lock_ns"] = lock_handoff(cfg["lock_iters"])
    out["manager_dict"] = manager_dict(cfg["dict_keys"], cfg["dict_ops"])
    out["pool"] = pool(cfg["workers"], cfg["pool_tasks"], cfg["pool_rounds"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
