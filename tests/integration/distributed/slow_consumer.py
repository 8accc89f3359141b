"""A service process whose one handler is slow, run the way `transact serve` runs one:
the kernel from TRANSACT_* settings, the ASGI app's lifespan starting and stopping it,
uvicorn handling SIGTERM. Each delivery appends `started ID` and `finished ID` lines to
the file named by argv[1]; a handler takes argv[2] seconds.

    python -m tests.integration.distributed.slow_consumer MARKS SECONDS PORT
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import uvicorn

from tests.contract.messages import Ping
from transact.contracts import Message
from transact.kernel import Kernel, Service
from transact.kernel.http import create_app
from transact.kernel.settings import load_settings

GROUP = "slow"


def main() -> None:
    marks, seconds, port = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])

    def mark(line: str) -> None:
        with marks.open("a") as out:
            out.write(line + "\n")

    async def slowly(message: Message) -> None:
        mark(f"started {message.id}")
        await asyncio.sleep(seconds)
        mark(f"finished {message.id}")

    kernel = Kernel.from_settings(load_settings())
    service = Service(name="slow")
    service.subscribe(Ping.topic, slowly, GROUP)
    app = create_app(kernel, [service], manage_kernel=True)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
