#!/usr/bin/env python3
"""Issue 15: how many requests progress while one request waits on Redis.

Two tools, used by `scripts/bench-vm --redis-delay MS` (not run by the tests or CI):

  redis_wait_probe.py proxy --listen PORT --upstream PORT --delay-ms MS [--off]
      A TCP proxy on 127.0.0.1 that holds every chunk going to Redis for MS milliseconds before
      forwarding it (answers come back at once): a slow Redis. SIGUSR1 turns the delay on,
      SIGUSR2 off (--off: start with it off). Runs until killed.

  redis_wait_probe.py probe --url URL [--ca-cert F --client-cert F --client-key F]
                           [--conns K] [--rounds N]
      Against a KMS whose Redis is behind the proxy: K connections (keep-alive HTTPS) send
      Encrypt requests on a key that is in the server's record cache (no Redis round trip), while
      one more connection sends a Create (which needs Redis: every round trip waits MS). For each
      of N Creates it counts the Encrypts that completed on the other connections while that
      Create was in flight. A server that stalls on Redis (one loop blocked in the wait) completes
      ~0; one that keeps serving completes about (Create latency x Encrypt rate). Prints one
      line of key=value results.
"""
import argparse
import http.client
import json
import signal
import socket
import ssl
import statistics
import sys
import threading
import time
import urllib.parse


# ------------------------------------------------------------------------------------ proxy
DELAY = [0.0]  # seconds, read by the pumps towards Redis


def pump(src, dst, delayed):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if delayed and DELAY[0]:
                time.sleep(DELAY[0])
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def proxy(args):
    lsn = socket.socket()
    lsn.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsn.bind(("127.0.0.1", args.listen))
    lsn.listen(64)
    print(f"listening on 127.0.0.1:{args.listen}, delay {args.delay_ms} ms", flush=True)
    delay = args.delay_ms / 1000.0
    DELAY[0] = 0.0 if args.off else delay
    signal.signal(signal.SIGUSR1, lambda *_: DELAY.__setitem__(0, delay))
    signal.signal(signal.SIGUSR2, lambda *_: DELAY.__setitem__(0, 0.0))
    while True:
        c, _ = lsn.accept()
        try:
            u = socket.create_connection(("127.0.0.1", args.upstream))
        except OSError:
            c.close()
            continue
        for s in (c, u):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=pump, args=(c, u, True), daemon=True).start()
        threading.Thread(target=pump, args=(u, c, False), daemon=True).start()


# ------------------------------------------------------------------------------------ probe
def item(tag, typ, value):
    return {"tag": tag, "type": typ, "value": value}


CREATE = item("Create", "Structure", [
    item("ObjectType", "Enumeration", "SymmetricKey"),
    item("Attributes", "Structure", [
        item("CryptographicAlgorithm", "Enumeration", "AES"),
        item("CryptographicLength", "Integer", 256),
        item("CryptographicUsageMask", "Integer", 12)])])


def find(j, tag):
    if isinstance(j, dict):
        if j.get("tag") == tag:
            return j.get("value")
        return find(j.get("value"), tag)
    if isinstance(j, list):
        for x in j:
            r = find(x, tag)
            if r is not None:
                return r
    return None


class Client:
    def __init__(self, args):
        u = urllib.parse.urlparse(args.url)
        ctx = ssl.create_default_context(cafile=args.ca_cert) if args.ca_cert else ssl._create_unverified_context()
        if args.ca_cert is None:
            ctx.check_hostname = False
        if args.client_cert:
            ctx.load_cert_chain(args.client_cert, args.client_key)
        self.c = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=120)

    def post(self, body):
        data = json.dumps(body).encode()
        self.c.request("POST", "/kmip/2_1", body=data, headers={"Content-Type": "application/json"})
        r = self.c.getresponse()
        out = r.read()
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {out[:200]!r}")
        return json.loads(out)


def probe(args):
    admin = Client(args)
    uid = find(admin.post(CREATE), "UniqueIdentifier")
    assert uid, "Create answered no UniqueIdentifier"
    admin.post(item("Activate", "Structure", [item("UniqueIdentifier", "TextString", uid)]))
    enc = item("Encrypt", "Structure", [
        item("UniqueIdentifier", "TextString", uid),
        item("CryptographicParameters", "Structure", [item("BlockCipherMode", "Enumeration", "GCM")]),
        item("Data", "ByteString", "AB" * 64)])
    assert find(admin.post(enc), "Data"), "Encrypt answered no Data"

    done = []  # completion times (monotonic), appended by the workers
    lock = threading.Lock()
    stop = threading.Event()
    errors = []

    def worker():
        try:
            c = Client(args)
            c.post(enc)  # handshake and warm-up outside the count
            while not stop.is_set():
                c.post(enc)
                t = time.monotonic()
                with lock:
                    done.append(t)
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.conns)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    creator = Client(args)
    creator.post(enc)
    lat, during = [], []
    for _ in range(args.rounds):
        t0 = time.monotonic()
        creator.post(CREATE)
        t1 = time.monotonic()
        with lock:
            n = sum(1 for t in done if t0 < t < t1)
        lat.append(t1 - t0)
        during.append(n)
        time.sleep(0.2)
    t_end = time.monotonic()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    with lock:
        span = [t for t in done if t_end - 5.0 < t < t_end]
    if errors:
        print("errors: " + "; ".join(errors[:3]), file=sys.stderr)
    print(f"conns={args.conns} rounds={args.rounds} create_ms_median={statistics.median(lat) * 1e3:.1f} "
          f"encrypts_during_create_median={statistics.median(during):.0f} "
          f"encrypts_during_create_min={min(during)} encrypt_ops_per_s={len(span) / 5.0:.1f} "
          f"errors={len(errors)}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("proxy")
    a.add_argument("--listen", type=int, required=True)
    a.add_argument("--upstream", type=int, required=True)
    a.add_argument("--delay-ms", type=float, required=True)
    a.add_argument("--off", action="store_true")
    b = sub.add_parser("probe")
    b.add_argument("--url", required=True)
    b.add_argument("--ca-cert")
    b.add_argument("--client-cert")
    b.add_argument("--client-key")
    b.add_argument("--conns", type=int, default=3)
    b.add_argument("--rounds", type=int, default=10)
    args = p.parse_args()
    proxy(args) if args.cmd == "proxy" else probe(args)


if __name__ == "__main__":
    main()
