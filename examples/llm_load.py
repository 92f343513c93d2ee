"""Drive examples/llm_app.py with a small, bounded load.

    python examples/llm_load.py --url http://127.0.0.1:8000 --requests 50 --concurrency 4

Only loopback or the URL you give; stops after --requests or --seconds, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time

import httpx

PROMPTS = ["Summarise the incident report", "Write a haiku about tracing", "Explain OTLP in one line"]


async def worker(client: httpx.AsyncClient, queue: asyncio.Queue[int], deadline: float, fail_rate: float,
                 counts: dict[int, int]) -> None:
    while time.monotonic() < deadline:
        try:
            queue.get_nowait()
        except asyncio.QueueEmpty:
            return
        body = {"prompt": random.choice(PROMPTS), "model": random.choice(["sim-small", "sim-large"]),
                "temperature": round(random.uniform(0, 1.5), 2), "top_p": round(random.uniform(0.5, 1), 2),
                "fail": random.random() < fail_rate}
        response = await client.post("/chat", json=body)
        counts[response.status_code] = counts.get(response.status_code, 0) + 1


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--fail-rate", type=float, default=0.1)
    args = parser.parse_args(argv)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(args.requests):
        queue.put_nowait(i)
    counts: dict[int, int] = {}
    deadline = time.monotonic() + args.seconds
    async with httpx.AsyncClient(base_url=args.url, timeout=30) as client:
        await asyncio.gather(*(worker(client, queue, deadline, args.fail_rate, counts)
                               for _ in range(args.concurrency)))
    print(" ".join(f"{status}={n}" for status, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
