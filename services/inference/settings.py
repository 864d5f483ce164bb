"""The inference service's settings: environment variables prefixed CLASSROOM_."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.channels import TlsClientSettings
from services.common.secrets import read_secret, with_password
from services.lessons.catalog import DEFAULT_CATALOG

SD15_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
# Stand-ins for planning (diffusion/simulated.py): SD 1.5's shapes, an H100's time per UNet call, no model.
SIMULATED = ("simulated-h100",)


class InferenceSettings(TlsClientSettings):
    """Everything the inference service can be told; each field is CLASSROOM_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="CLASSROOM_", extra="ignore")

    # Which model to run: "auto" (Stable Diffusion 1.5 on a CUDA GPU, the shipped Shapes
    # model otherwise), "shapes" (ours: small, offline, under two seconds a picture on a CPU),
    # "tiny" (random weights, for fast tests), a Hugging Face id (downloaded once into
    # the HF cache) or a local folder saved with save_pretrained. "simulated-h100" is no
    # model: it sleeps what an H100 takes per step and paints noise, for planning only.
    model: str = Field(
        "auto",
        description="'auto', 'shapes', 'tiny', a Hugging Face id, or a local folder (see the README); "
        "'simulated-h100' for planning only (docs/deploy.md).",
    )
    # A service open to the network is a class's: it refuses the simulated GPU unless told this too.
    allow_simulated_gpu: bool = Field(
        False, description="Let a service open to the network run a simulated GPU (planning, benchmarks)."
    )
    # A branch, tag or commit of a Hugging Face model; pinning a commit keeps
    # cached trajectories valid across restarts.
    model_revision: str | None = Field(None, description="Hugging Face revision (branch, tag or commit).")
    # Where the tiny model is built on first use.
    tiny_dir: Path = Field(
        Path.home() / ".cache" / "diffusion-classroom" / "tiny",
        description="Folder the 'tiny' model is built into on first use.",
    )
    # "auto" picks the GPU when there is one (float16), else the CPU (float32).
    device: str = Field("auto", description="'auto', 'cuda', 'cuda:N' or 'cpu'.")
    # Loopback unless told: listening on a network needs the API token (the server refuses to start without).
    host: str = Field("127.0.0.1", description="Address the gRPC server listens on (0.0.0.0: every interface).")
    # Every call but health must carry it (`authorization: Bearer <token>`); unset: no check (loopback only).
    api_token: str | None = Field(None, description="The token clients must send; unset: calls are not checked.")
    api_token_file: Path | None = Field(None, description="A file holding the API token (compose's secrets volume).")
    # Opens the TeacherService (the teacher's page); unset: nobody can call it.
    teacher_code: str | None = Field(
        None, description="The teacher code the teacher's page sends; unset: no teacher page."
    )
    # Compose and `make up` make one at the first start (make-secrets); CLASSROOM_TEACHER_CODE still wins.
    teacher_code_file: Path | None = Field(None, description="A file holding the teacher code (the secrets folder).")
    grpc_port: int = Field(50051, description="Port of the gRPC server (0 picks a free one).")
    # TLS: both set, the server speaks only TLS. Clients then need CLASSROOM_TLS_CA (the
    # container's own health check uses it too, or the certificate itself when it is self-signed).
    tls_cert: Path | None = Field(None, description="Server certificate chain (PEM); set with tls_key for TLS.")
    tls_key: Path | None = Field(None, description="Server private key (PEM); set with tls_cert for TLS.")
    # Open streams get this long to finish after SIGTERM before they are cut.
    shutdown_grace_s: float = Field(30.0, description="Seconds open streams get to finish on SIGTERM.")
    log_level: str = Field("INFO", description="Logging level: DEBUG, INFO, WARNING or ERROR.")
    # CPU threads torch may use; results match bit for bit only at equal counts.
    torch_threads: int | None = Field(None, description="torch intra-op threads (default: torch's choice).")
    # A class's training (lesson 10) runs on a thread of its own, with its own count: on a small shared CPU,
    # two threads waited on each other at every one of its many small operations (docs/benchmarks.md).
    teach_threads: int = Field(1, ge=0, description="torch threads of a class's training (0: as generation).")
    # jemalloc keeps the pages a step's tensors free for the next step (allocator.py); "system": glibc's.
    allocator: Literal["jemalloc", "system"] = Field(
        "jemalloc", description="'jemalloc' (when the machine has libjemalloc2) or 'system' (glibc's malloc)."
    )
    jemalloc_library: Path | None = Field(
        None, description="The libjemalloc.so.2 to preload (default: the system's, where Debian and others put it)."
    )

    # The trajectory cache. Empty: no cache (every request is computed).
    redis_url: str = Field("redis://localhost:6379/0", description="Redis for finished trajectories; empty: none.")
    redis_password_file: Path | None = Field(None, description="A file holding Redis's password.")
    # Signs every stored trajectory (HMAC), so entries written by anyone else are never served.
    # Unset: a random one per start (the cache then does not survive a restart).
    cache_secret: str | None = Field(None, description="The secret that signs cached trajectories.")
    cache_secret_file: Path | None = Field(None, description="A file holding the cache secret.")
    # Students' own results expire; lesson trajectories never do (see deploy/redis/).
    cache_ttl_s: int = Field(7 * 24 * 3600, gt=0, description="Seconds an ad-hoc trajectory stays in Redis.")
    # Finished trajectories kept in this process too, so a class opening the same
    # lesson reads Redis once.
    # After Redis fails, it is tried again this long later (requests go uncached meanwhile).
    cache_retry_s: float = Field(2.0, description="Seconds between attempts to reach Redis after it failed.")
    memory_cache_mb: int = Field(512, description="Megabytes of finished trajectories kept in memory.")
    # Off only to measure: every request then runs the model, even identical ones.
    single_flight: bool = Field(True, description="Identical requests share one run and the cache.")
    # Replicas on one Redis: a trajectory being computed is claimed there (a lease its replica renews),
    # and the others' readers follow its frames through Redis instead of computing it again.
    shared_flight: bool = Field(True, description="Replicas on one Redis compute each trajectory once.")
    # A replica that dies lets go of its claims this long after (then another replica takes them over).
    flight_lease_s: float = Field(3.0, ge=0.5, le=60, description="Seconds a dead replica's claims outlive it.")
    catalog: Path = Field(DEFAULT_CATALOG, description="The lesson catalog (YAML).")

    # Sharing the GPU. Generations denoised at once (their steps share UNet calls);
    # 0 decides for the device: on a GPU as many as fit in its free memory (at most 64), 4 on a CPU.
    max_batch_size: int = Field(
        0, description="Generations batched per UNet call (0: from the GPU's free memory, at most 64; 4 on a CPU)."
    )
    # The share of the GPU's free memory (after loading the model) the automatic batch size may plan to fill.
    gpu_memory_fraction: float = Field(
        0.8, gt=0, le=1, description="Share of free GPU memory the automatic batch size may use."
    )
    # Speed options (services/inference/diffusion/acceleration.py), on where the GPU suite showed they pay;
    # docs/benchmarks.md has each one's gain and its difference from diffusers' pipeline.
    # Channels-last made the H100 16 % slower: off.
    unet_channels_last: bool = Field(False, description="UNet weights in channels-last memory format (GPU).")
    # "auto": compiled on a CUDA GPU (mode "default", 36 % faster on the H100), never on a CPU (minutes
    # of C++ builds for little). Compiling happens at start-up, one shape per batch bucket, before the
    # service says SERVING: about 30 s a bucket the first time, seconds once the compile cache holds them.
    # "reduce-overhead" adds a CUDA graph per bucket; "off" runs the UNet as diffusers' pipeline does.
    unet_compile: Literal["auto", "off", "default", "reduce-overhead", "max-autotune"] = Field(
        "auto",
        description="torch.compile of the UNet: 'auto' (on a CUDA GPU; off on a CPU), 'off', 'default', "
        "'reduce-overhead' or 'max-autotune'.",
    )
    # "eager" traces the UNet as inductor would and runs it as it is: to tell a tracing problem from a
    # code generation one, and for tests on a CPU, where inductor's C++ build takes minutes.
    unet_compile_backend: Literal["inductor", "eager"] = Field(
        "inductor", description="torch.compile's backend: 'inductor', or 'eager' (traced, not compiled: tests)."
    )
    # Fewer buckets start sooner the first time; a batch between two buckets is padded up to the larger.
    unet_compile_buckets: str = Field(
        "",
        description="Batch sizes compiled, e.g. '8,32,64' (the largest batch is always one); "
        "empty: 1, 2, 4, ... up to the largest batch.",
    )
    # What compiling made, kept for later starts: one folder per torch, GPU and model (a volume in compose).
    # Empty: torch's own temporary folder, lost with the machine or container.
    compile_cache_dir: Path | None = Field(
        Path.home() / ".cache" / "diffusion-classroom" / "torch-compile",
        description="Folder of the compiled UNet's caches, kept between starts; empty: a temporary folder.",
    )
    # The queue is no deeper than a class can use: each student has one place at a time,
    # so 200 places are a large class each waiting once. Past them, or past the waiting
    # work below, requests are refused with a retry hint.
    max_queue: int = Field(200, description="Generations that may wait for the GPU before requests are refused.")
    # Work waiting or still to do on running pictures, in standard pictures (the model's default
    # steps at its native size, with the default probes): a 100-step picture counts four times,
    # a 768-pixel one 2.25 times on SD 1.5.
    max_queue_work: float = Field(
        100.0,
        description="Work waiting or left to run, in standard pictures (default steps, native size); 0: no limit.",
    )
    # One request, even on an idle server, in standard pictures: steps x pixels x the costly
    # probes (spec.work_of). 24 admits SD 1.5's largest (150 steps at 1024 px) and Shapes'
    # largest (100 steps at 128 px, both costly probes: 20), and stays well under max_queue_work,
    # so one request never fills the class's queue. A request above it is refused with a sentence
    # naming what to lower.
    max_request_work: float = Field(
        24.0, gt=0, description="Most work one request may ask for, in standard pictures (default steps, native size)."
    )
    # When several classes share one server (each front end sends its CLASSROOM_CLASS_NAME):
    # the most generations one class may have waiting. 0: no share per class.
    max_queue_per_class: int = Field(0, description="Generations one class may have waiting (0: no limit per class).")
    # One machine may sign in under several names; it may still hold only this many places.
    max_per_address: int = Field(
        3, description="Generations one browser address may have running or waiting (0: no limit)."
    )
    # Per student, in Redis (a token bucket): a burst of generations, then so many a
    # minute. Only generations the model computes count. 0: no limit.
    rate_limit_per_minute: float = Field(6.0, description="Generations a student may start per minute (0: no limit).")
    rate_limit_burst: int = Field(3, description="Generations a student may start at once before the rate applies.")
    # Tokenize and EncodePrompt run the text encoder: cheap, but not free for a script in a loop.
    text_rate_limit_per_minute: float = Field(
        120.0, description="Tokenize/EncodePrompt calls a student may make a minute."
    )
    text_rate_limit_burst: int = Field(20, description="Tokenize/EncodePrompt calls a student may make at once.")
    metrics_port: int = Field(9100, description="Port of the Prometheus /metrics endpoint (0: none).")
    # Who is generating, queue lengths: for the school's monitoring, not for students.
    metrics_host: str = Field("127.0.0.1", description="Address /metrics listens on (loopback unless set).")

    # Moderation: prompts with these words or phrases are refused before any model
    # work. Unset: no blocklist (the Docker deployment sets the shipped one).
    blocklist: Path | None = Field(None, description="Blocklist file (one word or phrase per line); unset: none.")
    # The Stable Diffusion safety checker on final images: "auto" applies it when the model
    # ships its weights (safety_checker/ and feature_extractor/), blurring flagged images.
    safety_checker: Literal["auto", "off"] = Field(
        "auto", description="'auto': check final images when the model has a safety checker; 'off': never."
    )
    # The picture of the model's guess at every step (include path decoded_x0_preview):
    # "auto" decodes with the model's own VAE when it is small enough to run every step
    # (Shapes, tiny), else the linear approximation; "vae" always the model's VAE (on SD 1.5
    # as costly as 1.5 UNet steps); "taesd" the tiny autoencoder TAESD (taesd_model);
    # "off" the linear approximation.
    preview_decoder: Literal["auto", "vae", "taesd", "off"] = Field(
        "auto", description="Decoder of the per-step pictures: 'auto', 'vae', 'taesd' or 'off' (linear map)."
    )
    # TAESD's weights: a Hugging Face id (downloaded once into the HF cache) or a local folder.
    taesd_model: str = Field("madebyollin/taesd", description="TAESD weights for preview_decoder 'taesd'.")

    # Limits a request must respect (GetModelInfo reports them to clients). Steps and sizes
    # also follow the model (validation.Limits.for_model): its card may lower max_steps, and a
    # side may be at most max_size_factor times the size it was trained at (Shapes: 64 px
    # native, so 128; SD 1.5: 512 native, so 1024). Far past its native size a model paints
    # broken patterns (Shapes at 512 px: noise, and 37 s on a CPU).
    min_steps: int = Field(1, description="Fewest denoising steps a request may ask for.")
    max_steps: int = Field(150, description="Most denoising steps a request may ask for (a model card may lower it).")
    max_guidance_scale: float = Field(30.0, description="Largest guidance scale a request may ask for.")
    min_size: int = Field(64, description="Smallest width or height in pixels.")
    max_size: int = Field(1024, description="Largest width or height in pixels, for any model.")
    max_size_factor: int = Field(
        2, ge=1, description="Largest width or height as a multiple of the model's native size."
    )
    max_prompt_chars: int = Field(1000, description="Longest prompt, in characters.")

    # Defaults for fields a request leaves unset.
    default_steps: int = Field(25, description="Denoising steps when a request does not say.")
    default_guidance_scale: float = Field(7.5, description="Guidance scale when a request does not say.")
    default_scheduler: str = Field("dpm_solver_pp", description="Scheduler when a request does not say.")

    @field_validator("compile_cache_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("unet_compile_buckets")
    @classmethod
    def _buckets(cls, value: str) -> str:
        parts = [part.strip() for part in value.split(",") if part.strip()]
        if not all(part.isdigit() and int(part) > 0 for part in parts):
            raise ValueError(f"CLASSROOM_UNET_COMPILE_BUCKETS must list batch sizes, e.g. '8,32,64', not {value!r}")
        return ",".join(parts)

    @model_validator(mode="after")
    def _tls_pair(self) -> InferenceSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("CLASSROOM_TLS_CERT and CLASSROOM_TLS_KEY must be set together")
        return self

    @model_validator(mode="after")
    def _simulated_only_when_meant(self) -> InferenceSettings:
        if self.model in SIMULATED and self.open_to_the_network and not self.allow_simulated_gpu:
            raise ValueError(
                f"CLASSROOM_MODEL={self.model} is a simulated GPU that paints noise, for planning only; a service "
                f"listening on {self.host} serves a class. Set CLASSROOM_ALLOW_SIMULATED_GPU=true if this is a test."
            )
        return self

    @model_validator(mode="after")
    def _secrets_from_files(self) -> InferenceSettings:
        self.api_token = read_secret(self.api_token, self.api_token_file)
        self.redis_url = with_password(self.redis_url, read_secret(None, self.redis_password_file))
        self.cache_secret = read_secret(self.cache_secret, self.cache_secret_file)
        self.teacher_code = read_secret(self.teacher_code, self.teacher_code_file)
        return self

    @property
    def open_to_the_network(self) -> bool:
        """Whether the gRPC port listens beyond this machine."""
        return not is_loopback(self.host)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
