"""Loading a Stable Diffusion model's components, and what the text side does with a prompt."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from transformers import CLIPImageProcessor, CLIPTextModel, CLIPTokenizer

from services.common.codecs import SD1_PREVIEW, PreviewMap
from services.inference.diffusion.attention import CrossAttentionProbe
from services.inference.diffusion.previews import PreviewDecoder, to_pixels
from services.inference.diffusion.tiny import ensure_tiny_model
from services.inference.diffusion.to_device import on_device
from services.inference.settings import SD15_MODEL, InferenceSettings

log = logging.getLogger(__name__)

TINY = "tiny"
SHAPES = "shapes"
AUTO = "auto"
# The Shapes model ships inside the repository (weights, model card, preview factors).
SHAPES_DIR = Path(__file__).resolve().parents[2] / "shapes" / "model"
# What a model folder may add to the diffusers layout: the family its lessons
# belong to, its own preview factors, and what a lesson may say about it.
CLASSROOM_FILE = "classroom.json"
SD_FAMILY = "stable-diffusion"
ENCODINGS_KEPT = 256  # prompts whose text encoding is kept (SD 1.5: 118 KB each in float16)
# Only the files the runner loads: SD repositories also hold checkpoints in
# other formats and precisions that would multiply the download.
_HUB_FILES = [
    "model_index.json",
    "scheduler/*.json",
    "tokenizer/*",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
]
# The safety checker and the image processor that feeds it, fetched unless the checker is off.
_SAFETY_FILES = [
    "safety_checker/config.json",
    "safety_checker/model.safetensors",
    "feature_extractor/preprocessor_config.json",
]

# Files above this size enter a local folder's revision hash by size, head and
# tail only, so that hashing a multi-GB model stays quick at start-up.
_FULL_HASH_LIMIT = 256 * 2**20
_PARTIAL_HASH_BYTES = 2**20


@dataclass(frozen=True)
class PromptTokens:
    """A prompt as the text encoder reads it: the fixed window, and what did not fit."""

    ids: list[int]  # exactly max_length ids: start, prompt, end, padding
    pieces: list[str]
    texts: list[str]
    prompt_token_count: int  # pieces of the whole prompt, before cutting
    end_position: int  # where the end token closing the prompt sits
    truncated_ids: list[int]
    truncated_pieces: list[str]
    truncated_texts: list[str]
    truncated_text: str
    # Whether the model learned each piece in training (see ModelCard.vocabulary): of the window, of the cut.
    known: list[bool]
    truncated_known: list[bool]
    # Each piece's row length in the text encoder's input table (training moves the rows it uses): of the window,
    # of the cut. Empty for a model without such a table (the simulated GPU).
    input_norms: tuple[float, ...] = ()
    truncated_input_norms: tuple[float, ...] = ()

    @property
    def truncated(self) -> bool:
        return bool(self.truncated_ids)


@dataclass(frozen=True)
class PromptEmbedding:
    tokens: PromptTokens
    embeddings: torch.Tensor  # [1, max_length, hidden], on the model's device


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def device_and_dtype(setting: str) -> tuple[torch.device, torch.dtype]:
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(setting)
    return device, (torch.float16 if device.type == "cuda" else torch.float32)


def folder_revision(folder: Path) -> str:
    """A content hash of a model folder, standing in for a commit hash."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(folder)}\0{size}\0".encode())
        with path.open("rb") as handle:
            if size <= _FULL_HASH_LIMIT:
                digest.update(handle.read())
            else:
                digest.update(handle.read(_PARTIAL_HASH_BYTES))
                handle.seek(-_PARTIAL_HASH_BYTES, 2)
                digest.update(handle.read())
    return digest.hexdigest()[:16]


def chosen_model(settings: InferenceSettings) -> str:
    """The model setting with `auto` decided: SD 1.5 on a CUDA GPU, the shipped Shapes model otherwise."""
    if settings.model != AUTO:
        return settings.model
    return SD15_MODEL if torch.cuda.is_available() else SHAPES


