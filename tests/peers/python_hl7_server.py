"""python-hl7's asyncio MLLP server as an independent peer: answers every message with its own AA.

Run it with python-hl7 first on ``PYTHONPATH`` (``.venv/peers/python-hl7``) and
a working directory outside the repository, so ``hl7`` is python-hl7 and not
ours. It prints the port it listens on, then serves until its stdin closes.
Used by the peer tests and as the baseline of ``bench/bench_inbound_siu.py``.
"""

import asyncio
import sys

from hl7.mllp import start_hl7_server


async def handle(reader, writer):
    try:
        while not writer.is_closing():
            message = await reader.readmessage()
            writer.writemessage(message.create_ack("AA"))
            await writer.drain()
    except asyncio.IncompleteReadError:
        writer.close()


async def main():
    server = await start_hl7_server(handle, "127.0.0.1", 0, encoding="utf-8")
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    server.close()


asyncio.run(main())
