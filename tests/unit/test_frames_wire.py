"""The pre-serialized batches a stream sends equal the messages protobuf would have built."""

from hypothesis import given
from hypothesis import strategies as st

from services.common.api import pb, unbatch
from services.inference.trajectories.frames import batch_wire


def frame(index: int, payload: bytes) -> pb.GenerateResponse:
    return pb.GenerateResponse(frame=pb.StepFrame(step_index=index, latent=pb.Tensor(shape=[4], data=payload)))


def test_one_event_is_sent_as_itself():
    event = frame(3, b"abc").SerializeToString()
    assert batch_wire([event]) == event


@given(st.lists(st.binary(max_size=40_000), min_size=2, max_size=6))
def test_several_events_parse_as_one_event_batch(payloads):
    events = [frame(i, payload) for i, payload in enumerate(payloads)]
    wire = batch_wire([e.SerializeToString() for e in events])
    parsed = pb.GenerateResponse.FromString(wire)
    assert parsed == pb.GenerateResponse(batch=pb.EventBatch(events=events))
    assert list(unbatch([parsed])) == events