def resolve_model(settings: InferenceSettings) -> tuple[str, Path, str]:
    """The model's name, the local folder to load it from, and its revision."""
    name = chosen_model(settings)
    if name == TINY:
        folder = ensure_tiny_model(settings.tiny_dir)
        return name, folder, folder_revision(folder)
    if name == SHAPES:
        return name, SHAPES_DIR, folder_revision(SHAPES_DIR)
    local = Path(name).expanduser()
    if local.is_dir():
        return name, local, folder_revision(local)
    from huggingface_hub import snapshot_download

    files = _HUB_FILES + (_SAFETY_FILES if settings.safety_checker != "off" else [])
    snapshot = Path(snapshot_download(name, revision=settings.model_revision, allow_patterns=files))
    return name, snapshot, snapshot.name  # snapshot folders are named by commit hash


@dataclass(frozen=True)
class ModelCard:
    """What the service and the lessons know about a model beyond its diffusers config."""

    family: str = SD_FAMILY  # which lessons' catalog entries belong to it
    display_name: str = "Stable Diffusion"
    preview: PreviewMap = SD1_PREVIEW
    held_out_pairs: tuple[str, ...] = ()  # pairs of words it never saw together in training
    description: str = ""  # what it was trained on, in plain sentences
    # Every word its training captions use (Shapes: services/shapes/data.py's `vocabulary()`);
    # empty: it learned from a vocabulary too wide to list (SD's web captions), so every piece counts.
    vocabulary: tuple[str, ...] = ()
    # The most denoising steps worth offering on it (None: the service's max_steps).
    max_steps: int | None = None
    # Schedulers not offered on it, each with the sentence saying why (Shapes: LMS and PNDM, see its card).
    schedulers_left_out: tuple[tuple[str, str], ...] = ()

    @classmethod
    def read(cls, folder: Path) -> ModelCard:
        path = folder / CLASSROOM_FILE
        if not path.is_file():
            return cls()
        info = json.loads(path.read_text())
        preview = info.get("preview")
        return cls(
            family=info.get("family", SD_FAMILY),
            display_name=info.get("display_name", folder.name),
            preview=PreviewMap.from_lists(preview["factors"], preview["bias"]) if preview else SD1_PREVIEW,
            held_out_pairs=tuple(info.get("held_out_pairs", ())),
            description=info.get("description", ""),
            vocabulary=tuple(info.get("vocabulary", ())),
            max_steps=info.get("max_steps"),
            schedulers_left_out=tuple(info.get("schedulers_left_out", {}).items()),
        )


