"""Render the lesson catalog through the inference service's API into its cache."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tqdm import tqdm

from services.common.api import pb
from services.common.client import ClassroomClient, StudentError
from services.common.include_mask import Probe


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


def render_catalog(client: ClassroomClient, collection: str = "", progress: bool = True) -> RenderSummary:
    """Render every lesson entry that is not cached yet; idempotent and resumable."""
    started = time.perf_counter()
    listing = client.lessons(collection)
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
        request.include.paths.append(Probe.LATENT_PREVIEW)  # the service computes everything; we need little
        try:
            events = client.generate(request, lesson_entry=entry.id)
            if not any(event.WhichOneof("event") == "final" for event in events):
                raise StudentError("the stream ended without an image")
            summary.rendered += 1
        except StudentError as error:
            summary.failed.append((entry.id, str(error)))
    summary.seconds = time.perf_counter() - started
    return summary
