"""The classroom's figures as the replies both gRPC adapters send (GetServerStats, the teacher's page)."""

from __future__ import annotations

from services.common.api import pb
from services.inference.classroom.lessons import PrecomputeProgress
from services.inference.classroom.reports import ServerStats


def stats_message(stats: ServerStats) -> pb.GetServerStatsResponse:
    scheduler, hub, cache = stats.scheduler, stats.hub, stats.cache
    return pb.GetServerStatsResponse(
        generations_started=scheduler.generations_started,
        generations_completed=scheduler.generations_completed,
        generations_cancelled=scheduler.generations_cancelled,
        generations_failed=scheduler.generations_failed,
        denoising_steps=scheduler.denoising_steps,
        unet_calls=scheduler.unet_calls,
        active_generations=scheduler.active_generations,
        queued_generations=scheduler.queued_generations,
        rejected_queue_full=scheduler.rejected_queue_full,
        rejected_student_busy=scheduler.rejected_student_busy,
        cache_hits=hub.cache_hits,
        cache_misses=hub.cache_misses,
        single_flight_joins=hub.single_flight_joins,
        cache_writes=cache.writes,
        cache_writes_staged=cache.staged,
        cache_errors=cache.errors,
        cache_entries_dropped=cache.dropped,
        cache_available=stats.cache_available,
        cache_status=stats.cache_status,
        blocked_prompts=stats.blocked_prompts,
    )


def progress_message(progress: PrecomputeProgress) -> pb.PrecomputeProgress:
    return pb.PrecomputeProgress(running=progress.running, total=progress.total, rendered=progress.rendered,
                                 skipped=progress.skipped, failed=progress.failed,
                                 last_error=progress.last_error)  # fmt: skip
