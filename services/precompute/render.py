"""Render the lesson catalog through the inference service's API into its cache."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import grpc
from tqdm import tqdm

from services.common.api import LESSON_METADATA, pb, pb_grpc, unbatch


@dataclass
class RenderSummary:
    rendered: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (entry id, why)
    seconds: float = 0.0

    def __str__(self) -> str:
        line = (
            f"rendered {self.rendered}, skipped {self.skipped} (already cached), "
            f"failed {len(self.failed)}, in {self.seconds:.1f} s"
        )
        return "\n".join([line, *(f"  failed {entry}: {why}" for entry, why in self.failed)])


class CacheUnavailable(RuntimeError):
    """The service cannot reach its cache: rendering would keep nothing."""


def render_catalog(
    stub: pb_grpc.DiffusionServiceStub,
    collection: str = "",
    progress: bool = True,
    metadata: tuple[tuple[str, str], ...] = (),
) -> RenderSummary:
    """Render every lesson entry that is not cached yet; idempotent and resumable."""
    started = time.perf_counter()
    listing = stub.ListLessons(pb.ListLessonsRequest(collection=collection), metadata=metadata)
    if not listing.cache_available:
        raise CacheUnavailable("The inference service cannot reach Redis, so nothing rendered now would be kept.")
    summary = RenderSummary()
    todo = []
    for entry in listing.entries:
        if entry.cache_state == pb.CACHE_STATE_LESSON:
            summary.skipped += 1
        else:
            todo.append(entry)
    for entry in tqdm(todo, desc="lessons", unit="entry", disable=not progress):
        request = pb.GenerateRequest()
        request.CopyFrom(entry.request)
        request.include.paths.append("latent_preview")  # the service computes everything; we need little
        try:
            final = None
            for response in unbatch(stub.Generate(request, metadata=(*metadata, (LESSON_METADATA, entry.id)))):
                if response.WhichOneof("event") == "final":
                    final = response.final
            if final is None:
                raise RuntimeError("the stream ended without an image")
            summary.rendered += 1
        except (grpc.RpcError, RuntimeError) as error:
            why = error.details() if isinstance(error, grpc.RpcError) else str(error)
            summary.failed.append((entry.id, why))
    summary.seconds = time.perf_counter() - started
    return summary