class DiffusionModel:
    """A Stable Diffusion model's components, loaded once and shared by every request."""

    def __init__(
        self,
        model_id: str,
        revision: str,
        folder: Path,
        device: str = "auto",
        safety_checker: bool = True,
        preview_decoder: str = "auto",
        taesd_model: str = "madebyollin/taesd",
    ) -> None:
        self.model_id = model_id
        self.revision = revision
        self.device, self.dtype = device_and_dtype(device)
        self.tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
        self.text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder", dtype=self.dtype)
        self.unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=self.dtype)
        self.vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=self.dtype)
        for module in (self.text_encoder, self.unet, self.vae):
            module.to(self.device).eval().requires_grad_(False)
        # The cross-attention probe sits beside every cross-attention layer; idle unless a request asks.
        self.cross_attention = CrossAttentionProbe(self.unet)
        self.preview_decoder = PreviewDecoder.load(preview_decoder, taesd_model, self.vae, self.device, self.dtype)
        self.scheduler_config: dict[str, Any] = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
        self.card = ModelCard.read(folder)
        # The safety checker, when asked for and the model ships one.
        self.safety_checker: StableDiffusionSafetyChecker | None = None
        self.feature_extractor: CLIPImageProcessor | None = None
        if safety_checker and (folder / "safety_checker" / "config.json").is_file():
            self.safety_checker = StableDiffusionSafetyChecker.from_pretrained(
                folder / "safety_checker", torch_dtype=self.dtype
            )
            self.safety_checker.to(self.device).eval().requires_grad_(False)
            self.feature_extractor = CLIPImageProcessor.from_pretrained(folder / "feature_extractor")
        # Fast tokenizers are not safe to share between threads.
        self._tokenizer_lock = threading.Lock()
        self.known_ids = self._known_ids(self.card.vocabulary)
        self._kept_encodings = functools.lru_cache(maxsize=ENCODINGS_KEPT)(self._encode)
        self.input_norms([])  # read from the device now, not at a class's first start

    def with_parts(self, text_encoder: torch.nn.Module, unet: torch.nn.Module) -> DiffusionModel:
        """A copy with another text encoder and UNet (a class's own, lesson 10); everything else is shared."""
        other = copy.copy(self)
        other.text_encoder, other.unet = text_encoder, unet
        other.cross_attention = CrossAttentionProbe(unet)
        other.forget_encodings()
        return other

    def forget_encodings(self) -> None:
        """Drop the kept prompt encodings and input norms (its text encoder changed)."""
        self.__dict__.pop("_input_norms", None)
        self._kept_encodings = functools.lru_cache(maxsize=ENCODINGS_KEPT)(self._encode)

    @classmethod
    def load(cls, settings: InferenceSettings) -> DiffusionModel:
        name, folder, revision = resolve_model(settings)
        log.info("loading %s (revision %s) from %s", name, revision, folder)
        return cls(
            name,
            revision,
            folder,
            settings.device,
            settings.safety_checker != "off",
            preview_decoder=settings.preview_decoder,
            taesd_model=settings.taesd_model,
        )

    # -- shape facts -------------------------------------------------------

    @property
    def preview(self) -> PreviewMap:
        return self.card.preview

    @property
    def vae_downsample_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def default_size(self) -> int:
        return int(self.unet.config.sample_size) * self.vae_downsample_factor

    @property
    def max_length(self) -> int:
        return int(self.tokenizer.model_max_length)

    # -- the text side -----------------------------------------------------

    def _known_ids(self, vocabulary: tuple[str, ...]) -> frozenset[int] | None:
        """The token ids of the pieces the training captions are made of (None: every piece counts).

        CLIP's tokenizer splits text into words before it cuts them into pieces, so a word's pieces
        are the same alone as inside a caption. The start, end and padding tokens frame every caption.
        """
        if not vocabulary:
            return None
        with self._tokenizer_lock:
            pieces = self.tokenizer(list(vocabulary), add_special_tokens=False).input_ids
        special = {self.tokenizer.bos_token_id, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        return frozenset(i for ids in pieces for i in ids) | frozenset(i for i in special if i is not None)

    def piece_ids(self, texts: list[str]) -> list[list[int]]:
        """Each text's piece ids, without the start and end tokens (the tokenizer is shared: one caller at a time)."""
        with self._tokenizer_lock:
            return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False).input_ids]

    def piece_texts(self, ids: list[int]) -> list[str]:
        """Each piece id as text ("heart", "ear")."""
        with self._tokenizer_lock:
            return [self.tokenizer.decode([i]).strip() for i in ids]

    def caption_ids(self, captions: list[str]) -> torch.Tensor:
        """Captions as the text encoder reads them: [len(captions), max_length] ids, padded, cut at the window."""
        with self._tokenizer_lock:
            return self.tokenizer(
                captions, padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt"
            ).input_ids

    def learned(self, ids: list[int]) -> list[bool]:
        """For each token id, whether the model learned it in training (always, for a model without a list)."""
        return [True] * len(ids) if self.known_ids is None else [i in self.known_ids for i in ids]

    def input_norms(self, ids: list[int]) -> tuple[float, ...]:
        """Each token's row length (L2 norm) in the text encoder's input table, before position is added."""
        table = getattr(self, "_input_norms", None)
        if table is None:  # computed once (a race computes the same numbers twice)
            rows = getattr(self.text_encoder, "get_input_embeddings", None)
            weight = rows().weight if rows is not None else None
            table = weight.float().norm(dim=-1).cpu().numpy() if isinstance(weight, torch.Tensor) else np.zeros(0)
            self._input_norms = table
        return tuple(float(table[i]) if i < len(table) else 0.0 for i in ids) if len(table) else ()

    def _token_texts(self, ids: list[int]) -> list[str]:
        """Each token alone as text (`decode([id])`); call with the tokenizer's lock held.

        A token's text depends on its id alone, so each is decoded once: decoding a window of
        77 (mostly padding) took half of a prompt's tokenizing, at every generation's start.
        """
        texts: dict[int, str] = self.__dict__.setdefault("_texts_of_ids", {})
        new = sorted(set(ids) - texts.keys())
        texts.update(zip(new, self.tokenizer.batch_decode([[i] for i in new]), strict=True))
        return [texts[i] for i in ids]

    def tokenize(self, prompt: str) -> PromptTokens:
        """The prompt's tokens exactly as the pipeline feeds them, plus what was cut off."""
        with self._tokenizer_lock:
            window = self.tokenizer(prompt, padding="max_length", max_length=self.max_length, truncation=True).input_ids
            whole = self.tokenizer(prompt, truncation=False).input_ids
            cut = whole[self.max_length - 1 : -1]  # prompt pieces beyond the window's end token
            pieces = self.tokenizer.convert_ids_to_tokens(window)
            texts = self._token_texts(window)
            cut_pieces = self.tokenizer.convert_ids_to_tokens(cut)
            cut_texts = self._token_texts(cut)
            cut_text = self.tokenizer.decode(cut).strip()
        prompt_count = len(whole) - 2
        return PromptTokens(
            ids=list(window),
            pieces=pieces,
            texts=texts,
            prompt_token_count=prompt_count,
            end_position=min(prompt_count + 1, self.max_length - 1),
            truncated_ids=list(cut),
            truncated_pieces=cut_pieces,
            truncated_texts=cut_texts,
            truncated_text=cut_text,
            known=self.learned(list(window)),
            truncated_known=self.learned(list(cut)),
            input_norms=self.input_norms(list(window)),
            truncated_input_norms=self.input_norms(list(cut)),
        )

    def encode(self, prompt: str) -> PromptEmbedding:
        """The prompt through the text encoder: one vector per token position, [1, max_length, hidden].

        Kept for the newest ENCODINGS_KEPT prompts: every guided generation encodes its
        negative prompt, nearly always "", and a class asks for the same lesson prompts
        again and again. The text encoder is deterministic, so a kept encoding is the
        one it would compute again, to the bit; callers only read it.
        """
        return self._kept_encodings(prompt)

    @torch.inference_mode()
    def _encode(self, prompt: str) -> PromptEmbedding:
        tokens = self.tokenize(prompt)
        ids = on_device([tokens.ids], torch.long, self.device)  # (a copy that waits would wait for the UNet call)
        attention_mask = None
        if getattr(self.text_encoder.config, "use_attention_mask", False):
            # As the pipeline does for such encoders: padding is masked out.
            attention_mask = torch.zeros_like(ids)
            attention_mask[:, : tokens.end_position + 1] = 1
        embeddings = self.text_encoder(ids, attention_mask=attention_mask)[0]
        return PromptEmbedding(tokens=tokens, embeddings=embeddings.to(self.dtype))

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> list[np.ndarray]:
        """The VAE decode of [n, 4, h, w] latents: n [H, W, 3] uint8 images."""
        images = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]
        pixels = torch.stack([to_pixels(images[i : i + 1]) for i in range(images.shape[0])])
        return list(pixels.cpu().numpy())  # one copy to the host for all of them

    @torch.inference_mode()
    def check_safety(self, image: np.ndarray) -> bool:
        """Whether the safety checker flags an [H, W, 3] uint8 image (never, without a checker)."""
        if self.safety_checker is None or self.feature_extractor is None:
            return False
        pixels = self.feature_extractor(images=[image], return_tensors="pt").pixel_values
        _, flagged = self.safety_checker(clip_input=pixels.to(self.device, self.dtype), images=[image.copy()])
        return bool(flagged[0])
