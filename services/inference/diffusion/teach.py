"""Teaching Shapes a new word from a class's drawings (lesson 10), after Custom Diffusion (Kumari et al. 2023).

The recipe, in the order a student would read it:

1. Check the word: letters only, short, and made of CLIP pieces Shapes never
   learned (a word sharing a piece with "red" or "circle" would change them too).
2. Turn the drawings into captioned pictures exactly as Shapes' own data program
   paints its shapes ("a red heart on the left"; teach_data.py), and draw as many
   pictures of the four shapes it already knows, with their captions (prior
   preservation: the old words keep being practised, so they keep working).
3. Encode every picture once with the VAE (posterior mean, times the model's
   scaling factor), as Shapes' own training does.
4. Train a copy: the new word's rows of the text encoder's input table, and the
   UNet weights the recipe names (Custom Diffusion: the cross-attention's keys and
   values, `to_k` and `to_v`), with the same loss as Shapes' training (noise
   error weighted by 1/alpha-bar, captions dropped 10% of the time for guidance).
   Each step reports its loss; every few steps, a sheet of "a <colour> <word>".
5. What was trained is the `TaughtWord`: a few tensors, kept apart from Shapes
   and loaded into a copy of it with `apply`.

Keys and values were enough; nothing more of the UNet needed to learn. Measured
on this project's 2-core CPU (torch 1 thread, the machine busy with other work),
12 children's hearts (tests/unit/test_teach.py's `wobbly_heart`), seed 0, 256 + 256
pictures, batch 32, one-cycle rate, noise levels drawn as train.py draws them; the judges of
tests/bench/test_bench_teach.py, and the 48 old-shape prompts of the CI (before
teaching: colour 100%, shape 93.8%, position 100%):

| trained (learning rate), steps | colour + place | looks like the drawings | old colour / shape / place |
|---|---|---|---|
| keys, values (1e-3, constant), 150 | 93.8% | 90.6% | 100 / 97.9 / 100 |
| keys, values (1e-3, constant), 400 | 87.5% (reds turned purple) | 93.8% | 97.9 / 95.8 / 100 |
| keys, values (5e-4; rows 2e-2), 250 | 100% | 37.5% (round blobs) | 100 / 93.8 / 100 |
| keys, values (1e-3), 250 | 100% | 84.4% | 100 / 95.8 / 100 |
| **keys, values (2e-3), 250: the default** | 100% | 96.9% | 100 / 97.9 / 100 |
| all attention (1e-3), 250 | 100% | 100% | not measured |

The benchmark (tests/bench/test_bench_teach.py, with this recipe as it stands:
noise levels drawn one from each band, sample sheets every 25 steps) measured
250 steps in 89.6 s at 1 thread (90.5 s to the first picture of the taught
word); colour and place right in 93.8% of the 32 prompts, like the drawings in
96.9%, old shapes 100 / 100 / 100. At 2 threads on the same busy machine the
same 250 steps took 600 s: with other work on the two cores, torch's two threads
wait for each other at every small operation (30 steps: 8.8-19.9 s at 1 thread,
45-90 s at 2). Teach with 1 thread. The taught word is the word's row and the
14 key and value matrices: 90,176 numbers, 363 KB as bytes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import safetensors.torch
import torch
from diffusers import DDPMScheduler

from services.common import shapes_data
from services.common.i18n import N_, Sentence
from services.common.shapes_world import SHAPES
from services.common.teaching import DEFAULT_STEPS  # the measured recipe (see above)
from services.inference.diffusion.denoise import Generation, denoise
from services.inference.diffusion.models import DiffusionModel
from services.inference.diffusion.recipe import one_cycle, weighted_noise_loss
from services.inference.diffusion.spec import GenerationSpec
from services.inference.diffusion.teach_data import Drawing, silhouette, training_pictures

__all__ = ["DEFAULT_STEPS", "Drawing", "TaughtWord", "TeachConfig", "TeachProgress", "apply", "check_word",
           "silhouette", "teach"]  # fmt: skip

MAX_DRAWINGS = 32
CAPTION_DROPOUT = 0.1  # Shapes' own training's share of captions dropped (train.py): guidance needs it
MAX_STEPS = 1000
MAX_LETTERS = 20
MAX_PIECES = 3
# The name of the word's rows among a TaughtWord's tensors; the UNet's weights keep their own names.
ROWS = "text_encoder.token_rows"
_FORMAT = "shapes-taught-word/1"


@dataclass(frozen=True)
class TeachConfig:
    """How a word is taught; every field's trade-off in a comment."""

    pictures: int = 256  # pictures of the new word, painted and encoded once (more: a slower start)
    prior_pictures: int = 256  # pictures of the four known shapes, mixed in so the old words keep working
    batch: int = 32  # half new word, half known shapes, every step
    unet_lr: float = 2e-3  # for the UNet weights that learn (1e-3 and 5e-4: pictures less like the drawings)
    rows_lr: float = 1e-2  # for the word's rows: a new vector has far to go
    trains: str = "kv"  # "kv": cross-attention keys and values; "attention": all attention; "unet": all of it
    warmup: float = 0.05  # share of the steps spent warming the learning rate up (then it falls, as in train.py)
    caption_dropout: float = CAPTION_DROPOUT  # as Shapes was trained: guidance needs it
    sample_every: int = 25  # steps between sample sheets (0: only at the end)
    sample_colours: tuple[str, ...] = ("red", "blue", "green", "yellow")  # one sample picture each
    sample_steps: int = 25  # denoising steps of a sample picture
    sample_seed: int = 7


