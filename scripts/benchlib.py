"""Helpers shared by the benchmark scripts' Python parts (bench_objects.py,
bench_passthrough.py): free ports, connections, waiting for a server."""

import socket
import sys
import time

# Ports the benchmarks never take: make run's (memcached 11211/11212,
# objcache 11311, PostgreSQL 15432) and PostgreSQL's default.
AVOID = {11211, 11212, 11311, 15432, 5432}


def free_ports(n):
    """Print n distinct free loopback ports."""
    socks, ports = [], []
    while len(ports) < n:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        socks.append(s)
        if p not in AVOID:
            ports.append(p)
    for s in socks:
        s.close()
    print(" ".join(map(str, ports)))


def connect(addr, timeout):
    """A connection to host:port whose connect and reads time out."""
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    s.settimeout(timeout)
    return s


def wait_version(addr, deadline_s):
    """Print the server's VERSION line once it answers; exit 1 if it does
    not within deadline_s seconds."""
    end = time.time() + float(deadline_s)
    last = None
    while time.time() < end:
        try:
            s = connect(addr, 1)
            s.sendall(b"version\r\n")
            r = s.recv(200)
            s.close()
            if r.startswith(b"VERSION "):
                print(r.decode().strip())
                return
            last = r
        except OSError as e:
            last = e
        time.sleep(0.1)
    print("no VERSION from %s within %ss (last: %r)" % (addr, deadline_s, last), file=sys.stderr)
    sys.exit(1)


def num(v):
    """v as a float, or None when it is not a number (NA)."""
    try:
        return float(v)
    except ValueError:
        return None


def run(commands):
    """Run the command named by argv[1] with the rest of argv: commands maps
    each name to a function of the argument list."""
    name, args = sys.argv[1], sys.argv[2:]
    commands[name](args)
