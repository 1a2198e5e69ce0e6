#!/usr/bin/env python3
"""A TCP proxy that delays every byte by DELAY_MS/2 in each direction (a round trip takes DELAY_MS longer).

    delay_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS

Used by scripts/bench/run.sh --latency where the kernel has no netem. Order is kept and data is
pipelined (a stream of pieces, each released half the delay after it arrived), so throughput is limited
by this process, not by the delay. Prints "ready" once it listens.
"""
import asyncio
import sys
import time


async def pump(reader, writer, one_way):
    queue = asyncio.Queue()

    async def release():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            pause = due - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            writer.write(data)
            await writer.drain()
        writer.close()

    releaser = asyncio.create_task(release())
    try:
        while True:
            data = await reader.read(256 * 1024)
            if not data:
                break
            await queue.put((time.monotonic() + one_way, data))
    except ConnectionError:
        pass
    await queue.put((0, None))
    try:
        await releaser
    except ConnectionError:
        pass


async def main():
    listen_port, target_port, delay_ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    one_way = delay_ms / 2000.0

    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pump(client_reader, server_writer, one_way), pump(server_reader, client_writer, one_way)
        )

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