@dataclass(frozen=True)
class TeachProgress:
    """One training step, as the class sees it: the loss, and now and then pictures of the new word."""

    step: int  # 1 .. total
    total: int
    loss: float  # this step's loss
    samples: list[np.ndarray] | None  # [64, 64, 3] uint8 pictures of "a <colour> <word>", or None
    seconds: float = 0.0  # since teaching started (painting and encoding included)
    new_word_loss: float = 0.0  # the loss on the batch's half of the class's drawings
    known_loss: float = 0.0  # on its half of the four known shapes: rising, the model would be forgetting them


@dataclass
class TaughtWord:
    """What a class's model adds to Shapes: the word, its token ids and the tensors that were trained."""

    word: str
    token_ids: list[int]
    tensors: dict[str, torch.Tensor]
    steps: int = 0  # steps trained (fewer than asked when teaching was stopped)
    details: dict[str, str] = field(default_factory=dict)  # the recipe's settings, for the record

    def to_bytes(self) -> bytes:
        """The word as safetensors bytes with a JSON header: the same word gives the same bytes."""
        header = {"format": _FORMAT, "word": self.word, "token_ids": self.token_ids, "steps": self.steps,
                  "details": self.details}  # fmt: skip
        tensors = {name: t.detach().to("cpu").contiguous() for name, t in sorted(self.tensors.items())}
        return safetensors.torch.save(tensors, metadata={"taught": json.dumps(header, sort_keys=True)})

    @classmethod
    def from_bytes(cls, blob: bytes) -> TaughtWord:
        try:
            header = json.loads(_metadata(blob).get("taught", "{}"))
            tensors = safetensors.torch.load(blob)
        except (ValueError, UnicodeDecodeError, safetensors.SafetensorError) as error:
            raise ValueError("these bytes are not a taught word") from error
        if header.get("format") != _FORMAT:
            raise ValueError("these bytes are not a taught word")
        return cls(header["word"], list(header["token_ids"]), tensors, header["steps"], header["details"])

    def digest(self) -> str:
        """A short content hash (sha256, hex), for cache keys: another word or other weights, another digest."""
        return hashlib.sha256(self.to_bytes()).hexdigest()[:16]


def _metadata(blob: bytes) -> dict[str, str]:
    """A safetensors file's own metadata: its header is 8 bytes of length, then JSON."""
    length = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + length]).get("__metadata__", {})


# -- 1. the word ------------------------------------------------------------------


