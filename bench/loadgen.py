"""Open-loop HTTP load generator, run as its own process: request n goes out at start + n / rate.

A slow answer never delays the next request: each request takes a free keep-alive connection or
opens a new one. The requests come pre-built from a JSON-lines file ({"method", "path", "headers",
"body"}), so the generator does nothing per request but write bytes and read the answer. For each
request it records when it was sent (epoch seconds, to match against the simulator's log), its
latency (send → complete answer), its HTTP status (0 for a connection error) and how late it left
against its schedule (so a run where the generator itself fell behind is seen as such).

With several --port, request n goes to the n-th of them round-robin (a load balancer in front of
several instances), each port with its own keep-alive connections.

    .venv/bin/python bench/loadgen.py requests.jsonl --port 8080 --rate 200 --out result.json
    .venv/bin/python bench/loadgen.py requests.jsonl --port 8080 --port 8081 --rate 200 --out result.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from pathlib import Path

_PREOPEN = 32
_MAX_CONNECTIONS = 1024  # beyond this a request waits for a free connection (and counts as late)
_TIMEOUT = 30.0


def build(requests: list[dict], host: str, ports: list[int]) -> list[bytes]:
    """Each request as the bytes of an HTTP/1.1 keep-alive request, request n to ports[n % len(ports)]."""
    built = []
    for n, r in enumerate(requests):
        body = r.get("body", "").encode("utf-8")
        port = ports[n % len(ports)]
        headers = {"Host": f"{host}:{port}", "Content-Length": str(len(body)), **r.get("headers", {})}
        head = f"{r.get('method', 'POST')} {r['path']} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        built.append(head.encode("latin-1") + body)
    return built


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length) if length else b""


class _Pool:
    """The keep-alive connections to one port."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.free: list[_Conn] = []
        self.waiting: list[asyncio.Future[_Conn]] = []
        self.opened = 0


async def fire(requests: list[bytes], host: str, ports: int | list[int], rate: float, keep_bodies: bool) -> dict:
    """Send every request on its schedule, request n to ports[n % len(ports)]; per-request send time,
    latency, status and lag."""
    loop = asyncio.get_running_loop()
    ports = [ports] if isinstance(ports, int) else list(ports)
    pools = [_Pool(host, port) for port in ports]
    peak = 0

    async def connect(pool: _Pool) -> _Conn:
        nonlocal peak
        pool.opened += 1
        peak = max(peak, sum(p.opened for p in pools))
        try:
            return _Conn(*await asyncio.open_connection(pool.host, pool.port))
        except OSError:
            pool.opened -= 1
            raise

    n = len(requests)
    preopen = min(_PREOPEN, n)
    for i, pool in enumerate(pools):
        count = preopen // len(pools) + (i < preopen % len(pools))
        pool.free.extend(await asyncio.gather(*(connect(pool) for _ in range(count))))
    sent_at = [0.0] * n
    latency_ms = [0.0] * n
    lag_ms = [0.0] * n
    status = [0] * n
    bodies: list[str] = [""] * n if keep_bodies else []

    async def acquire(pool: _Pool) -> _Conn:
        if pool.free:
            return pool.free.pop()
        if pool.opened < _MAX_CONNECTIONS:
            return await connect(pool)
        pool.waiting.append(loop.create_future())
        return await pool.waiting[-1]

    def release(pool: _Pool, conn: _Conn) -> None:
        while pool.waiting:
            future = pool.waiting.pop(0)
            if not future.done():
                future.set_result(conn)
                return
        pool.free.append(conn)

    async def one(i: int, due: float) -> None:
        pool = pools[i % len(pools)]
        conn = None
        try:
            conn = await acquire(pool)
            lag_ms[i] = (loop.time() - due) * 1000
            sent_at[i] = time.time()
            start = time.perf_counter()
            code, body = await asyncio.wait_for(conn.exchange(requests[i]), _TIMEOUT)
            latency_ms[i] = (time.perf_counter() - start) * 1000
            status[i] = code
            if keep_bodies:
                bodies[i] = body.decode("utf-8", "replace")
            release(pool, conn)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            latency_ms[i] = (time.perf_counter() - start) * 1000 if sent_at[i] else 0.0
            if conn is not None:
                conn.writer.close()
                pool.opened -= 1
                if pool.waiting:  # the closed connection's place goes to a request waiting for one
                    with contextlib.suppress(OSError):
                        release(pool, await connect(pool))

    tasks = []
    start = loop.time() + 0.05
    i = 0
    while i < n:
        now = loop.time()
        while i < n and start + i / rate <= now:
            tasks.append(asyncio.create_task(one(i, start + i / rate)))
            i += 1
        if i < n:
            await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
    last_scheduled = loop.time()
    await asyncio.gather(*tasks)
    for pool in pools:
        for conn in pool.free:
            conn.writer.close()
    result = {"rate": rate, "count": n, "send_seconds": round(last_scheduled - start, 3), "connections": peak,
              "ports": ports, "sent_at": sent_at, "latency_ms": latency_ms, "status": status, "lag_ms": lag_ms}
    if keep_bodies:
        result["bodies"] = bodies
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("requests", type=Path, help="JSON lines: method, path, headers, body")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, action="append", required=True,
                        help="the server's port; give it several times to spread the requests round-robin")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON result")
    parser.add_argument("--keep-bodies", action="store_true", help="keep each answer's body in the result")
    args = parser.parse_args()
    with args.requests.open(encoding="utf-8") as f:
        requests = build([json.loads(line) for line in f if line.strip()], args.host, args.port)
    result = asyncio.run(fire(requests, args.host, args.port, args.rate, args.keep_bodies))
    args.out.write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
