"""The Temporal dev server's memory per workflow that ran, without Reengage: the baseline of the
soak's verdict on the `temporal` process (bench/soak.py).

A Temporal dev server as the soak starts it (`server.embedded.EmbeddedTemporal`, SQLite file
store) and a worker of a trivial workflow (it waits for one signal and returns, like an
enrollment that gets a reply) in this process. ROUNDS rounds of N workflows each (started,
signalled, finished; 8 in flight); after each round the server's RSS. Printed: the RSS per
round and the growth per finished workflow from the first round on (the first round also
warms the server up). Measured 2026-12-02 on the shared 2-core machine: 210 MB after 400
workflows, 296 MB after 2,400, linear: about 44 KB per finished workflow.

`python -m bench.temporal_retention [--rounds 6] [--per-round 400]`.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import uuid
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from server.embedded import EmbeddedTemporal, free_port

IN_FLIGHT = 8
QUEUE = "bench-retention"


@workflow.defn(name="BenchRetentionProbe", sandboxed=False)
class ReplyProbe:
    """Waits for one signal, then returns."""

    def __init__(self) -> None:
        self._replied = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self._replied)
        return "replied"

    @workflow.signal
    def reply(self, text: str) -> None:
        self._replied = True


def _rss_mb(pid: int) -> float:
    top = psutil.Process(pid)
    family = [top, *top.children(recursive=True)]
    return float(sum(p.memory_info().rss for p in family)) / 2**20


async def _rounds(server: EmbeddedTemporal, rounds: int, per_round: int) -> list[tuple[int, float]]:
    assert server.process is not None
    client = await Client.connect(server.address)
    rows = [(0, _rss_mb(server.process.pid))]
    async with Worker(client, task_queue=QUEUE, workflows=[ReplyProbe]):
        finished = 0
        for _ in range(rounds):
            left = per_round

            async def lane() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    handle = await client.start_workflow(
                        ReplyProbe.run, id=f"probe-{uuid.uuid4().hex}", task_queue=QUEUE
                    )
                    await handle.signal(ReplyProbe.reply, "ok")
                    await handle.result()

            await asyncio.gather(*(lane() for _ in range(IN_FLIGHT)))
            finished += per_round
            rows.append((finished, _rss_mb(server.process.pid)))
    return rows


def run(rounds: int = 6, per_round: int = 400) -> None:
    with tempfile.TemporaryDirectory(prefix="reengage-retention-") as tmp:
        server = EmbeddedTemporal(Path(tmp), free_port(), free_port())
        server.start()
        try:
            rows = asyncio.run(_rounds(server, rounds, per_round))
        finally:
            server.stop()
    table = Table(title="Temporal dev server (SQLite file store): RSS by finished workflows")
    table.add_column("finished workflows", justify="right")
    table.add_column("RSS MB", justify="right")
    for count, mb in rows:
        table.add_row(f"{count:,}", f"{mb:,.0f}")
    (first, first_mb), (last, last_mb) = rows[1], rows[-1]
    if last > first:
        per = (last_mb - first_mb) * 1024 / (last - first)
        table.add_row(f"growth {first:,} → {last:,}", f"{per:,.0f} KB per workflow")
    Console().print(table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.temporal_retention")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=400)
    args = parser.parse_args(argv)
    run(args.rounds, args.per_round)


if __name__ == "__main__":
    main()
