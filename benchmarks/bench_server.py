"""HTTP API latency and throughput at several client concurrencies, batching on and off.

    python benchmarks/bench_server.py --requests 120

Runs the real aiohttp app on a loopback port in this process, with clients on the same
event loop. Prints Markdown rows for docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
from aiohttp import web
from common import git_revision, machine, synthetic_jpegs

from ldmscan.detector import load_detector
from ldmscan.engine import Engine, EngineOptions
from ldmscan.server import ServerSettings, make_app
from ldmscan.storage import Store


async def run_clients(url: str, images: list[bytes], concurrency: int, total: int) -> dict:
    latencies: list[float] = []
    counter = iter(range(total))
    statuses: dict[int, int] = {}

    async def client(session: aiohttp.ClientSession) -> None:
        for i in counter:
            started = time.perf_counter()
            async with session.post(
                url, data=images[i % len(images)], headers={"Authorization": "Bearer bench"}
            ) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "throughput": total / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000,
        "statuses": statuses,
    }


async def bench(args) -> None:
    work = Path(tempfile.mkdtemp(prefix="ldmscan-bench-server-"))
    # distinct images so no request is answered from a cache of any kind
    paths = synthetic_jpegs(work / "jpegs", args.requests, args.width, args.height, seed=7)
    images = [p.read_bytes() for p in paths]
    detector = load_detector(args.detector)
    print(
        f"machine: {machine()}; ldmscan {git_revision()}; detector {detector.card.name} "
        f"{detector.card.version}; {args.requests} requests per row, {args.width}x"
        f"{args.height} JPEG, tries=1"
    )
    print()
    print("| batching | clients | throughput req/s | p50 ms | p99 ms | mean batch |")
    print("|---|---|---|---|---|---|")
    for batching in (True, False):
        for concurrency in args.concurrency:
            engine = Engine(
                detector,
                EngineOptions(
                    device=args.device,
                    tries=1,
                    max_batch=32 if batching else 1,
                    max_wait_ms=args.max_wait_ms if batching else 0.0,
                    decode_workers=args.workers,
                    max_pending=1024,
                ),
            )
            store = Store(f"sqlite:///{work / f'b{int(batching)}c{concurrency}.db'}")
            app = make_app(engine, store, ServerSettings(token="bench", request_timeout=600))
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]
            result = await run_clients(
                f"http://127.0.0.1:{port}/v1/check", images, concurrency, args.requests
            )
            await runner.cleanup()
            sizes = list(engine.batch_sizes)
            engine.close()
            store.close()
            print(
                f"| {'on' if batching else 'off'} | {concurrency} | "
                f"{result['throughput']:.1f} | {result['p50']:.0f} | {result['p99']:.0f} | "
                f"{statistics.mean(sizes):.1f} |"
            )
            assert set(result["statuses"]) == {200}, result["statuses"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detector", default=None)
    parser.add_argument("--requests", type=int, default=120)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
