"""bench-floor.sh's Python part: free ports, waiting for a server, the
generators' results and the summary."""

import json
import re
import statistics

from benchlib import free_ports, num, run, wait_version


def ops(load, path):
    """Print a run's throughput: memaslap's TPS, or loadtest's ops/s."""
    if load == "passthrough":
        m = re.findall(r"TPS:\s*(\d+)", open(path).read())
        print(m[-1] if m else "NA")
    else:
        print("%.0f" % json.load(open(path))["ops_per_sec"])


def summary(path, names):
    # 0 load, 1 round, 2 target, 3 ops/s, 4 host busy %, 5 target %, 6 generator %
    rows = [l.split("\t") for l in open(path).read().splitlines() if l]
    names = names.split(",")
    for load, title in (("passthrough", "memaslap 90% get / 10% set, 200-byte values, 32 connections"),
                        ("hotreads", "objcache loadtest, Zipf 0.99 gets, 200-byte values, 32 connections")):
        print("## %s: %s" % (load, title))
        print()
        print("| target | median ops/s | ops/s per round | / memcached per round | / memcached (medians) | target CPU µs/op | host CPU µs/op | generator CPU µs/op |")
        print("|---|---:|---|---|---:|---:|---:|---:|")
        by = {n: [r for r in rows if r[0] == load and r[2] == n] for n in names}
        ref = {r[1]: num(r[3]) for r in by["memcached"]}
        refmed = statistics.median([v for v in ref.values() if v]) if any(ref.values()) else None
        for n in names:
            rs = by[n]
            vals = [num(r[3]) for r in rs if num(r[3])]
            med = statistics.median(vals) if vals else None
            per = [("%.2f" % (num(r[3]) / ref[r[1]])) if num(r[3]) and ref.get(r[1]) else "NA" for r in rs]
            us = lambda i: ("%.1f" % statistics.median([num(r[i]) * 1e4 / num(r[3]) for r in rs if num(r[3])])) if vals else "NA"
            print("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                n, "%.0f" % med if med else "NA", " / ".join(r[3] for r in rs),
                "–" if n == "memcached" else " / ".join(per),
                "–" if n == "memcached" else ("%.2f×" % (med / refmed) if med and refmed else "NA"),
                us(5), us(4), us(6)))
        print()


if __name__ == "__main__":
    run({
        "free_ports": lambda a: free_ports(int(a[0])),
        "wait_version": lambda a: wait_version(a[0], a[1]),
        "ops": lambda a: ops(a[0], a[1]),
        "summary": lambda a: summary(a[0], a[1]),
    })
