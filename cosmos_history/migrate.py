"""Copy a container of the older layout (partitioned by ``/sessionId``) into one partitioned by
``[/userId, /sessionId]``: ``python -m cosmos_history.migrate --source sessions --target user-sessions``.

A container's partition key cannot change, so an upgrade copies every item once (README: "Upgrading to
per-user partitions"; why: ``docs/adr-partitioning.md``). Every item of this app already carries
``userId`` and ``sessionId``, so an item moves unchanged but for Cosmos DB's system properties, and
turn leases, which are copied released: the copy has a new etag, so the session's record of its last
claim no longer matches it, and a lease still running would refuse the next turn until it expired.

- **Resumable**: the source is read one physical partition (feed range) at a time, page by page with
  the SDK's continuation tokens; after each page is written, ``--checkpoint`` records where to resume.
- **Idempotent**: items are upserted under their own id and key, so copying twice changes nothing.
- **Verifiable**: the items of each type are counted in both containers at the end; a target with fewer
  than the source fails the command (exit status 1).

The target is created when a key is configured (an emulator); in Azure ``azd provision`` creates it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from azure.cosmos.aio import ContainerProxy, CosmosClient

from cosmos_history.adapters.cosmos.client import PARTITION_KEY_PATHS, create_client, ensure_container
from cosmos_history.adapters.cosmos.items import LEASE_TYPE
from cosmos_history.settings import CosmosSettings, load_settings

#: Properties Cosmos DB sets on every item; a write must not carry the source's.
SYSTEM_PROPERTIES = frozenset({"_rid", "_self", "_etag", "_ts", "_attachments", "_lsn"})
#: Items written at once within a page.
WRITE_CONCURRENCY = 16


@dataclass
class Checkpoint:
    """Where a copy stands: the source's feed ranges, the one being read, and the token of its next page."""

    source: str
    target: str
    ranges: list[Any] = field(default_factory=list)
    range_index: int = 0
    token: str | None = None
    copied: int = 0
    skipped: int = 0

    @classmethod
    def load(cls, path: Path | None, source: str, target: str) -> Checkpoint:
        """The saved checkpoint of this copy, or a fresh one (a checkpoint of another copy is refused)."""
        if path is None or not path.exists():
            return cls(source, target)
        saved = cls(**json.loads(path.read_text(encoding="utf-8")))
        if (saved.source, saved.target) != (source, target):
            raise SystemExit(f"{path} records a copy from {saved.source!r} to {saved.target!r}; use another file.")
        return saved

    def save(self, path: Path | None) -> None:
        """Written to a temporary file and renamed over the old one: a crash leaves one or the other."""
        if path is None:
            return
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(asdict(self)), encoding="utf-8")
        os.replace(temporary, path)

    @property
    def done(self) -> bool:
        return bool(self.ranges) and self.range_index >= len(self.ranges)


@dataclass
class Verification:
    """Items per ``type`` in both containers."""

    source: Counter[str]
    target: Counter[str]

    @property
    def complete(self) -> bool:
        """Every type has at least as many items in the target (the app may have written more since)."""
        return all(self.target[kind] >= count for kind, count in self.source.items())


def portable(item: dict[str, Any]) -> dict[str, Any] | None:
    """The item as it is written to the target; ``None`` when it has no place in the new layout (no
    ``userId`` or ``sessionId``: not written by this app)."""
    if not isinstance(item.get("userId"), str) or not isinstance(item.get("sessionId"), str):
        return None
    moved = {name: value for name, value in item.items() if name not in SYSTEM_PROPERTIES}
    if moved.get("type") == LEASE_TYPE:
        moved["expiresAt"] = 0.0  # released, as CosmosTurnLease.release leaves it
    return moved