def check_word(model: DiffusionModel, word: str) -> list[int]:
    """The word's CLIP token ids, or a ValueError whose message (a `Sentence`, sent as its template) says why not."""
    if not word or not word.strip():
        raise ValueError(Sentence(N_("Type the new word first.")))
    if len(word) > MAX_LETTERS:
        too_long = N_("'{word}…' is too long: a new word has at most {letters} letters.")
        raise ValueError(Sentence(too_long, word=word[:MAX_LETTERS], letters=MAX_LETTERS))
    if not (word.isascii() and word.isalpha()):
        letters = N_("'{word}' must be one word of letters a to z only: no spaces, digits or signs.")
        raise ValueError(Sentence(letters, word=word))
    (ids,) = model.piece_ids([word.lower()])
    shared = model.piece_texts([i for i in ids if i in (model.known_ids or ())])
    if len(ids) > MAX_PIECES:
        pieces = N_("'{word}' is cut into {pieces} pieces; choose a shorter or more common word.")
        raise ValueError(Sentence(pieces, word=word, pieces=len(ids)))
    if shared:
        shares = N_(
            "'{word}' shares the piece '{piece}' with words Shapes already knows ({known}, …): "
            "teaching it would change them too. Choose another word."
        )
        raise ValueError(Sentence(shares, word=word, piece=shared[0], known=", ".join(model.card.vocabulary[:6])))
    return list(ids)


# -- 5. a taught word into a copy of Shapes ------------------------------------------


@torch.no_grad()
def apply(target: object, taught: TaughtWord) -> None:
    """Load a taught word into a copy's text encoder and UNet (anything with `.text_encoder` and `.unet`).

    The caller makes the copy: the target's own weights change. A DiffusionModel
    also forgets the prompt encodings it kept and learns the word's pieces.
    """
    text_encoder, unet = target.text_encoder, target.unet  # type: ignore[attr-defined]
    table = text_encoder.get_input_embeddings().weight
    parameters = dict(unet.named_parameters())
    for name, tensor in taught.tensors.items():
        if name == ROWS:
            table[taught.token_ids] = tensor.to(table.device, table.dtype)
            continue
        key = name.removeprefix("unet.")
        if key not in parameters or parameters[key].shape != tensor.shape:
            raise ValueError(f"the taught word does not fit this model (no UNet weight {key} of that shape)")
        parameters[key].copy_(tensor.to(parameters[key].device, parameters[key].dtype))
    if isinstance(target, DiffusionModel):
        target.forget_encodings()
        if target.known_ids is not None:
            target.known_ids = target.known_ids | frozenset(taught.token_ids)


# -- 4. training ------------------------------------------------------------------


def _trains(name: str, what: str) -> bool:
    if what == "kv":
        return ".attn2.to_k." in name or ".attn2.to_v." in name
    if what == "attention":
        return ".attn1." in name or ".attn2." in name
    if what == "unet":
        return True
    raise ValueError(f"unknown TeachConfig.trains {what!r}")


def _encoded(model: DiffusionModel, pictures: np.ndarray) -> torch.Tensor:
    """3. uint8 [n, H, W, 3] pictures to scaled latents (posterior mean), 64 at a time."""
    pixels = torch.from_numpy(pictures).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    latents = []
    with torch.inference_mode():
        for chunk in pixels.split(64):
            posterior = model.vae.encode(chunk.to(model.device, model.dtype)).latent_dist
            latents.append(posterior.mean.float() * model.vae.config.scaling_factor)
    return torch.cat(latents).clone()


def _sampling_view(model: DiffusionModel, text_encoder: torch.nn.Module, unet: torch.nn.Module) -> DiffusionModel:
    """The model as it is now, with the copies in training in place of its own (for the sample sheets)."""
    view = model.with_parts(text_encoder, unet)  # its kept encodings are forgotten before each sheet
    view.dtype = torch.float32  # the copies learn in float32
    view.decode = lambda latents: model.decode(latents.to(model.dtype))  # type: ignore[method-assign]
    return view


