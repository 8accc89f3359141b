"""A service process whose one handler is slow, run the way `transact serve` runs one:
the kernel from TRANSACT_* settings, the ASGI app's lifespan starting and stopping it,
uvicorn handling SIGTERM. Each delivery appends `started ID` and `finished ID` lines to
the file named by argv[1]; a handler takes argv[2] seconds, or, given `until-stopped`,
lasts until the bus stops reading, however late the SIGTERM comes (a fixed time raced
the test's signal on a loaded machine: the handler ended and the next one started).

    python -m tests.integration.distributed.slow_consumer MARKS SECONDS|until-stopped PORT
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
    marks, how_long, port = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    kernel = Kernel.from_settings(load_settings())

    def mark(line: str) -> None:
        with marks.open("a") as out:
            out.write(line + "\n")

    def bus_stopping() -> bool:
        return not getattr(kernel.bus, "_running", True)

    async def slowly(message: Message) -> None:
        mark(f"started {message.id}")
        if how_long == "until-stopped":
            while not bus_stopping():
                await asyncio.sleep(0.05)
        else:
            await asyncio.sleep(float(how_long))
        mark(f"finished {message.id}")

    service = Service(name="slow")
    service.subscribe(Ping.topic, slowly, GROUP)
    app = create_app(kernel, [service], manage_kernel=True)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
