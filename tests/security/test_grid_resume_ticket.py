"""A resume ticket on a lesson grid's picture, refused by a full queue, still works afterwards.

A grid picture runs under the student's grid name, not the student's own; the
ticket is the student's, so the refusal must give back the student's mark (it gave
back the grid name's, and the ticket was spent on a refusal). A real service on
Shapes, its queue refusing once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import textwrap

import pytest

from services.common.api import pb
from services.inference.diffusion.jobs import Requester
from services.inference.refusals import QueueFull
from tests.support.servers import running_server

GRID_CATALOG = """
version: 3
collections:
  - id: scheduler-comparison
    lesson: seeds-and-schedulers
    title: One prompt, many schedulers
    request: {guidance_scale: 7.5, width: 64, height: 64}
    prompts: {cup: a cup of tea}
    seeds: [1]
    schedulers: [ddim, euler]
    steps: [2]
"""


@pytest.fixture(scope="module")
def server(settings, tmp_path_factory):
    catalog = tmp_path_factory.mktemp("grid-ticket") / "catalog.yaml"
    catalog.write_text(textwrap.dedent(GRID_CATALOG))
    with running_server(settings.model_copy(update={"catalog": catalog})) as server:
        yield server


def test_a_grid_pictures_ticket_refused_by_a_full_queue_still_works(server):
    classroom = server.classroom
    entry = next(e for e in classroom.entries if e.entry.collection == "scheduler-comparison")
    message = pb.GenerateRequest()
    message.CopyFrom(entry.request)
    message.seed = 4242  # a seed the catalog does not hold: a picture of the lesson's grid
    ada = Requester("ada", name="Ada")
    key = classroom.hub.key(dataclasses.replace(entry.spec, seed=4242))
    ticket = classroom.resume_ticket(ada, key)

    async def full(*args: object, **kwargs: object) -> None:
        raise QueueFull(waiting=9, retry_after_s=5.0)

    async def refused_then_ticket() -> bool:
        real = classroom.hub.open
        classroom.hub.open = full
        try:
            with pytest.raises(QueueFull):
                await classroom.open(message, ada, lesson=entry.entry.id, resume=ticket)
        finally:
            classroom.hub.open = real
        return await classroom.tickets.use(ticket, ada, key)

    # The refusal bought nothing: the ticket still runs the grid picture free (it was spent before).
    assert asyncio.run_coroutine_threadsafe(refused_then_ticket(), server.loop).result(30)
