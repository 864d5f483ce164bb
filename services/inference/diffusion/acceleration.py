"""Making the UNet faster on a GPU, and choosing how many students share one UNet call.

Three speed options:

- `CLASSROOM_UNET_CHANNELS_LAST`: the UNet's weights in channels-last memory
  format, which convolution kernels on tensor cores prefer. Off: it made the
  H100 16 % slower.
- `CLASSROOM_UNET_COMPILE`: `torch.compile` of the UNet. `auto`, the default,
  compiles on a CUDA GPU (mode `default`: 36 % more guided steps a second on the
  H100, within the tests' tolerance of diffusers' pipeline) and stays off on a
  CPU (inductor's C++ build takes minutes there for a model that gains little).
  A compiled UNet is specialised to its input shapes, so batches are padded up
  to a few bucket sizes (1, 2, 4, ... generations up to the largest batch, or
  `CLASSROOM_UNET_COMPILE_BUCKETS`) and every bucket is compiled at start-up,
  before the service reports SERVING. What the compiler makes is kept on disk
  (compile_cache.py, `CLASSROOM_COMPILE_CACHE_DIR`), so later starts load it
  in seconds. Under `auto` a compile that fails leaves the UNet as it was (the
  log says why); a mode asked for by name fails the start instead. The mode
  `reduce-overhead` adds a CUDA graph per bucket (1 % more on the H100).
- attention through PyTorch's scaled-dot-product attention (SDPA) is diffusers'
  own default (`AttnProcessor2_0`); `attention_kinds` names the processors the
  UNet has, and the GPU suite counts the SDPA calls one UNet call makes.

When `CLASSROOM_MAX_BATCH_SIZE` is unset on a GPU, the largest batch is chosen
from the GPU's free memory, measured with the model loaded.

The GPU suite (`tests/bench/gpu_suite/`) measures each option alone and
together, with its difference from diffusers' pipeline; docs/benchmarks.md
records what it found and which options pay.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from services.inference.diffusion.compile_cache import (
    cache_counts,
    cache_folder,
    cache_key,
    compiled_before,
    counted_since,
    record_start,
    use_cache_folder,
)
from services.inference.diffusion.models import DiffusionModel
from services.inference.settings import InferenceSettings

log = logging.getLogger(__name__)

# The automatic batch size never goes past this many generations per UNet call:
# past it a class's pictures arrive no sooner (the GPU is already full), only later together.
MAX_AUTO_BATCH = 64
# On a CPU there is no memory to measure: the service's long-standing default.
CPU_BATCH = 4
# What `CLASSROOM_UNET_COMPILE=auto` compiles with on a CUDA GPU: CUDA graphs added only 1 % on the H100.
AUTO_COMPILE_MODE = "default"


@dataclass
class Acceleration:
    """What start-up decided and did to the UNet, for the log, the GPU suite and the teacher's page."""

    attention: list[str] = field(default_factory=list)  # attention processor classes in the UNet
    channels_last: bool = False
    compile_mode: str = "off"
    buckets: tuple[int, ...] = ()  # generations per UNet call the compiled UNet is prepared for
    compile_seconds: float = 0.0  # paid at start-up, before SERVING
    compile_cache: str = ""  # the folder of this start's compile caches (compile_cache.py)
    compiled_before: bool = False  # an earlier start compiled every bucket into that folder
    cache_counts: dict[str, int] = field(default_factory=dict)  # the caches' hits and misses in this compile
    compile_error: str = ""  # why `auto` left the UNet uncompiled
    max_batch_size: int = 0
    max_batch_source: str = "setting"  # "setting", "gpu memory" or "cpu default"
    bytes_per_generation: int = 0  # GPU memory one more generation in a UNet call takes
    free_bytes: int = 0  # the GPU's free memory when the batch size was chosen

    def describe(self) -> str:
        compiled = f"compile {self.compile_mode}"
        if self.buckets:
            compiled += f" for batches of {', '.join(map(str, self.buckets))} ({self.compile_seconds:.0f} s)"
        if self.compile_cache:
            counts = self.cache_counts
            compiled += (
                f" from {'a warm' if self.compiled_before else 'a cold'} cache (graphs: {counts.get('graph_hits', 0)} "
                f"loaded, {counts.get('graph_misses', 0)} compiled; in {self.compile_cache})"
            )
        if self.compile_error:
            compiled += f" (compiling failed: {self.compile_error})"
        batch = f"max batch {self.max_batch_size} ({self.max_batch_source})"
        if self.bytes_per_generation:
            batch += (
                f": {self.free_bytes / 2**30:.1f} GiB free, {self.bytes_per_generation / 2**30:.2f} GiB a generation"
            )
        return (
            f"attention {', '.join(self.attention) or 'none'}; channels_last {'on' if self.channels_last else 'off'}; "
            f"{compiled}; {batch}"
        )


