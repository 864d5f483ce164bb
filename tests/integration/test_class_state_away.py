"""With Redis away, the class keeps working where it safely can: a real server, a real Redis killed mid-lesson.

Sign-in goes on (against the replica's last-known roster), the class's state is read as
last known, and what must hold on every replica (a teacher's act, an answer) is refused
with a sentence until Redis is back. Lessons opening while Redis is away is
tests/integration/test_cache_faults.py's.
"""

from __future__ import annotations

import time

import grpc
import pytest

from services.common.client import StudentError
from tests.integration.test_together import CODE, TOKEN, client
from tests.support.servers import running_server

BOUND_S = 30.0


def test_with_redis_away_sign_in_goes_on_and_teacher_acts_wait_with_a_sentence(settings, fresh_redis):
    redis = fresh_redis("away")
    config = settings.model_copy(update={"redis_url": redis.url, "teacher_code": CODE, "api_token": TOKEN})
    with running_server(config) as server:
        teacher, ada = client(server, "away-7"), client(server, "away-7")
        example = teacher.lessons().entries[0].id
        teacher.set_present(CODE, True, example, step=1)
        asked = teacher.ask_quick_check(CODE, question="Noise first?", choices=("yes", "no"), answer=0)
        ada.join_class("Ada", "tab-ada", "10.0.0.5", browser="browser-ada")
        redis.kill()

        ada.join_class("Ada", "tab-ada", "10.0.0.5", browser="browser-ada")  # her tab renews: still signed in
        state = ada.class_state()  # as last known
        assert state.present.example_id == example and state.quick_check.id == asked.id
        with pytest.raises(StudentError) as refused:
            teacher.set_present(CODE, False)
        assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "not available for a moment" in str(refused.value)
        with pytest.raises(StudentError, match="not available for a moment"):
            ada.answer_quick_check(asked.id, 0, "s-ada", "Ada")

        redis.start()  # back, empty (this Redis keeps nothing on disk): the teacher leads again
        deadline = time.monotonic() + BOUND_S
        while True:
            try:
                teacher.set_present(CODE, True, example, step=2)
                break
            except StudentError:
                assert time.monotonic() < deadline, "the class's state did not come back with Redis"
                time.sleep(0.1)  # the service tries Redis again a moment after a failure
        assert ada.class_state().present.step == 2
