"""Load generation: wrk (closed loop, preferred) or a minimal asyncio HTTP/1.1 client (closed-loop
fallback, the paced open-loop pass and the S4 storm), and the server's CPU meter.

Requests are described once as a ``Source``: what wrk's Lua script makes of its config
(``bench/lua/bench.lua``) and what the asyncio client makes in Python are the same requests.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench import fixtures

LUA = Path(__file__).resolve().parent / "lua" / "bench.lua"
WRK_THREADS = 2
Marker = tuple[str, str]  # a JSON member ("key", "value"), as in fixtures


def py_pattern(m: Marker) -> re.Pattern[bytes]:
    return re.compile(rb'"%s"\s*:\s*"%s"' % (m[0].encode(), m[1].encode()))


def lua_pattern(m: Marker) -> str:
    return f'"{m[0]}"%s*:%s*"{m[1]}"'  # key and value are plain words: nothing to escape


# --- what to send ---------------------------------------------------------------------------------


@dataclass
class Source:
    """A stream of requests. ``mode`` and ``config`` drive the Lua script; ``make(i)`` builds
    request ``i`` (0, 1, ...) as raw HTTP for the asyncio client. ``mark``: a JSON member a
    successful answer contains (its occurrences are counted)."""

    mode: str  # static | list | batch | planting
    config: dict[str, str]
    make: Callable[[int], bytes]
    files: dict[str, str] = field(default_factory=dict)  # config key -> file content
    mark: Marker | None = None
    size: int | None = None  # list mode: how many distinct requests there are
    offset: int = 0  # the asyncio client starts at request ``offset``


def raw_request(
    method: str,
    path: str,
    token: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    for k, v in (headers or {}).items():
        head.append(f"{k}: {v}")
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")


def static(method: str, path: str, token: str | None = None, body: bytes | None = None) -> Source:
    raw = raw_request(method, path, token, body)
    config = {"method": method, "token": token or "", "body": (body or b"").decode()}
    return Source("static", config | {"path": path}, lambda _i: raw)


def listed(requests: Sequence[tuple[str, str, str, bytes]], mark: Marker | None) -> Source:
    """Distinct requests (method, path, token, body), each sent once (wrapping around, counted,
    if the run outlasts them)."""
    raws = [raw_request(m, p, t, b) for m, p, t, b in requests]
    text = "".join(f"{m}\t{p}\t{t}\t{b.decode()}\n" for m, p, t, b in requests)
    return Source(
        "list",
        {},
        lambda i: raws[i % len(raws)],
        files={"file": text},
        mark=mark,
        size=len(raws),
    )


# --- wrk ------------------------------------------------------------------------------------------


def find_wrk(install: bool) -> str | None:
    """wrk on PATH; else, if allowed and possible (root with apt-get), install it."""
    found = shutil.which("wrk")
    if found or not install:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("  (wrk not found: apt-get install -y wrk)", flush=True)
    install_cmd = [apt, "install", "-y", "-q", "wrk"]
    for cmd in (install_cmd, [apt, "update", "-q"], install_cmd):
        subprocess.run(cmd, env=env, capture_output=True, check=False, timeout=900)
        if shutil.which("wrk"):
            break
    return shutil.which("wrk")


@dataclass
class Load:
    """One load run's totals."""

    tool: str
    requests: int
    seconds: float
    latencies_ms: dict[str, float]  # p50, p90, p99, mean (closed loop: from send)
    status: dict[str, int]  # 2xx, 4xx, 5xx, other, socket
    marks: int = 0
    minted: int = 0
    capped: int = 0
    sent_max: int = 0  # most requests one wrk thread / the asyncio client started
    sent: int = 0
    wrapped: int = 0
    consumed: int = 0  # request numbers used: the next run of the same stream starts after them
    server_cpu_s: float = 0.0
    loadgen_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def errors(self) -> int:
        return (
            self.status["4xx"] + self.status["5xx"] + self.status["other"] + self.status["socket"]
        )