async def copy_items(
    source: ContainerProxy,
    target: ContainerProxy,
    checkpoint: Checkpoint,
    *,
    save: Callable[[Checkpoint], None] = lambda _: None,
    page_size: int = 100,
) -> Checkpoint:
    """Copy every item of ``source`` not yet copied according to ``checkpoint``; returns the final one.

    ``save`` is called after each page has been written (and before the next is read).
    """
    if not checkpoint.ranges:
        checkpoint = replace(checkpoint, ranges=[r async for r in source.read_feed_ranges()])
        save(checkpoint)
    while not checkpoint.done:
        pages = source.query_items(
            "SELECT * FROM c", feed_range=checkpoint.ranges[checkpoint.range_index], max_item_count=page_size
        ).by_page(checkpoint.token)
        async for page in pages:
            found = [item async for item in page]
            written = await _upsert_all(target, found)
            checkpoint = replace(
                checkpoint,
                token=pages.continuation_token,
                copied=checkpoint.copied + written,
                skipped=checkpoint.skipped + len(found) - written,
            )
            save(checkpoint)
        checkpoint = replace(checkpoint, range_index=checkpoint.range_index + 1, token=None)
        save(checkpoint)
    return checkpoint


async def _upsert_all(target: ContainerProxy, found: list[dict[str, Any]]) -> int:
    limit = asyncio.Semaphore(WRITE_CONCURRENCY)
    movable = [moved for item in found if (moved := portable(item)) is not None]

    async def upsert(item: dict[str, Any]) -> None:
        async with limit:
            await target.upsert_item(item, no_response=True)

    await asyncio.gather(*(upsert(item) for item in movable))
    return len(movable)


async def count_by_type(container: ContainerProxy) -> Counter[str]:
    """Items per ``type``, one feed range at a time (a projection of one field: cheap per item)."""
    counts: Counter[str] = Counter()
    async for feed_range in container.read_feed_ranges():
        query = container.query_items("SELECT c.type FROM c", feed_range=feed_range, max_item_count=1000)
        async for item in query:
            counts[str(item.get("type"))] += 1
    return counts


async def verify(source: ContainerProxy, target: ContainerProxy) -> Verification:
    return Verification(await count_by_type(source), await count_by_type(target))


async def migrate(
    settings: CosmosSettings,
    source_name: str,
    target_name: str,
    *,
    checkpoint_path: Path | None = None,
    page_size: int = 100,
    verify_only: bool = False,
    client: CosmosClient | None = None,
) -> tuple[Checkpoint, Verification]:
    """Copy ``source_name`` into ``target_name`` (resuming from ``checkpoint_path``), then count both."""
    cosmos = client if client is not None else create_client(settings)
    try:
        source = cosmos.get_database_client(settings.database).get_container_client(source_name)
        target = await ensure_container(cosmos, replace(settings, container=target_name))
        checkpoint = Checkpoint.load(checkpoint_path, source_name, target_name)
        if not verify_only:
            checkpoint = await copy_items(
                source, target, checkpoint, save=lambda c: c.save(checkpoint_path), page_size=page_size
            )
        return checkpoint, await verify(source, target)
    finally:
        if client is None:
            await cosmos.close()


def report(checkpoint: Checkpoint, verification: Verification) -> str:
    lines = [f"copied {checkpoint.copied} items, skipped {checkpoint.skipped} without userId/sessionId"]
    for kind in sorted(set(verification.source) | set(verification.target)):
        lines.append(f"  {kind}: source {verification.source[kind]}, target {verification.target[kind]}")
    lines.append("complete" if verification.complete else "INCOMPLETE: the target has fewer items than the source")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cosmos_history.migrate",
        description=f"Copy a /sessionId container into one partitioned by {PARTITION_KEY_PATHS} "
        "(COSMOS_ENDPOINT, COSMOS_KEY and COSMOS_DATABASE as for the app).",
    )
    parser.add_argument("--source", required=True, help="the old container (default name: sessions)")
    parser.add_argument("--target", required=True, help="the new container (default name: user-sessions)")
    parser.add_argument("--checkpoint", type=Path, help="file recording progress; an interrupted copy resumes")
    parser.add_argument("--page-size", type=int, default=100, help="items read per request (default 100)")
    parser.add_argument("--verify-only", action="store_true", help="only count the items of both containers")
    args = parser.parse_args(argv)
    if args.source == args.target:
        parser.error("--source and --target must be different containers")
    settings = load_settings().cosmos
    checkpoint, verification = asyncio.run(
        migrate(
            settings,
            args.source,
            args.target,
            checkpoint_path=args.checkpoint,
            page_size=max(1, args.page_size),
            verify_only=args.verify_only,
        )
    )
    print(report(checkpoint, verification))
    return 0 if verification.complete and checkpoint.skipped == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
