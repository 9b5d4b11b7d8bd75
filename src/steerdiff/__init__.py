"""steerdiff: steer the sampling of diffusion models at inference time.

Everything is a denoiser ``D(x, sigma, **cond) -> x0_hat`` (EDM convention); samplers, guidance,
compositions and edits are functions of denoisers. See README.md.
"""

from .compose.sculpt import compose, mixture
from .core import sampling
from .core.api import sample
from .core.denoisers import Denoiser, DiscreteDenoiser, EDMDenoiser, ScoreDenoiser, condition, score_of
from .core.errors import SteerdiffError
from .core.guidance import FunctionTerm, GuidanceTerm, guided
from .core.sampling import get_sigmas_karras, get_sigmas_ve, sigmas_from_scheduler
from .core.toy import GaussianMixtureDenoiser, ring
from .models import load
from .particles.diversity import SPELL, DPPGuidance, EntropyGuidance, HerdingGuidance
from .particles.draw import SamplingOptions, draw
from .particles.fixed_condition import CADS, CFG, cads, cads_pipeline, cfg
from .particles.noise import SimplexNoise
from .particles.pg import Archive, LabelGuidance, ParticleGuidance, Pilot, Repulsion
from .particles.stratified import stratified_sample

__version__ = "0.1.0"
__all__ = [
    "sample",
    "load",
    "guided",
    "sampling",
    "get_sigmas_karras",
    "get_sigmas_ve",
    "sigmas_from_scheduler",
    "Denoiser",
    "EDMDenoiser",
    "DiscreteDenoiser",
    "ScoreDenoiser",
    "score_of",
    "GaussianMixtureDenoiser",
    "ring",
    "SteerdiffError",
    "ParticleGuidance",
    "Repulsion",
    "Archive",
    "Pilot",
    "stratified_sample",
    "compose",
    "mixture",
    "condition",
    "cfg",
    "cads",
    "cads_pipeline",
    "CFG",
    "CADS",
    "SPELL",
    "DPPGuidance",
    "EntropyGuidance",
    "HerdingGuidance",
    "SimplexNoise",
    "GuidanceTerm",
    "FunctionTerm",
    "LabelGuidance",
    "SamplingOptions",
    "draw",
]


# Modules that moved (steerdiff.toy is steerdiff.core.toy, ...) stay attributes of the package:
# ``sd.toy`` imports the old path on first use, like ``import steerdiff.toy`` would.
_MOVED_MODULES = {
    "api",
    "classifier",
    "compose",
    "compose_eval",
    "denoisers",
    "distributed",
    "diversity",
    "edit",
    "edit_eval",
    "embeddings",
    "errors",
    "evaluate",
    "features",
    "fixed_condition",
    "guidance",
    "joint",
    "kernels",
    "metrics",
    "nets",
    "particles",
    "pipelines",
    "quality",
    "report",
    "sampling",
    "schedules_ddpm",
    "seeding",
    "sequences",
    "stratified",
    "toy",
    "training",
}


def __getattr__(name: str):
    if name in _MOVED_MODULES:
        from importlib import import_module

        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
