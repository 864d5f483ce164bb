"""Turning the worker's events into the messages a stream carries (done off the worker's thread)."""

from __future__ import annotations

import numpy as np
from google.protobuf.descriptor import FieldDescriptor
from PIL import Image, ImageFilter

from services.common.api import pb
from services.common.codecs import PreviewMap, encode_image, latent_preview, tensor_to_proto
from services.common.include_mask import Probe
from services.inference.diffusion.events import AttentionCopy, EncodedPrompt, FinalEvent, HeaderEvent, StepEvent
from services.inference.diffusion.models import DiffusionModel, PromptEmbedding, PromptTokens

# A flagged image is blurred with this radius, as a fraction of its larger side.
_BLUR_FRACTION = 1 / 12
# Decoded step pictures up to this many pixels go as PNG (lossless; a few KB at Shapes' 64 px),
# larger ones as JPEG (a 512 px PNG per step would make a trajectory tens of MB).
_PNG_PIXELS = 256 * 256


def _token(position: int, token_id: int, piece: str, text: str, kind: int, known: bool, norm: float = 0.0) -> pb.Token:
    return pb.Token(position=position, id=token_id, piece=piece, text=text, kind=kind, known=known, input_norm=norm)


def _norms(norms: tuple[float, ...], count: int) -> tuple[float, ...]:
    """The tokens' input norms, or zeros for a model without an input table."""
    return norms if len(norms) == count else (0.0,) * count


def tokens_message(tokens: PromptTokens) -> pb.TokenizeResponse:
    """The 77-token window, each token labelled start, prompt, end or padding."""

    def kind(position: int) -> int:
        if position == 0:
            return pb.TOKEN_KIND_START
        if position < tokens.end_position:
            return pb.TOKEN_KIND_PROMPT
        return pb.TOKEN_KIND_END if position == tokens.end_position else pb.TOKEN_KIND_PADDING

    norms = _norms(tokens.input_norms, len(tokens.ids))
    window = [
        _token(i, token_id, piece, text, kind(i), known, norm)
        for i, (token_id, piece, text, known, norm) in enumerate(
            zip(tokens.ids, tokens.pieces, tokens.texts, tokens.known, norms, strict=True)
        )
    ]
    first_cut = len(tokens.ids) - 1  # the cut pieces would have followed the last prompt piece
    cut = [
        _token(first_cut + i, token_id, piece, text, pb.TOKEN_KIND_PROMPT, known, norm)
        for i, (token_id, piece, text, known, norm) in enumerate(
            zip(
                tokens.truncated_ids,
                tokens.truncated_pieces,
                tokens.truncated_texts,
                tokens.truncated_known,
                _norms(tokens.truncated_input_norms, len(tokens.truncated_ids)),
                strict=True,
            )
        )
    ]
    return pb.TokenizeResponse(
        tokens=window,
        max_length=len(tokens.ids),
        prompt_token_count=tokens.prompt_token_count,
        truncated=tokens.truncated,
        truncated_tokens=cut,
        truncated_text=tokens.truncated_text,
    )


def prompt_message(prompt: EncodedPrompt) -> pb.PromptEncoding:
    message = pb.PromptEncoding(
        prompt=prompt.text,
        tokens=tokens_message(prompt.tokens),
        token_norms=prompt.token_norms.numpy().tolist(),
    )
    if prompt.embeddings is not None:
        message.embeddings.CopyFrom(tensor_to_proto(prompt.embeddings.numpy()))
    return message


def encoding_message(text: str, encoding: PromptEmbedding) -> pb.PromptEncoding:
    """EncodePrompt's answer: the prompt's tokens, its vectors and their lengths (it waits for their copies)."""
    return prompt_message(EncodedPrompt.from_embedding(text, encoding, with_embeddings=True))


def header_message(event: HeaderEvent, model_id: str, revision: str, preview: PreviewMap) -> pb.GenerateResponse:
    header = pb.TrajectoryHeader(
        request=event.spec.to_proto(),
        model_id=model_id,
        model_revision=revision,
        prompt=prompt_message(event.prompt),
        negative_prompt=prompt_message(event.negative_prompt),
        timesteps=event.timesteps,
        sigmas=event.sigmas,
        total_steps=len(event.timesteps),
        initial_latent=tensor_to_proto(initial := event.initial_latent.numpy()),
        initial_latent_preview=latent_preview(initial, preview),
    )
    return pb.GenerateResponse(header=header)


def frame_message(event: StepEvent, preview: PreviewMap) -> pb.GenerateResponse:
    """A step with every probe; each reader's copy is cut down to its include mask by `filter_event`."""
    frame = pb.StepFrame(
        step_index=event.step_index,
        total_steps=event.total_steps,
        timestep=event.timestep,
        timings=pb.StepTimings(
            unet_seconds=event.unet_seconds,
            scheduler_seconds=event.scheduler_seconds,
            step_seconds=event.step_seconds,
            batch_size=event.batch_size,
            decode_seconds=event.decode_seconds,
        ),
    )
    if event.sigma is not None:
        frame.sigma = event.sigma
    latent, x0 = event.latent.numpy(), event.predicted_x0.numpy()
    frame.latent.CopyFrom(tensor_to_proto(latent))
    frame.latent_preview.CopyFrom(latent_preview(latent, preview))
    frame.predicted_x0.CopyFrom(tensor_to_proto(x0))
    frame.predicted_x0_preview.CopyFrom(latent_preview(x0, preview))
    unconditional, conditional, guided = (tensor_to_proto(n.numpy()) for n in event.noise)
    frame.noise.CopyFrom(pb.NoisePredictions(unconditional=unconditional, conditional=conditional, guided=guided))
    if event.cross_attention is not None:
        frame.cross_attention.CopyFrom(attention_message(event.cross_attention))
    if event.decoded_x0 is not None:
        frame.decoded_x0_preview.CopyFrom(decoded_picture(event.decoded_x0.numpy(), event.decoder))
    elif event.decoder:  # asked for, but the server has no decoder for it: the approximation, labelled
        frame.decoded_x0_preview.CopyFrom(frame.predicted_x0_preview)
    return pb.GenerateResponse(frame=frame)


