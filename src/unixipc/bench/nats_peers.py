"""nats-py measured on its own terms: ``python -m unixipc.bench.nats_peers MODE PLAN_JSON``.

The reference rows beside ``ch-nats``: asyncio programs written the way
nats-py's documentation shows, in two processes pinned like every other run,
through this run's own nats-server.

- ``request``: the driver awaits ``request()`` in a loop; the peer's subscription
  callback publishes each message back to its reply subject.
- ``publish``: the peer awaits ``publish()`` in a loop (nats-py buffers and
  flushes); the driver's subscription callback counts what arrives. Core NATS has
  no flow control: what the subscriber cannot take is dropped, so the rate is
  the rate that arrived.

Prints one JSON object as its last line, as :mod:`unixipc.bench.worker` does.
"""

from __future__ import annotations

import asyncio
import json
import mmap
import multiprocessing
import sys
import time
from typing import Any

from .adapters.nats import start_server, stop_server
from .measure import WARM_UP, percentile
from .transport import END, Plan, Unsupported
from .worker import describe, emit, pin

_SUBJECT = "bench"


async def _responder(url: str, ready: Any, stop: mmap.mmap) -> int:
    import nats

    client = await nats.connect(url)
    count = 0

    async def answer(message: Any) -> None:
        nonlocal count
        count += 1
        await client.publish(message.reply, message.data)

    await client.subscribe(_SUBJECT, cb=answer)
    await client.flush()
    ready.send("ready")
    while not stop[0]:
        await asyncio.sleep(0.05)
    await client.close()
    return 2 * count


async def _requester(url: str, plan: Plan) -> dict[str, Any]:
    import nats

    client = await nats.connect(url)
    payload = bytes(plan.size)
    clock = time.perf_counter_ns
    warm_until = clock() + int(plan.seconds * WARM_UP * 1e9)
    while clock() < warm_until:
        await client.request(_SUBJECT, payload, timeout=10)
    samples: list[int] = []
    end = clock() + int(plan.seconds * 1e9)
    while True:
        before = clock()
        await client.request(_SUBJECT, payload, timeout=10)
        after = clock()
        samples.append(after - before)
        if after >= end:
            break
    await client.close()
    samples.sort()
    return {
        "rtt_median_us": percentile(samples, 0.5) / 1e3,
        "rtt_p99_us": percentile(samples, 0.99) / 1e3,
        "round_trips": len(samples),
    }


async def _publisher(url: str, plan: Plan, ready: Any, stop: mmap.mmap) -> int:
    import nats

    client = await nats.connect(url)
    ready.recv()  # the subscriber is there
    payload = bytes(plan.size)
    sent = 0
    while not stop[0]:
        for _ in range(64):
            await client.publish(_SUBJECT, payload)
        sent += 64
    await client.publish(_SUBJECT, bytes([END]))
    await client.flush()
    await client.close()
    return sent


async def _subscriber(url: str, plan: Plan, ready: Any, stop: mmap.mmap) -> dict[str, Any]:
    import nats

    client = await nats.connect(url)
    count = 0
    first = asyncio.get_running_loop().create_future()

    async def counted(message: Any) -> None:
        nonlocal count
        count += 1
        if not first.done():
            first.set_result(None)

    await client.subscribe(_SUBJECT, cb=counted, pending_msgs_limit=-1, pending_bytes_limit=-1)
    await client.flush()
    ready.send("ready")
    await asyncio.wait_for(first, 30)
    await asyncio.sleep(plan.seconds * WARM_UP)
    start, counted_from = time.perf_counter(), count
    await asyncio.sleep(plan.seconds)
    finished, counted_to = time.perf_counter(), count
    stop[0] = 1
    await client.close()
    rate = (counted_to - counted_from) / (finished - start)
    return {
        "messages_per_s": rate,
        "mb_per_s": rate * plan.size / 1e6,
        "seconds": finished - start,
        "counted": counted_to - counted_from,
    }


def _peer(mode: str, url: str, plan: Plan, ready: Any, stop: mmap.mmap, report: Any) -> None:
    pin(plan.peer_cpu)
    cpu = time.process_time()
    if mode == "request":
        messages = asyncio.run(_responder(url, ready, stop))
    else:
        messages = asyncio.run(_publisher(url, plan, ready, stop))
    report.send((messages, time.process_time() - cpu))


def run(mode: str, plan: Plan) -> dict[str, Any]:
    if plan.size > 1 << 20:
        raise Unsupported("messages larger than nats-server's default max_payload (1 MiB)")
    address = start_server(plan)
    url = f"nats://{address}"
    context = multiprocessing.get_context("fork")
    stop = mmap.mmap(-1, mmap.PAGESIZE)
    ready, ready_peer = context.Pipe()
    report, report_peer = context.Pipe(duplex=False)
    try:
        peer = context.Process(
            target=_peer, args=(mode, url, plan, ready_peer, stop, report_peer), daemon=True
        )
        peer.start()
        pin(plan.driver_cpu)
        cpu = time.process_time()
        if mode == "request":
            ready.recv()
            figures = asyncio.run(_requester(url, plan))
        else:
            figures = asyncio.run(_subscriber(url, plan, ready, stop))
        stop[0] = 1
        driver_cpu = time.process_time() - cpu
        if not report.poll(30):
            raise RuntimeError("the peer did not report")
        peer_messages, peer_cpu = report.recv()
        peer.join(10)
    finally:
        stop_server(plan)
    messages = 2 * figures["round_trips"] if mode == "request" else figures["counted"]
    if mode == "publish":
        messages = max(1, peer_messages)
    return {
        **figures,
        "messages": messages,
        "cpu_us_per_message": (driver_cpu + peer_cpu) / max(1, messages) * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv if argv is None else argv
    mode, plan = argv[1], Plan.from_json(json.loads(argv[2]))
    try:
        emit(run(mode, plan))
    except Unsupported as reason:
        emit({"skipped": str(reason)})
    except BaseException as error:
        emit({"error": describe(error)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