def _samples(view: DiffusionModel, word: str, config: TeachConfig) -> list[np.ndarray]:
    size = view.default_size
    view.forget_encodings()  # the text encoder has learned since the last sheet
    generations = [
        Generation(view, GenerationSpec(shapes_data.caption_of(colour, word), "", config.sample_seed + i,
                                        config.sample_steps, 7.5, size, size, "dpm_solver_pp", frozenset()))
        for i, colour in enumerate(config.sample_colours)
    ]  # fmt: skip
    for generation in generations:
        generation.start()
    for _ in denoise(view, generations):
        pass
    return [g.finish(0.0, 0.0).image for g in generations]


@dataclass(frozen=True)
class _TrainingSet:
    """2-3. Every training picture, encoded once, with its caption's tokens; the new word's come first."""

    latents: torch.Tensor  # [n, 4, 8, 8], scaled as the UNet sees them
    tokens: torch.Tensor  # [n, 77]
    empty: torch.Tensor  # [77]: the empty caption (for guidance)
    new_count: int  # the first new_count pictures show the new word

    def batch(self, size: int, dropout: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Half new word, half known shapes (prior preservation); a few captions dropped."""
        half = size // 2
        new = torch.randint(0, self.new_count, (half,), generator=generator)
        known = torch.randint(self.new_count, len(self.tokens), (size - half,), generator=generator)
        index = torch.cat([new, known])
        text = self.tokens[index].clone()
        text[torch.rand(size, generator=generator) < dropout] = self.empty
        return self.latents[index], text


def _training_set(model: DiffusionModel, drawings: Sequence[Drawing], word: str, seed: int,
                  config: TeachConfig) -> _TrainingSet:  # fmt: skip
    # 2. Pictures of the new word, and of the four known shapes by Shapes' own data program.
    rng = random.Random(seed)
    new_pictures, new_captions = training_pictures(drawings, word, rng, config.pictures)
    known_pixels, known_captions = shapes_data.batch(rng, config.prior_pictures, new_pictures.shape[1])
    known_pictures = ((known_pixels.transpose(0, 2, 3, 1) + 1.0) * 127.5 + 0.5).clip(0, 255).astype(np.uint8)
    # 3. Every picture encoded once; every caption tokenized once.
    latents = _encoded(model, np.concatenate([new_pictures, known_pictures]))
    tokens = model.caption_ids([*new_captions, *known_captions, ""]).to(model.device)
    return _TrainingSet(latents, tokens[:-1], tokens[-1], len(new_captions))


class _Learner:
    """4. Copies of the text encoder and UNet in which only the word's rows and the recipe's UNet weights learn."""

    def __init__(self, model: DiffusionModel, ids: list[int], steps: int, config: TeachConfig) -> None:
        self.ids = ids
        self.text_encoder = copy.deepcopy(model.text_encoder).float().train().requires_grad_(False)
        self.unet = copy.deepcopy(model.unet).float().train()
        self.table = self.text_encoder.get_input_embeddings().weight
        shape_ids = [i for ids in model.piece_ids(list(SHAPES)) for i in ids]
        with torch.no_grad():  # the word starts as "a shape": the mean of the known shape words' rows
            self.table[ids] = self.table[shape_ids].mean(dim=0)
        self.table.requires_grad_(True)
        rows = torch.zeros_like(self.table[:, :1])
        rows[ids] = 1.0
        self.table.register_hook(lambda grad: grad * rows)  # every other word's row stays as it was
        for name, parameter in self.unet.named_parameters():
            parameter.requires_grad_(_trains(name, config.trains))
        self.learning = [p for p in self.unet.parameters() if p.requires_grad]
        groups = [{"params": self.learning, "lr": config.unet_lr, "weight_decay": 1e-2},
                  {"params": [self.table], "lr": config.rows_lr, "weight_decay": 0.0}]  # fmt: skip
        self.optimiser = torch.optim.AdamW(groups)
        # As Shapes' training: a short warm-up, then the rate falls to nothing (the last steps settle).
        self.schedule = one_cycle(self.optimiser, [config.unet_lr, config.rows_lr], steps, config.warmup)
        self.noise_schedule = DDPMScheduler.from_config(model.scheduler_config)
        self.alphas_cumprod = self.noise_schedule.alphas_cumprod.to(model.device)

    def step(self, clean: torch.Tensor, text: torch.Tensor, generator: torch.Generator) -> tuple[float, float, float]:
        """One step of Shapes' own training (train.py); the loss of the batch, of its drawn half, of its known half."""
        # One noise level from each of len(clean) equal bands of 0..999 (shuffled): every step sees the whole
        # range, so the loss the class watches falls smoothly instead of jumping with the levels drawn.
        bands = (torch.arange(len(clean)) + torch.rand(len(clean), generator=generator)) / len(clean)
        levels = (bands * len(self.alphas_cumprod)).long()
        t = levels[torch.randperm(len(clean), generator=generator)].to(clean.device)
        noise = torch.randn(clean.shape, generator=generator).to(clean.device)
        noisy = self.noise_schedule.add_noise(clean, noise, t)
        prediction = self.unet(noisy, t, self.text_encoder(text)[0]).sample
        loss = weighted_noise_loss(prediction, noise, self.alphas_cumprod[t])
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*self.learning, self.table], 1.0)
        self.optimiser.step()
        self.schedule.step()
        with torch.no_grad():  # halves as `_TrainingSet.batch` orders them: the drawings, then the known shapes
            new, known = (weighted_noise_loss(prediction[h], noise[h], self.alphas_cumprod[t[h]]).item()
                          for h in (slice(None, len(clean) // 2), slice(len(clean) // 2, None)))  # fmt: skip
        return loss.item(), new, known

    def taught(self) -> dict[str, torch.Tensor]:
        """5. What was learned: the word's rows, and the UNet weights that learned."""
        tensors = {ROWS: self.table[self.ids].detach().clone()}
        return tensors | {f"unet.{n}": p.detach().clone() for n, p in self.unet.named_parameters() if p.requires_grad}


def teach(
    model: DiffusionModel,
    drawings: Sequence[Drawing],
    word: str,
    *,
    steps: int,
    seed: int,
    on_progress: Callable[[TeachProgress], None],
    should_stop: Callable[[], bool],
    config: TeachConfig | None = None,
) -> TaughtWord:
    """Teach `word` from the class's drawings; the model itself is left as it was (a copy learns).

    `should_stop` is asked before every step: teaching then ends at once with what was
    learned so far (`TaughtWord.steps` says how far it got).
    """
    config = config or TeachConfig()
    started = time.perf_counter()
    # 1. Check inputs, all of them, before any work.
    ids = check_word(model, word)
    word = word.lower()
    if not drawings:
        raise ValueError("There are no drawings to learn from: ask the class to draw the shape first.")
    if len(drawings) > MAX_DRAWINGS:
        raise ValueError(f"{len(drawings)} drawings are too many: keep at most {MAX_DRAWINGS}.")
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"The number of training steps must be between 1 and {MAX_STEPS}.")

    # 2-3. The pictures, encoded once.
    pictures = _training_set(model, drawings, word, seed, config)
    # 4. The copies learn, a step at a time; now and then they paint the new word.
    learner = _Learner(model, ids, steps, config)
    view = _sampling_view(model, learner.text_encoder, learner.unet)
    generator = torch.Generator("cpu").manual_seed(seed)
    done = 0
    for step in range(1, steps + 1):
        if should_stop():
            break
        loss, new, known = learner.step(*pictures.batch(config.batch, config.caption_dropout, generator), generator)
        done = step
        samples = None
        if step == steps or (config.sample_every and step % config.sample_every == 0):
            samples = _samples(view, word, config)
        on_progress(TeachProgress(step, steps, loss, samples, time.perf_counter() - started, new, known))

    # 5. The taught word: a few tensors, kept apart from Shapes.
    details = {"trains": config.trains, "seed": str(seed), "drawings": str(len(drawings))}
    return TaughtWord(word, ids, learner.taught(), steps=done, details=details)
