"""Telephony: media streams, bridging, DTMF detection, masking, secure mode, feedback tones,
prompts for self-service calls.

`build()` imports the media plane lazily: the DSP modules (`dtmf`, `masking`, `audio`)
are used on their own by the `transact dtmf` commands and must import without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transact.kernel import Kernel, Service

__all__ = ["build"]


def build(kernel: Kernel) -> Service:
    from transact.kernel import Service
    from transact.kernel.bus import instance_group
    from transact.telephony import handlers
    from transact.telephony.api import build_router
    from transact.telephony.bridge import Metrics, Switchboard
    from transact.telephony.clips import ClipStore
    from transact.telephony.masking import DspPool

    board = Switchboard(
        kernel.vault,
        kernel.bus.publish,
        DspPool().lease,  # every leg's DSP in shared arrays: frames of a loop turn in one pass
        Metrics(kernel.metrics),
        pair_timeout=kernel.settings.media_pair_timeout,
    )
    service = Service(name="telephony", routers=[build_router(kernel, board)])
    # Each instance holds its own sockets, so each hears every capture event.
    handlers.subscribe(
        service, board, group=instance_group("telephony"), clips=ClipStore(kernel.cache)
    )
    service.on_stop.append(board.close_all)
    return service