def attention_kinds(unet: torch.nn.Module) -> list[str]:
    """The attention processor classes the UNet runs (AttnProcessor2_0 is PyTorch's SDPA)."""
    processors: dict[str, Any] = getattr(unet, "attn_processors", {})
    return sorted({type(processor).__name__ for processor in processors.values()})


def buckets_up_to(max_batch: int) -> tuple[int, ...]:
    """1, 2, 4, ... generations, and the largest batch itself: the shapes a compiled UNet is built for."""
    sizes, size = [], 1
    while size < max_batch:
        sizes.append(size)
        size *= 2
    sizes.append(max(1, max_batch))
    return tuple(sizes)


def compile_buckets(setting: str, max_batch: int) -> tuple[int, ...]:
    """The buckets to compile: those set (below the largest batch, which is always one), else 1, 2, 4, ..."""
    if not setting.strip():
        return buckets_up_to(max_batch)
    chosen = {int(part) for part in setting.split(",") if part.strip()}
    return tuple(sorted({bucket for bucket in chosen if bucket < max_batch} | {max(1, max_batch)}))


def compile_mode(setting: str, device: torch.device) -> str:
    """What `CLASSROOM_UNET_COMPILE` means on this device: `auto` compiles on a CUDA GPU and stays off on a CPU."""
    if setting != "auto":
        return setting
    return AUTO_COMPILE_MODE if device.type == "cuda" else "off"


def bucket_for(generations: int, buckets: tuple[int, ...]) -> int:
    """The smallest bucket that holds this many generations (itself, past the largest)."""
    return next((bucket for bucket in buckets if bucket >= generations), generations)


class BucketedUNet(torch.nn.Module):
    """The UNet behind `torch.compile`, fed batches padded up to a bucket so that few shapes are compiled.

    Every generation brings two rows (unconditional, conditional). Padding rows
    are zeros and are cut off the output: each sample's result depends only on
    its own rows. Anything else asked of it (config, attention processors) is the UNet's.
    """

    def __init__(
        self,
        unet: torch.nn.Module,
        compiled: Callable[..., Any],
        buckets: tuple[int, ...],
        cuda_graphs: bool,
    ) -> None:
        super().__init__()
        self.unet = unet
        self.compiled = compiled
        self.buckets = buckets
        self.cuda_graphs = cuda_graphs

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["unet"], name)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        return_dict: bool = False,
    ) -> tuple[torch.Tensor]:
        rows = sample.shape[0]
        padded = 2 * bucket_for(math.ceil(rows / 2), self.buckets)
        timestep = timestep.reshape(-1).expand(rows) if timestep.numel() == 1 else timestep
        if padded > rows:
            extra = padded - rows
            sample = torch.cat([sample, sample.new_zeros((extra, *sample.shape[1:]))])
            timestep = torch.cat([timestep, timestep[-1:].expand(extra)])
            encoder_hidden_states = torch.cat(
                [encoder_hidden_states, encoder_hidden_states.new_zeros((extra, *encoder_hidden_states.shape[1:]))]
            )
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        noise = self.compiled(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]
        # A CUDA graph reuses its output buffer at the next replay: keep our own copy.
        noise = noise[:rows].clone() if self.cuda_graphs else noise[:rows]
        return (noise,)