class Cpu:
    """User + system CPU seconds of the server process tree (uvicorn and its workers)."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.mark = 0.0

    def now(self) -> float:
        total = 0.0
        for proc in [self.root, *self.root.children(recursive=True)]:
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system
        return total

    def start(self) -> None:
        self.mark = self.now()

    def used(self) -> float:
        return self.now() - self.mark


class Loader:
    """Runs closed-loop load against one server: wrk when there is one, else asyncio."""

    def __init__(self, port: int, wrk: str | None, tmp: Path) -> None:
        self.port = port
        self.wrk = wrk
        self.tmp = tmp

    async def closed(
        self, source: Source, connections: int, seconds: float, cpu: Cpu | None = None
    ) -> Load:
        if self.wrk:
            return await asyncio.to_thread(self._wrk, source, connections, seconds, cpu)
        return await closed_loop_asyncio(self.port, source, connections, seconds, cpu)

    def _wrk(self, source: Source, connections: int, seconds: float, cpu: Cpu | None) -> Load:
        assert self.wrk is not None
        work = Path(tempfile.mkdtemp(dir=self.tmp, prefix="wrk-"))
        config = {**source.config, "threads": str(WRK_THREADS)}
        if source.mark:
            config["mark"] = lua_pattern(source.mark)
        config["minted_mark"] = lua_pattern(fixtures.MINTED)
        config["capped_mark"] = lua_pattern(fixtures.CAPPED)
        for key, content in source.files.items():
            path = work / key
            path.write_text(content)
            config[key] = str(path)
        cfg = work / "config"
        cfg.write_text("".join(f"{k}\t{v}\n" for k, v in config.items()))
        path = config.get("path", "/")
        cmd = [
            self.wrk,
            "-t",
            str(WRK_THREADS),
            "-c",
            str(max(connections, WRK_THREADS)),
            "-d",
            f"{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "--latency",
            "-s",
            str(LUA),
            f"http://127.0.0.1:{self.port}{path}",
        ]
        env = {**os.environ, "BENCH_WRK_MODE": source.mode, "BENCH_WRK_CONFIG": str(cfg)}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        if cpu:
            cpu.start()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        server = cpu.used() if cpu else 0.0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        shutil.rmtree(work, ignore_errors=True)
        line = next((x for x in out.stdout.splitlines() if x.startswith("BENCHJSON ")), None)
        if out.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        data = json.loads(line[len("BENCHJSON ") :])
        e, t, lat = data["errors"], data["threads"], data["latency_us"]
        if source.mode == "static":
            # no Lua per response: wrk counts answers outside 2xx/3xx as status errors
            status = {"2xx": data["requests"] - e["status"], "4xx": 0, "5xx": 0, "other": 0}
            status["other"] = e["status"]
        else:
            status = {"2xx": t["c2"], "4xx": t["c4"], "5xx": t["c5"], "other": t["cx"]}
        status["socket"] = e["connect"] + e["read"] + e["write"] + e["timeout"]
        return Load(
            tool="wrk",
            requests=data["requests"],
            seconds=data["duration_us"] / 1e6,
            latencies_ms={k: lat[k] / 1000 for k in ("p50", "p90", "p99", "mean")},
            status=status,
            marks=t["marks"],
            minted=t["minted"],
            capped=t["capped"],
            sent=t["sent"],
            sent_max=t["sent_max"],
            wrapped=t["wrapped"],
            consumed=WRK_THREADS * t["sent_max"],
            server_cpu_s=server,
            loadgen_cpu_s=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        )


# --- the asyncio client ---------------------------------------------------------------------------

_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)


class _Protocol(asyncio.Protocol):
    """Bytes in, whole HTTP/1.1 responses (with Content-Length) out: no stream machinery."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # (uvloop's are not subclasses)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end])
        length = _LENGTH.search(head)
        if length is None:
            waiter.set_exception(RuntimeError(f"response without Content-Length: {head[:200]!r}"))
            return
        total = end + 4 + int(length.group(1))
        if len(self.buf) < total:
            return
        body = bytes(self.buf[end + 4 : total])
        del self.buf[:total]
        waiter.set_result((int(head[9:12]), body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))


class Conn:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, protocol: _Protocol) -> None:
        self.protocol = protocol
        self.loop = asyncio.get_running_loop()

    @classmethod
    async def open(cls, port: int) -> Conn:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_Protocol, "127.0.0.1", port)
        return cls(protocol)

    def send(self, raw: bytes) -> None:
        self.protocol.waiter = self.loop.create_future()
        assert self.protocol.transport is not None
        self.protocol.transport.write(raw)

    async def response(self) -> tuple[int, bytes]:
        assert self.protocol.waiter is not None
        return await self.protocol.waiter

    async def call(self, raw: bytes) -> tuple[int, bytes]:
        self.send(raw)
        return await self.protocol.waiter  # type: ignore[misc]

    def close(self) -> None:
        if self.protocol.transport is not None:
            self.protocol.transport.close()