def attention_message(attention: AttentionCopy) -> pb.CrossAttention:
    return pb.CrossAttention(
        maps=tensor_to_proto(attention.maps.numpy()),
        resolutions=[
            pb.CrossAttentionAtResolution(height=h, width=w, layers=layers, maps=tensor_to_proto(maps.numpy()))
            for h, w, layers, maps in attention.resolutions
        ],
    )


def decoded_picture(rgb: np.ndarray, decoder: str) -> pb.Image:
    """A decoder's picture of x0: PNG when small, JPEG when large; never marked approximate."""
    mime = "image/png" if rgb.shape[0] * rgb.shape[1] <= _PNG_PIXELS else "image/jpeg"
    return encode_image(rgb, mime, decoder=decoder)


def blur(image: np.ndarray) -> np.ndarray:
    """A flagged image made unrecognisable: a Gaussian blur a twelfth of its size wide."""
    radius = max(image.shape[:2]) * _BLUR_FRACTION
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))


def final_message(event: FinalEvent) -> pb.GenerateResponse:
    """The decoded image as PNG (blurred when the safety checker flagged it), and the timings."""
    final = pb.FinalImage(
        image=encode_image(blur(event.image) if event.flagged else event.image, "image/png", decoder="vae"),
        safety_flagged=event.flagged,
        timings=pb.GenerationTimings(
            text_encoder_seconds=event.text_encoder_seconds,
            denoising_seconds=event.denoising_seconds,
            vae_decode_seconds=event.vae_decode_seconds,
            total_seconds=event.total_seconds,
            queue_seconds=event.queue_seconds,
        ),
    )
    return pb.GenerateResponse(final=final)


def encode(event: HeaderEvent | StepEvent | FinalEvent, model: DiffusionModel) -> pb.GenerateResponse:
    """A runner event as the stream message every reader's copy is made from (every probe it holds)."""
    if isinstance(event, HeaderEvent):
        return header_message(event, model.model_id, model.revision, model.preview)
    if isinstance(event, StepEvent):
        return frame_message(event, model.preview)
    return final_message(event)


# The fields each probe fills, in the header and in a frame.
_FRAME_FIELDS: dict[str, str] = {
    Probe.LATENT: "latent",
    Probe.PREDICTED_X0: "predicted_x0",
    Probe.LATENT_PREVIEW: "latent_preview",
    Probe.PREDICTED_X0_PREVIEW: "predicted_x0_preview",
    Probe.NOISE_PREDICTIONS: "noise",
    Probe.CROSS_ATTENTION: "cross_attention",
    Probe.DECODED_X0_PREVIEW: "decoded_x0_preview",
}


def filter_event(event: pb.GenerateResponse, include: frozenset[str]) -> pb.GenerateResponse:
    """A copy of a stream event holding only what a reader's include mask asks for."""
    kind = event.WhichOneof("event")
    if kind not in ("header", "frame"):
        return event
    filtered = pb.GenerateResponse()
    filtered.CopyFrom(event)
    if kind == "header":
        header = filtered.header
        del header.request.include.paths[:]
        header.request.include.paths.extend(sorted(include))
        if Probe.EMBEDDINGS not in include:
            header.prompt.ClearField("embeddings")
            header.negative_prompt.ClearField("embeddings")
    else:
        for probe, name in _FRAME_FIELDS.items():
            if probe not in include:
                filtered.frame.ClearField(name)
    return filtered


def varint(value: int) -> bytes:
    """An unsigned integer as protobuf writes it (a length, a tag)."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited_tag(field: FieldDescriptor) -> bytes:
    """The tag protobuf writes before a bytes, string or message field's length."""
    return varint(field.number << 3 | 2)


_BATCH_TAG = length_delimited_tag(pb.GenerateResponse.DESCRIPTOR.fields_by_name["batch"])
_EVENTS_TAG = length_delimited_tag(pb.EventBatch.DESCRIPTOR.fields_by_name["events"])


def batch_wire(events: list[bytes]) -> bytes:
    """Serialized GenerateResponse messages as one message: the event itself, or an EventBatch of them.

    Built from the events' bytes (protobuf's length-delimited encoding), so replaying a
    cached trajectory to many readers never copies it into new message objects.
    """
    if len(events) == 1:
        return events[0]
    parts = [b"", b""]  # the batch's tag and length, filled in below: the bytes are joined once
    for event in events:
        parts += (_EVENTS_TAG, varint(len(event)), event)
    inner = sum(len(part) for part in parts)
    parts[0], parts[1] = _BATCH_TAG, varint(inner)
    return b"".join(parts)
