"""What one generation is: the checked request (`GenerationSpec`), its branch, and what it costs the GPU."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.api import pb
from services.common.include_mask import ON_REQUEST_PROBES, Probe
from services.inference.settings import InferenceSettings


@dataclass(frozen=True)
class BranchSpec:
    """From step `at_step` on, the generation reads this prompt and negative prompt, at this guidance."""

    at_step: int
    prompt: str
    negative_prompt: str
    guidance_scale: float

    def to_proto(self) -> pb.Branch:
        return pb.Branch(
            at_step=self.at_step,
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            guidance_scale=self.guidance_scale,
        )


@dataclass(frozen=True)
class GenerationSpec:
    """A checked generation request with every default filled in."""

    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    guidance_scale: float
    width: int
    height: int
    scheduler: str
    include: frozenset[str]
    branch: BranchSpec | None = None  # lesson 8: the prompt or guidance changes at a step
    # Lesson 10: the digest of the word the class taught its model, when the prompts use it ("": the model
    # itself). Not part of the request: the service sets it from the class, and it names the trajectory.
    taught: str = ""

    def to_proto(self) -> pb.GenerateRequest:
        """The canonical request: what the header echoes and what identifies a trajectory."""
        request = pb.GenerateRequest(
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            seed=self.seed,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance_scale,
            width=self.width,
            height=self.height,
            scheduler=self.scheduler,
        )
        request.include.paths.extend(sorted(self.include))
        if self.branch is not None:
            request.branch.CopyFrom(self.branch.to_proto())
        return request

    @property
    def work(self) -> float:
        """What this generation costs the GPU (`work_of`); divide by `standard_work` for standard pictures."""
        return work_of(self.steps, self.width, self.height, self.include)

    @property
    def step_work(self) -> float:
        """What one of its denoising steps costs."""
        return self.work / self.steps

    def branched_at(self, step: int) -> bool:
        """Whether step `step` reads the branch's texts and guidance (lesson 8) rather than the request's."""
        return self.branch is not None and step >= self.branch.at_step

    def reads_at(self, step: int) -> tuple[str, str, float]:
        """The prompt, negative prompt and guidance scale that step `step` reads."""
        if self.branch is not None and self.branched_at(step):
            return self.branch.prompt, self.branch.negative_prompt, self.branch.guidance_scale
        return self.prompt, self.negative_prompt, self.guidance_scale


# -- what a request costs: its price in standard pictures -------------------
# A UNet step's work grows with the pixels (the latent has one position per 8 x 8 pixels, and
# every layer's work grows with the positions), and a generation runs one such step per denoising
# step, on both guidance branches. The costly probes add work to every step they are asked for;
# their factors are the ratios measured on Shapes at 64 px (docs/benchmarks.md, "The costly probes":
# attention maps 1.13, a decoded guess 1.53), rounded up. A branch (lesson 8) runs every step itself,
# those it shares with its original too, so it is priced by all its steps like any request.
PROBE_COST: dict[str, float] = {Probe.CROSS_ATTENTION: 1.25, Probe.DECODED_X0_PREVIEW: 1.5}
assert PROBE_COST.keys() == ON_REQUEST_PROBES


def work_of(steps: int, width: int, height: int, include: frozenset[str]) -> float:
    """What a generation costs the GPU: steps x pixels x the costly probes it asks for (unitless)."""
    factor = 1.0
    for probe in include & ON_REQUEST_PROBES:
        factor *= PROBE_COST[probe]
    return steps * width * height * factor


def standard_work(settings: InferenceSettings, native_size: int, default_include: frozenset[str]) -> float:
    """The work of one standard picture: the default steps, at the model's native size, with the default probes."""
    return work_of(settings.default_steps, native_size, native_size, default_include)