def _dummy_inputs(model: DiffusionModel, generations: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the UNet sees for this many guided generations at the model's default size (zeros)."""
    side = model.default_size // model.vae_downsample_factor
    rows = 2 * generations
    sample = torch.zeros((rows, model.latent_channels, side, side), device=model.device, dtype=model.dtype)
    timestep = torch.full((rows,), 500.0, device=model.device)
    hidden = int(model.text_encoder.config.hidden_size)
    text = torch.zeros((rows, model.max_length, hidden), device=model.device, dtype=model.dtype)
    return sample, timestep, text


@torch.inference_mode()
def _peak_bytes(model: DiffusionModel, run: Callable[[], object]) -> int:
    """GPU memory `run` needs beyond what is allocated now (its peak)."""
    torch.cuda.synchronize(model.device)
    torch.cuda.reset_peak_memory_stats(model.device)
    before = torch.cuda.memory_allocated(model.device)
    run()
    torch.cuda.synchronize(model.device)
    return torch.cuda.max_memory_allocated(model.device) - before


def max_batch_from_memory(model: DiffusionModel, fraction: float, cap: int = MAX_AUTO_BATCH) -> tuple[int, int, int]:
    """The largest power-of-two batch whose UNet call, plus one VAE decode, fits in `fraction` of free memory.

    Measured, not guessed: the peak of a guided UNet call at 2 and at 4
    generations gives the memory of one more generation; the peak of one VAE
    decode is kept aside (students finishing decode one at a time).
    Returns (generations, bytes per generation, free bytes).
    """

    def unet_call(generations: int) -> Callable[[], object]:
        sample, timestep, text = _dummy_inputs(model, generations)
        return lambda: model.unet(sample, timestep, encoder_hidden_states=text, return_dict=False)

    two, four = _peak_bytes(model, unet_call(2)), _peak_bytes(model, unet_call(4))
    per_generation = max((four - two) // 2, 1)
    fixed = max(two - 2 * per_generation, 0)
    side = model.default_size // model.vae_downsample_factor
    latent = torch.zeros((1, model.latent_channels, side, side), device=model.device, dtype=model.dtype)
    decode = _peak_bytes(model, lambda: model.vae.decode(latent, return_dict=False))
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(model.device)
    return batch_that_fits(free * fraction - fixed - decode, per_generation, cap), per_generation, free


def batch_that_fits(budget_bytes: float, per_generation: int, cap: int = MAX_AUTO_BATCH) -> int:
    """The largest power of two of generations, at most `cap`, whose memory fits the budget (at least 1)."""
    fits = max(1, int(budget_bytes // max(per_generation, 1)))
    return 2 ** int(math.log2(min(fits, cap)))


def compile_unet(
    model: DiffusionModel, mode: str, buckets: tuple[int, ...], backend: str | Callable[..., Any] = "inductor"
) -> tuple[BucketedUNet, float]:
    """Compile the UNet for every bucket now (minutes on a GPU), so no student's step waits for it."""
    cuda_graphs = mode == "reduce-overhead" and model.device.type == "cuda"
    # One graph per bucket: past Dynamo's limit of recompiles a bucket would run uncompiled.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, len(buckets) + 1)
    compiled = torch.compile(
        model.unet, mode=None if mode == "default" else mode, backend=backend, dynamic=False, fullgraph=False
    )
    wrapper = BucketedUNet(model.unet, compiled, buckets, cuda_graphs)
    started = time.perf_counter()
    with torch.inference_mode():
        for bucket in buckets:
            sample, timestep, text = _dummy_inputs(model, bucket)
            for _ in range(3 if cuda_graphs else 1):  # CUDA graphs are recorded on a later call than the first
                wrapper(sample, timestep, encoder_hidden_states=text)
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    return wrapper, time.perf_counter() - started


def accelerate(
    model: DiffusionModel, settings: InferenceSettings, backend: str | Callable[..., Any] | None = None
) -> Acceleration:
    """Apply the speed settings to a loaded model and decide the largest batch; before the service says SERVING.

    `backend` is torch.compile's (a test's own function too); unset, `CLASSROOM_UNET_COMPILE_BACKEND`'s.
    """
    report = Acceleration(attention=attention_kinds(model.unet), max_batch_size=settings.max_batch_size)
    if settings.unet_channels_last:
        model.unet.to(memory_format=torch.channels_last)
        report.channels_last = True
    if not settings.max_batch_size:
        if model.device.type == "cuda":
            report.max_batch_size, report.bytes_per_generation, report.free_bytes = max_batch_from_memory(
                model, settings.gpu_memory_fraction
            )
            report.max_batch_source = "gpu memory"
        else:
            report.max_batch_size, report.max_batch_source = CPU_BATCH, "cpu default"
    mode = compile_mode(settings.unet_compile, model.device)
    if mode != "off":
        try:
            _compile(model, settings, report, mode, backend or settings.unet_compile_backend)
        except Exception as error:
            if settings.unet_compile != "auto":
                raise
            # `auto` is a default, not a demand: the class is served uncompiled rather than not at all.
            log.exception("compiling the UNet failed; it runs uncompiled")
            torch._dynamo.reset()
            report.compile_mode, report.buckets, report.compile_cache = "off", (), ""
            report.compile_error = f"{type(error).__name__}: {error}"[:300]
    log.info("UNet: %s", report.describe())
    return report


def _compile(
    model: DiffusionModel,
    settings: InferenceSettings,
    report: Acceleration,
    mode: str,
    backend: str | Callable[..., Any],
) -> None:
    """Compile every bucket, keeping what the compiler makes in this model's, torch's and device's cache folder."""
    report.compile_mode = mode
    report.buckets = compile_buckets(settings.unet_compile_buckets, report.max_batch_size)
    folder = None
    if settings.compile_cache_dir is not None:
        backend_name = backend if isinstance(backend, str) else getattr(backend, "__name__", "custom")
        key = cache_key(
            model.model_id, model.revision, model.device, model.dtype, report.channels_last, mode, backend_name
        )
        folder = cache_folder(settings.compile_cache_dir, key)
        try:
            use_cache_folder(folder, key)
        except OSError as error:
            log.warning("no compile cache at %s (%s): this start's compile is not kept", folder, error)
            folder = None
        else:
            report.compile_cache, report.compiled_before = str(folder), compiled_before(folder, report.buckets)
    before = cache_counts()
    model.unet, report.compile_seconds = compile_unet(model, mode, report.buckets, backend)
    report.cache_counts = counted_since(before)
    if folder is not None:
        start = {
            "buckets": list(report.buckets),
            "seconds": round(report.compile_seconds, 2),
            "compiled_before": report.compiled_before,
            **report.cache_counts,
        }
        try:
            record_start(folder, start)
        except OSError as error:
            log.warning("could not note this start in %s: %s", folder, error)