async def open_connections(port: int, count: int, warm: bytes | None = None) -> list[Conn]:
    conns = []
    for i in range(0, count, 64):
        conns += await asyncio.gather(*(Conn.open(port) for _ in range(min(64, count - i))))
    if warm is not None:
        answers = await asyncio.gather(*(c.call(warm) for c in conns))
        bad = [a for a in answers if a[0] != 200]
        if bad:
            raise RuntimeError(f"warm-up request failed: {bad[0]!r}")
    return conns


class Tally:
    MINTED = py_pattern(fixtures.MINTED)
    CAPPED = py_pattern(fixtures.CAPPED)

    def __init__(self, mark: Marker | None, batch: bool = False) -> None:
        self.mark = py_pattern(mark) if mark else None
        self.batch = batch  # count the events' minted / capped statuses
        self.status = {"2xx": 0, "4xx": 0, "5xx": 0, "other": 0, "socket": 0}
        self.marks = self.minted = self.capped = 0
        self.samples: list[bytes] = []

    def add(self, status: int, body: bytes) -> None:
        key = (
            "2xx"
            if 200 <= status < 300
            else "4xx"
            if 400 <= status < 500
            else "5xx"
            if status >= 500
            else "other"
        )
        self.status[key] += 1
        if key != "2xx" and len(self.samples) < 3:
            self.samples.append(f"{status} ".encode() + body[:300])
        if self.mark:
            self.marks += len(self.mark.findall(body))
        if self.batch:
            self.minted += len(self.MINTED.findall(body))
            self.capped += len(self.CAPPED.findall(body))


