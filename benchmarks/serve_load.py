"""Load test of ``unif2ace serve``: N concurrent clients for T seconds (mixed caption / generate) -> JSON.

Usage::

    python benchmarks/serve_load.py --out benchmarks/results/serve_load.json            # tiny random bundle
    python benchmarks/serve_load.py --model runs/bundle --clients 50 --duration 60 --caption-share 0.5

The server runs as a subprocess (``unif2ace serve`` exactly as users start it); its resident memory is sampled
every 0.25 s with psutil. Each client keeps one request in flight on its own keep-alive connection: a chat
completion captioning a fixed face, or a seeded image generation. Reported: status counts (5xx must be 0; with
``--max-queue`` >= clients no 503 "busy" is expected), p50 / p95 / p99 latency overall and per kind,
throughput, and peak / first-10 s / last-10 s RSS (bounded memory = the last window does not keep growing).
The machine's load average is recorded: on a shared CPU the absolute numbers mostly measure the other jobs.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from PIL import Image

from unif2ace.utils.io import atomic_write_json


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def face_data_url(size: int) -> str:
    """A smooth synthetic face-coloured image (the content does not matter for load)."""
    img = Image.radial_gradient("L").resize((size, size)).convert("RGB")
    buf = io.BytesIO()
    Image.blend(img, Image.new("RGB", (size, size), (205, 160, 130)), 0.6).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def start_server(model: Path, port: int, args: argparse.Namespace) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "unif2ace", "serve", "--model", str(model), "--port", str(port)]
    cmd += ["--max-queue", str(args.max_queue), "--log-level", "warning", "--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stdout.read()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start within 120 s")


class Client(threading.Thread):
    """Sends requests back to back until ``stop_at``; records ``(kind, status, seconds, t_end)``."""

    def __init__(self, port: int, index: int, stop_at: float, share: float, face: str, model: str, steps: int | None):
        super().__init__(daemon=True)
        self.port, self.stop_at, self.share, self.face, self.model, self.steps = (
            port,
            stop_at,
            share,
            face,
            model,
            steps,
        )
        self.rng = random.Random(index)
        self.results: list[tuple[str, int, float, float]] = []

    def _body(self, kind: str) -> dict:
        if kind == "caption":
            content = [{"type": "text", "text": "Describe this face."},
                       {"type": "image_url", "image_url": {"url": self.face}}]  # fmt: skip
            return {"model": self.model, "messages": [{"role": "user", "content": content}]}
        body = {"prompt": "a smiling woman with curly red hair", "seed": self.rng.randrange(2**31)}
        return body | ({"steps": self.steps} if self.steps else {})

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        while time.monotonic() < self.stop_at:
            kind = "caption" if self.rng.random() < self.share else "generate"
            path = "/v1/chat/completions" if kind == "caption" else "/v1/images/generations"
            payload = json.dumps(self._body(kind)).encode()
            start = time.monotonic()
            try:
                conn.request("POST", path, body=payload, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except OSError:
                status = 0  # connection error
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
            end = time.monotonic()
            self.results.append((kind, status, end - start, end))
        conn.close()


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else [values[0]] * 99
    return {"p50_s": round(q[49], 4), "p95_s": round(q[94], 4), "p99_s": round(q[98], 4),
            "mean_s": round(statistics.fmean(values), 4), "max_s": round(max(values), 4)}  # fmt: skip


def sample_rss(proc: psutil.Process, samples: list[tuple[float, int]], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
        except psutil.Error:
            return
        samples.append((time.monotonic(), rss))
        stop.wait(0.25)


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else None
        if model is None:
            from unif2ace.pipeline import create_random_bundle

            model = create_random_bundle(Path(tmp) / "random-tiny", seed=0)
        info = json.loads((model / "bundle.json").read_text())
        port = free_port()
        load_before = os.getloadavg()
        server = start_server(model, port, args)
        try:
            samples: list[tuple[float, int]] = []
            stop = threading.Event()
            sampler = threading.Thread(target=sample_rss, args=(psutil.Process(server.pid), samples, stop), daemon=True)
            sampler.start()
            face = face_data_url(info["layout"]["image_size"])
            start = time.monotonic()
            clients = [Client(port, i, start + args.duration, args.caption_share, face, info["name"], args.steps)
                       for i in range(args.clients)]  # fmt: skip
            for c in clients:
                c.start()
            for c in clients:
                c.join()
            wall = time.monotonic() - start
            load_during = os.getloadavg()
            stop.set()
            sampler.join()
        finally:
            server.terminate()
            server.wait(30)
    results = [r for c in clients for r in c.results]
    return report(args, info, results, samples, start, wall, load_before, load_during)


def report(args, info, results, samples, start, wall, load_before, load_during) -> dict:
    statuses: dict[str, int] = {}
    for _, status, _, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    ok = [r for r in results if r[1] == 200]
    rss = [(t - start, b) for t, b in samples]
    first = [b for t, b in rss if t <= 10] or [rss[0][1]]
    last = [b for t, b in rss if t >= args.duration - 10] or [rss[-1][1]]
    mb = 1024 * 1024
    return {
        "benchmark": "serve_load",
        "model": {
            "name": info["name"],
            "model_hash": info.get("model_hash"),
            "image_size": info["layout"]["image_size"],
        },
        "config": {
            "clients": args.clients,
            "duration_s": args.duration,
            "caption_share": args.caption_share,
            "generation_steps": args.steps or info.get("recipe", {}).get("steps"),
            "max_queue": args.max_queue,
            "torch_threads": args.threads,
        },  # fmt: skip
        "requests": len(results),
        "status_counts": statuses,
        "count_5xx": sum(n for s, n in statuses.items() if s.startswith("5")),
        "count_errors": len(results) - len(ok),
        "no_5xx": not any(s.startswith("5") for s in statuses),
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(ok) / wall, 3),
        "latency": percentiles([r[2] for r in ok]),
        "latency_by_kind": {
            k: percentiles([r[2] for r in ok if r[0] == k]) | {"count": sum(r[0] == k for r in ok)}
            for k in ("caption", "generate")
        },  # fmt: skip
        "server_rss_mb": {
            "peak": round(max(b for _, b in rss) / mb, 1),
            "first_10s_max": round(max(first) / mb, 1),
            "last_10s_max": round(max(last) / mb, 1),
            "samples": len(rss),
        },  # fmt: skip
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in load_during],
        },  # fmt: skip
        "note": args.note,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="bundle folder (default: a tiny random bundle)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--caption-share", type=float, default=0.5, help="fraction of requests that are captions")
    parser.add_argument("--steps", type=int, default=None, help="generation steps (default: the bundle's recipe)")
    parser.add_argument("--max-queue", type=int, default=64, help="server queue size (>= clients: no 503 expected)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the server")
    parser.add_argument("--note", default="", help="free text stored in the JSON (e.g. what else shared the CPU)")
    parser.add_argument("--out", default="benchmarks/results/serve_load.json")
    args = parser.parse_args()
    result = run(args)
    atomic_write_json(args.out, result)
    print(
        json.dumps({k: result[k] for k in ("requests", "status_counts", "throughput_rps", "latency", "server_rss_mb")})
    )
    return 0 if result["no_5xx"] else 1


if __name__ == "__main__":
    sys.exit(main())
