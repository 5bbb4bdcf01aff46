"""A bounded-time HTTP load generator for 127.0.0.1: closed-loop clients (threads), one request at a time each,
every request on a fresh connection (gunicorn's sync workers close after each response), raw sockets so the
generator itself costs as little CPU as possible on the machine it shares with the servers."""

import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list = field(default_factory=list)
    statuses: dict = field(default_factory=dict)
    bodies: list = field(default_factory=list)  # (client, status, body) of the first few failures

    @property
    def rps(self):
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, fraction):
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]

    def ok(self, status=200):
        return self.statuses.get(status, 0)

    def figures(self, prefix):
        return {f"{prefix}_requests": self.requests, f"{prefix}_errors": self.errors,
                f"{prefix}_rps": round(self.rps, 1), f"{prefix}_p50_ms": _round(self.percentile(0.5)),
                f"{prefix}_p99_ms": _round(self.percentile(0.99))}


def _round(value):
    return None if value is None else round(value, 2)


def request_bytes(method, path, host, headers=None, body=b""):
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close", "Accept: application/json"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _exchange(port, payload, timeout):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(payload)
        chunks = []
        while True:
            chunk = connection.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            data = b"".join(chunks)
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = _content_length(head)
                if length is not None and len(body) >= length:
                    break
        data = b"".join(chunks)
    head, _sep, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body


def _content_length(head):
    for line in head.split(b"\r\n")[1:]:
        name, _sep, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return None


def run(port, next_request, clients, seconds, warmup=0.0, timeout=30.0, expect=(200, 201)):
    """Run `clients` closed-loop clients for `seconds` (after `warmup` seconds not counted).

    next_request(client, number) -> request bytes, or None when that client has nothing more to send.
    """
    result = LoadResult()
    lock = threading.Lock()
    start = time.perf_counter()
    counted_from = start + warmup
    deadline = counted_from + seconds

    def client(index):
        number = 0
        latencies, statuses, errors, failures = [], {}, 0, []
        while True:
            now = time.perf_counter()
            if now >= deadline:
                break
            payload = next_request(index, number)
            if payload is None:
                break
            number += 1
            try:
                status, body = _exchange(port, payload, timeout)
            except OSError as error:
                status, body = 0, str(error).encode()
            done = time.perf_counter()
            if now < counted_from:
                continue
            latencies.append((done - now) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
            if status not in expect:
                errors += 1
                if len(failures) < 3:
                    failures.append((index, status, body[:300]))
        with lock:
            result.latencies_ms.extend(latencies)
            result.errors += errors
            result.requests += len(latencies)
            result.bodies.extend(failures)
            for status, count in statuses.items():
                result.statuses[status] = result.statuses.get(status, 0) + count

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = max(1e-9, min(time.perf_counter(), deadline) - counted_from)
    return result