def quantiles_ms(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan"), "mean": 0.0}
    if len(latencies) == 1:
        v = latencies[0] * 1000
        return {"p50": v, "p90": v, "p99": v, "mean": v}
    q = statistics.quantiles(latencies, n=1000, method="inclusive")
    return {
        "p50": q[499] * 1000,
        "p90": q[899] * 1000,
        "p99": q[989] * 1000,
        "mean": statistics.fmean(latencies) * 1000,
    }


async def closed_loop_asyncio(
    port: int, source: Source, connections: int, seconds: float, cpu: Cpu | None = None
) -> Load:
    conns = await open_connections(port, connections)
    tally = Tally(source.mark, source.mode == "batch")
    latencies: list[float] = []
    counter = iter(range(source.offset, 1 << 62))
    me = psutil.Process()
    mine = me.cpu_times()
    if cpu:
        cpu.start()
    begin = time.perf_counter()
    deadline = begin + seconds

    async def client(c: Conn) -> None:
        while time.perf_counter() < deadline:
            raw = source.make(next(counter))
            start = time.perf_counter()
            try:
                status, body = await c.call(raw)
            except (OSError, RuntimeError):
                tally.status["socket"] += 1
                return
            latencies.append(time.perf_counter() - start)
            tally.add(status, body)

    await asyncio.gather(*(client(c) for c in conns))
    elapsed = time.perf_counter() - begin
    server = cpu.used() if cpu else 0.0
    for c in conns:
        c.close()
    used = me.cpu_times()
    sent = next(counter) - source.offset
    return Load(
        tool="asyncio",
        requests=len(latencies),
        seconds=elapsed,
        latencies_ms=quantiles_ms(latencies),
        status=tally.status,
        marks=tally.marks,
        minted=tally.minted,
        capped=tally.capped,
        sent=sent,
        sent_max=sent,
        wrapped=max(0, (sent - 1) // source.size) if source.size else 0,
        consumed=sent,
        server_cpu_s=server,
        loadgen_cpu_s=(used.user + used.system) - (mine.user + mine.system),
    )


@dataclass
class Paced:
    rate: float  # asked for, requests/s
    achieved: float  # answers/s over the pass
    latencies_ms: dict[str, float]  # from each request's scheduled start
    send_lag_ms_p99: float  # how late the client itself was in starting requests
    peak_in_flight: int
    status: dict[str, int]
    marks: int
    minted: int
    capped: int
    sent: int
    samples: list[str]
    client_cores: float = 0.0  # CPU this process used during the pass
    connections: int = 0

    @property
    def errors(self) -> int:
        return (
            self.status["4xx"] + self.status["5xx"] + self.status["other"] + self.status["socket"]
        )

    @property
    def client_bound(self) -> bool:
        """The client woke late for requests it was free to send: its lag, not the server's,
        shaped the p99."""
        p99 = self.latencies_ms["p99"]
        return self.send_lag_ms_p99 > max(5.0, 0.25 * p99)

    @property
    def sustained(self) -> bool:
        """Server and client together kept up with the asked rate."""
        return self.achieved >= 0.95 * self.rate

    @property
    def backlog(self) -> bool:
        """Every connection was busy at some moment: requests queued behind the server."""
        return self.peak_in_flight >= self.connections


async def paced(port: int, source: Source, rate: float, seconds: float, connections: int) -> Paced:
    """Open loop: request ``i`` is due at ``i / rate`` whatever the earlier ones are doing; its
    latency runs from then, waiting for a free connection included (no coordinated omission).
    Each connection, once free, takes the next request and sleeps until it is due: no task per
    request, so the client stays cheap."""
    conns = await open_connections(port, connections)
    tally = Tally(source.mark, source.mode == "batch")
    latencies: list[float] = []
    lags: list[float] = []  # how late the client woke for a request it was free to send
    total = max(1, int(rate * seconds))
    busy = peak = 0
    numbers = iter(range(total))
    me = psutil.Process()
    mine = me.cpu_times()
    begin = time.perf_counter() + 0.05

    async def worker(conn: Conn) -> None:
        nonlocal busy, peak
        for i in numbers:
            scheduled = begin + i / rate
            wait = scheduled - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
                lags.append(time.perf_counter() - scheduled)
            raw = source.make(source.offset + i)
            busy += 1
            peak = max(peak, busy)
            try:
                status, body = await conn.call(raw)
                tally.add(status, body)
            except (OSError, RuntimeError):
                tally.status["socket"] += 1
                conn.close()
                conn = await Conn.open(port)
            busy -= 1
            latencies.append(time.perf_counter() - scheduled)
        conn.close()

    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - begin
    used = me.cpu_times()
    return Paced(
        rate=rate,
        achieved=len(latencies) / elapsed,
        latencies_ms=quantiles_ms(latencies),
        send_lag_ms_p99=quantiles_ms(lags)["p99"] if lags else 0.0,
        peak_in_flight=peak,
        status=tally.status,
        marks=tally.marks,
        minted=tally.minted,
        capped=tally.capped,
        sent=total,
        samples=[s.decode(errors="replace") for s in tally.samples],
        client_cores=((used.user + used.system) - (mine.user + mine.system)) / elapsed,
        connections=connections,
    )


async def storm(
    port: int, requests: Sequence[bytes], warm: Sequence[bytes]
) -> list[tuple[int, bytes, float]]:
    """Open one connection per request, use each once for its ``warm`` request, then send all
    requests at the same instant; returns (status, body, seconds from the start) per request."""
    conns = await open_connections(port, len(requests))
    answers = await asyncio.gather(*(c.call(w) for c, w in zip(conns, warm, strict=True)))
    bad = [a for a in answers if a[0] != 200]
    if bad:
        raise RuntimeError(f"storm warm-up failed: {bad[0]!r}")
    await asyncio.sleep(0.2)
    begin = time.perf_counter()
    for c, r in zip(conns, requests, strict=True):
        c.send(r)

    async def answer(c: Conn) -> tuple[int, bytes, float]:
        status, body = await c.response()
        return status, body, time.perf_counter() - begin

    out = list(await asyncio.gather(*(answer(c) for c in conns)))
    for c in conns:
        c.close()
    return out


def warn_no_wrk(reason: str) -> None:
    warnings.warn(
        f"{reason}: closed-loop load comes from the asyncio client, which takes CPU the server "
        "would otherwise get; absolute API rates read lower than with wrk (compare runs made "
        "with the same load generator)",
        stacklevel=2,
    )


def describe(load: Load) -> dict[str, Any]:
    return {
        "tool": load.tool,
        "requests": load.requests,
        "seconds": round(load.seconds, 3),
        "rate": round(load.rate, 2),
        "latency_ms": {k: round(v, 3) for k, v in load.latencies_ms.items()},
        "status": load.status,
        "server_cpu_s": round(load.server_cpu_s, 3),
        "loadgen_cpu_s": round(load.loadgen_cpu_s, 3),
        "wrapped": load.wrapped,
    }


def describe_paced(p: Paced) -> dict[str, Any]:
    return {
        "rate": round(p.rate, 2),
        "achieved": round(p.achieved, 2),
        "latency_ms": {k: round(v, 3) for k, v in p.latencies_ms.items()},
        "send_lag_ms_p99": round(p.send_lag_ms_p99, 3),
        "client_bound": p.client_bound,
        "sustained": p.sustained,
        "backlog": p.backlog,
        "connections": p.connections,
        "client_cores": round(p.client_cores, 2),
        "peak_in_flight": p.peak_in_flight,
        "status": p.status,
        "samples": p.samples,
    }
