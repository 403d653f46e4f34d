"""bench-objects.sh's Python part: its commands are the first argument (see the end)."""

import json, statistics, sys, time

from benchlib import connect, free_ports, num, run, wait_version

def stats(addr):
    """STAT name value lines as name=value; "version" goes first on the
    connection (objcache's cmux matcher waits for 8 bytes or more)."""
    s = connect(addr, 5)
    s.sendall(b"version\r\nstats\r\n")
    buf = b""
    while not buf.endswith(b"END\r\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    out = []
    for line in buf.decode(errors="replace").split("\r\n"):
        f = line.split()
        if len(f) == 3 and f[0] == "STAT":
            out.append("%s=%s" % (f[1], f[2]))
    print(" ".join(out))

class Reader:
    def __init__(self, sock):
        self.s, self.buf = sock, b""
    def fill(self):
        chunk = self.s.recv(1 << 20)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk
    def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                l, self.buf = self.buf[:i], self.buf[i + 2:]
                return l
            self.fill()
    def take(self, n):
        while len(self.buf) < n:
            self.fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

def fillpass(addr, prefix, rows, k):
    """Every id 1..rows once, in multi-gets of k on one connection; checks
    that every row came back as the row of its id."""
    s = connect(addr, 60)
    r = Reader(s)
    t0 = time.time()
    got = 0
    for lo in range(1, rows + 1, k):
        ids = range(lo, min(lo + k, rows + 1))
        s.sendall(("get " + " ".join("%s%d" % (prefix, i) for i in ids) + "\r\n").encode())
        want = set(ids)
        while True:
            l = r.line()
            if l == b"END":
                break
            f = l.split()
            if f[0] != b"VALUE":
                print("unexpected line %r" % l, file=sys.stderr)
                sys.exit(1)
            key, size = f[1].decode(), int(f[3])
            data = r.take(size + 2)[:size]
            i = int(key[len(prefix):])
            if i not in want or not data.startswith(b'{"id":%d,' % i):
                print("unexpected value for %s: %r" % (key, data[:60]), file=sys.stderr)
                sys.exit(1)
            want.discard(i)
            got += 1
    s.close()
    dt = time.time() - t0
    print("rows=%d seconds=%.2f rows_per_s=%.0f" % (got, dt, got / dt))
    if got != rows:
        sys.exit(1)

def counter(doc, name):
    st = doc.get("stats") or {}
    for c in st.get("counters") or []:
        if c.get("name") == name:
            return c.get("delta", 0)
    if name in (st.get("unchanged") or []):
        return 0
    return None

def loadtest(path):
    """One tab-separated result line from a loadtest JSON report."""
    d = json.load(open(path))
    hot, node = counter(d, "hot_hits"), counter(d, "node_hits")
    gh, gm = counter(d, "get_hits"), counter(d, "get_misses")
    ratio = "NA"
    if hot is not None and node is not None:
        ratio = ("%.2f" % (hot / node)) if node else "all-hot(node_hits=0)"
    share = "NA"
    if hot is not None and node is not None and hot + node:
        share = "%.4f" % (hot / (hot + node))
    f = lambda v: "NA" if v is None else "%.0f" % v
    cols = ["%.0f" % d["ops_per_sec"], str(d["p50_us"]), str(d["p99_us"]), str(d["p999_us"]),
            str(d["max_us"]), str(d["errors"]), str(d["timeouts"]), str(d["misses"]), str(d["ops"]),
            f(hot), f(node), ratio, share, f(gh), f(gm), str(d["config"].get("seed", "NA"))]
    print("\t".join(cols))

def med(xs):
    return statistics.median(xs) if xs else None

# The targets that answer from their own memory, without nodes or a database:
# the memcached ref and scripts/floor.
DIRECT = ("memcached", "floor")

def per_round(rs, base):
    """The ratios of rs's ops/s to base's, round by round."""
    out = []
    for r in rs:
        b = [x for x in base if x[0] == r[0]]
        if b and num(b[0][2]) and num(r[2]):
            out.append("%.2f" % (num(r[2]) / num(b[0][2])))
    return " / ".join(out)

def summary(path, names):
    rows = [l.split("\t") for l in open(path).read().splitlines() if l]
    # 0 round, 1 target, 2 ops/s, 3 p50, 4 p99, 5 p999, 6 max, 7 errors, 8 timeouts, 9 misses,
    # 10 ops, 11 hot_hits, 12 node_hits, 13 hot/node, 14 hot share, 15 get_hits, 16 get_misses,
    # 17 seed, 18 load average at start, 19 host busy %, 20 loadtest %, 21 target %, 22 nodes %,
    # 23 PostgreSQL %, 24 other %
    names = names.split(",")
    by = {n: [r for r in rows if r[1] == n] for n in names}
    def col(rs, i):
        return [num(r[i]) for r in rs if num(r[i]) is not None]
    medops = {}
    print("| target | median ops/s | ops/s per round | p50 µs | p99 µs | p99.9 µs | p99.9 per round (µs) | misses | errors+timeouts | hot_hits / node_hits (per round) | hot share of object hits (median) |")
    print("|---|---:|---|---:|---:|---:|---|---:|---:|---|---:|")
    for n in names:
        rs = by[n]
        ops = col(rs, 2)
        medops[n] = med(ops)
        fm = lambda xs: "NA" if not xs else "%.0f" % med(xs)
        hot = "–" if n in DIRECT else " / ".join(r[13] for r in rs)
        share = "–" if n in DIRECT else ("NA" if not col(rs, 14) else "%.1f%%" % (100 * med(col(rs, 14))))
        print("| %s | %s | %s | %s | %s | %s | %s | %d | %d | %s | %s |" % (
            n, fm(ops), " / ".join("{:,}".format(int(x)) for x in ops), fm(col(rs, 3)), fm(col(rs, 4)), fm(col(rs, 5)),
            " / ".join(r[5] for r in rs), sum(int(r[9]) for r in rs), sum(int(r[7]) + int(r[8]) for r in rs), hot, share))
    print()
    for base in ("memcached", "floor"):
        if not medops.get(base):
            continue
        for n in names:
            if n in DIRECT or not medops.get(n):
                continue
            goal = " (goal ≥ 1.0×)" if base == "memcached" else ""
            print("- %s / %s (median ops/s): **%.2f×**%s; per round: %s" % (
                n, base, medops[n] / medops[base], goal, per_round(by[n], by[base])))
    if medops.get("floor") and medops.get("memcached"):
        print("- floor / memcached (median ops/s): %.2f×; per round: %s" % (
            medops["floor"] / medops["memcached"], per_round(by["floor"], by["memcached"])))
    print()
    print("CPU over the steady middle of each run, % of one core (medians over the rounds; 200% = both cores):")
    print()
    print("| target | host busy % | loadtest % | target process % | nodes % | PostgreSQL % | other % | host CPU µs/op | target CPU µs/op |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in names:
        rs = by[n]
        fm = lambda xs: "NA" if not xs else "%.0f" % med(xs)
        per_op = lambda i: [num(r[i]) * 1e4 / num(r[2]) for r in rs if num(r[i]) is not None and num(r[2])]
        f1 = lambda xs: "NA" if not xs else "%.1f" % med(xs)
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            n, fm(col(rs, 19)), fm(col(rs, 20)), fm(col(rs, 21)),
            "–" if n in DIRECT else fm(col(rs, 22)), "–" if n in DIRECT else fm(col(rs, 23)),
            fm(col(rs, 24)), f1(per_op(19)), f1(per_op(21))))

if __name__ == "__main__":
    run({
        "free_ports": lambda a: free_ports(int(a[0])),
        "wait_version": lambda a: wait_version(a[0], a[1]),
        "stats": lambda a: stats(a[0]),
        "fillpass": lambda a: fillpass(a[0], a[1], int(a[2]), int(a[3])),
        "loadtest": lambda a: loadtest(a[0]),
        "summary": lambda a: summary(a[0], a[1]),
    })
