"""The kernel: every shared backend a service may use, built from settings."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field

import structlog
from prometheus_client import CollectorRegistry, Counter

from transact.kernel.bus import Bus, BusOptions, bus_from_url
from transact.kernel.cache import Cache, cache_from_url
from transact.kernel.crypto import Keyring
from transact.kernel.db import Database, OutboxRelay
from transact.kernel.directory import Directory
from transact.kernel.security import Authenticator, Sessions, TokenVerifier
from transact.kernel.settings import Settings
from transact.kernel.vault import Vault

log = structlog.get_logger("transact.kernel")


@dataclass
class Kernel:
    settings: Settings
    bus: Bus
    db: Database
    cache: Cache
    vault: Vault
    relay: OutboxRelay
    sessions: Sessions
    authenticator: Authenticator
    directory: Directory
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    started: bool = False
    # The vault's own store when TRANSACT_VAULT_URL names one; None: the vault uses `cache`.
    vault_store: Cache | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Kernel:
        """Build without I/O; `start()` is where backends are first touched."""
        options = BusOptions(
            visibility_timeout=settings.bus_visibility_timeout,
            retry_delay=min(1.0, settings.bus_visibility_timeout),
            max_deliveries=settings.bus_max_deliveries,
        )
        bus = bus_from_url(settings.bus_url, settings.namespace, options)
        db = Database(settings.effective_database_url)
        cache = cache_from_url(settings.cache_url, settings.namespace)
        vault_store = (
            cache_from_url(settings.vault_url, settings.namespace) if settings.vault_url else None
        )
        vault = Vault(vault_store or cache, Keyring(settings.master_keys()), settings.vault_ttl)
        relay = OutboxRelay(db, bus, poll_interval=settings.outbox_poll_interval)
        sessions = Sessions(cache, settings.session_idle_timeout, settings.session_max_age)
        authenticator = Authenticator(TokenVerifier(cache), sessions)
        metrics = CollectorRegistry()
        count_dead_letters(bus, metrics)
        return cls(
            settings=settings,
            bus=bus,
            db=db,
            cache=cache,
            vault=vault,
            relay=relay,
            sessions=sessions,
            authenticator=authenticator,
            directory=Directory(cache),
            metrics=metrics,
            vault_store=vault_store,
        )

    async def check(self) -> None:
        """Reach every backend; raises BackendUnavailable with a one-line reason."""
        await self.db.ping()
        await self.cache.ping()
        if self.vault_store is not None:
            await self.vault_store.ping()
        await self.bus.ping()

    async def start(self, *, migrate: bool) -> None:
        await self.check()
        if migrate:
            await self.db.migrate()
        await self.bus.start()
        await self.relay.start()
        self.started = True
        log.info(
            "kernel.started",
            bus=self.settings.bus_url.split(":", 1)[0],
            cache=self.settings.cache_url.split(":", 1)[0],
            database=self.db.dialect,
        )

    async def stop(self) -> None:
        # Consumers first: their in-flight handlers finish and commit, then the relay
        # publishes what they committed, then the connections close.
        await self.bus.stop()
        await self.relay.stop()
        await self.bus.close()
        await self.cache.close()
        if self.vault_store is not None:
            await self.vault_store.close()
        await self.db.close()
        self.started = False


def settle_heap() -> None:
    """Leave what start-up built (modules, models, tables) out of every later garbage
    collection: a full collection otherwise walks all of it again, and under the media
    load of hundreds of calls that took 55-72 ms twice a second, a pause every frame
    in flight then waits out. For a serving process, once, before it serves (what is
    frozen is never collected, so not for a process that builds many kernels)."""
    gc.collect()
    gc.freeze()


def count_dead_letters(bus: Bus, metrics: CollectorRegistry) -> None:
    """`transact_bus_dead_letters_total{topic,group,reason}`: every message a group gave
    up on. Anything above zero is a poison message or a handler bug to look at."""
    dead_letters = Counter(
        "transact_bus_dead_letters",
        "Bus messages moved to a group's dead letters",
        ["topic", "group", "reason"],
        registry=metrics,
    )

    def observe(topic: str, group: str, reason: str) -> None:
        # "undecodable: ValueError" and the like: a short, bounded set of reasons.
        dead_letters.labels(topic, group, reason.split(":", 1)[0]).inc()

    bus.observe_dead_letter = observe
