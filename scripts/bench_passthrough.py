"""bench-passthrough.sh's Python part: its commands are the first argument (see the end)."""

import json, re, statistics, sys

from benchlib import connect, free_ports, num, run, wait_version

def mc(addr, cmd, timeout=3.0):
    """Send one memcached text command; print its reply up to END/ERROR.

    "version" goes first on the connection: objcache (cmux HTTP1Fast matcher)
    does not answer a connection whose first bytes are shorter than 8 (like
    "stats\\r\\n") until more bytes arrive."""
    s = connect(addr, timeout)
    s.sendall(b"version\r\n" + cmd.encode() + b"\r\n")
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
        i = buf.find(b"\r\n")
        if i < 0:
            continue
        rest = buf[i + 2:]
        if re.search(rb"(^|\r\n)(END|RESET|ERROR|CLIENT_ERROR[^\r\n]*|SERVER_ERROR[^\r\n]*)\r\n$", rest):
            buf = rest
            break
    s.close()
    sys.stdout.write(buf.decode(errors="replace"))

def parse_memaslap(path):
    """tps avg_us p99_us_le get_miss ops from one memaslap output."""
    text = open(path, errors="replace").read()
    m = re.search(r"Run time:\s*\S+\s+Ops:\s*(\d+)\s+TPS:\s*(\d+)", text)
    if not m:
        print("NA NA NA NA NA")
        return
    ops, tps = int(m.group(1)), int(m.group(2))
    t = text[text.rfind("Total Statistics ("):]
    avg = re.search(r"Avg:\s*(\d+)", t)
    dist = {}
    sec = t[t.find("Log2 Dist:"):]
    for line in sec.splitlines()[1:]:
        line = line.strip()
        if not line:
            break
        mm = re.match(r"(\d+):\s*(.*)", line)
        if not mm:
            break
        k = int(mm.group(1))
        for i, c in enumerate(mm.group(2).split()):
            dist[k + i] = int(c)
    # memaslap (ms_stats.c ms_local_log2) puts a latency v in bucket
    # b = ceil(log2 v), i.e. 2^(b-1) < v <= 2^b us: 2^b is the bucket's upper bound.
    total = sum(dist.values())
    p99 = "NA"
    if total:
        acc = 0
        for b in sorted(dist):
            acc += dist[b]
            if acc >= 0.99 * total:
                p99 = 2 ** b
                break
    gm = re.search(r"Get Statistics\n.*\n.*\nGlobal\s+\S+\s+\d+\s+\d+\s+\S+\s+(\d+)", text)
    print(tps, avg.group(1) if avg else "NA", p99, gm.group(1) if gm else "NA", ops)

def flatten(o, prefix=""):
    if isinstance(o, dict):
        for k, v in o.items():
            yield from flatten(v, prefix + str(k) + ".")
    elif isinstance(o, list):
        for i, v in enumerate(o):
            yield from flatten(v, prefix + str(i) + ".")
    elif isinstance(o, (int, float)) and not isinstance(o, bool):
        yield prefix[:-1], o

def parse_loadtest(path):
    """ops/s, p99, p99.9 from the loadtest JSON; prints key=value (key names carry the units)."""
    try:
        doc = json.load(open(path))
        # objcache loadtest's report: top-level ops_per_sec, p99_us, p999_us
        if isinstance(doc, dict) and all(k in doc for k in ("ops_per_sec", "p99_us", "p999_us")):
            print("ops_s=%.0f p99=%s p999=%s keys=ops_per_sec,p99_us,p999_us errors=%s timeouts=%s misses=%s" % (
                doc["ops_per_sec"], doc["p99_us"], doc["p999_us"],
                doc.get("errors", "NA"), doc.get("timeouts", "NA"), doc.get("misses", "NA")))
            return
        flat = list(flatten(doc))
    except Exception as e:
        print("ops_s=NA p99=NA p999=NA (bad JSON: %s)" % e)
        return
    def pick(pred):
        for k, v in flat:
            if pred(k.lower()):
                return k, v
        return None, "NA"
    leaf = lambda k: k.rsplit(".", 1)[-1]
    ok, ov = pick(lambda k: re.search(r"(ops|req|rps|qps|throughput)", leaf(k)) and re.search(r"(per_?s|/s|_s$|ps$|rate|throughput|sec)", leaf(k)))
    pk, pv = pick(lambda k: re.search(r"p99(?![._]?9)", leaf(k)))
    qk, qv = pick(lambda k: re.search(r"p99[._]?9", leaf(k)))
    fmt = lambda v: ("%.0f" % v) if isinstance(v, (int, float)) and v >= 100 else str(v)
    print("ops_s=%s p99=%s p999=%s keys=%s,%s,%s" % (fmt(ov), fmt(pv), fmt(qv), ok, pk, qk))

def median(xs):
    return statistics.median(xs)

# The targets, in the summary's order; the last two answer from their own
# memory, with no nodes behind them (scripts/floor is built from this repo).
NAMES = ["memcached", "nutcracker", "objcache", "floor"]
DIRECT = ("memcached", "floor")

def summary(path, dur, rounds):
    rows = [l.split("\t") for l in open(path).read().splitlines() if l]
    names = [n for n in NAMES if any(r[1] == n for r in rows)]
    by = {n: [r for r in rows if r[1] == n] for n in names}
    med = {}
    print("| target | median TPS | TPS per round | median avg latency (us) | median p99 (us, log2 bound) | p99 per round (us) | get misses | host busy % | memaslap % | target % | nodes % | other % | host CPU us/op | target CPU us/op |")
    print("|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in names:
        rs = by[n]
        col = lambda i: [num(r[i]) for r in rs if num(r[i]) is not None]
        tps = col(2)
        med[n] = median(tps) if tps else None
        f = lambda xs: ("%.0f" % median(xs)) if xs else "NA"
        gm = sum(int(r[5]) for r in rs if r[5].isdigit())
        # CPU time per request: % of a core / 100 * 1e6 us / ops per second
        per_op = lambda i: [num(r[i]) * 1e4 / num(r[2]) for r in rs if num(r[i]) is not None and num(r[2])]
        f1 = lambda xs: ("%.1f" % median(xs)) if xs else "NA"
        print("| %s | %s | %s | %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |" % (
            n, f(tps), " / ".join(r[2] for r in rs), f(col(3)), f(col(4)),
            " / ".join(r[4] for r in rs), gm, f(col(7)), f(col(10)), f(col(8)),
            f(col(9)) if n not in DIRECT else "-", f(col(11)), f1(per_op(7)), f1(per_op(8))))
    print()
    o, nc, m = med.get("objcache"), med.get("nutcracker"), med.get("memcached")
    if o and nc:
        print("- objcache / nutcracker (median TPS): **%.2f×** (goal ≥ 1.25×)" % (o / nc))
    if o and m:
        print("- objcache / memcached  (median TPS): **%.2f×** (goal ≥ 0.80×)" % (o / m))
    if nc and m:
        print("- nutcracker / memcached (median TPS): %.2f×" % (nc / m))
    fl = med.get("floor")
    if fl and m:
        print("- floor / memcached (median TPS): %.2f×" % (fl / m))
    if o and fl:
        print("- objcache / floor (median TPS): %.2f×" % (o / fl))

def lt_summary(path):
    rows = [l.split("\t") for l in open(path).read().splitlines() if l]
    if not rows:
        return
    print("| target | ops/s per round | median ops/s | p99 per round | p99.9 per round |")
    print("|---|---|---:|---|---|")
    med = {}
    for n in [n for n in NAMES if any(r[1] == n for r in rows)]:
        rs = [r for r in rows if r[1] == n]
        ops = []
        for r in rs:
            try:
                ops.append(float(r[2]))
            except ValueError:
                pass
        med[n] = median(ops) if ops else None
        print("| %s | %s | %s | %s | %s |" % (n, " / ".join(r[2] for r in rs),
              "%.0f" % med[n] if med[n] else "NA",
              " / ".join(r[3] for r in rs), " / ".join(r[4] for r in rs)))
    print()
    if rows and len(rows[0]) > 5:
        print("(JSON keys used: %s)" % rows[0][5])
    o, nc, m, fl = med.get("objcache"), med.get("nutcracker"), med.get("memcached"), med.get("floor")
    if o and nc:
        print("- loadtest objcache / nutcracker: %.2f×" % (o / nc))
    if o and m:
        print("- loadtest objcache / memcached: %.2f×" % (o / m))
    if fl and m:
        print("- loadtest floor / memcached: %.2f×" % (fl / m))

if __name__ == "__main__":
    run({
        "free_ports": lambda a: free_ports(int(a[0])),
        "mc": lambda a: mc(a[0], a[1]),
        "wait_version": lambda a: wait_version(a[0], a[1]),
        "memaslap": lambda a: parse_memaslap(a[0]),
        "loadtest": lambda a: parse_loadtest(a[0]),
        "summary": lambda a: summary(a[0], a[1], a[2]),
        "lt_summary": lambda a: lt_summary(a[0]),
    })
