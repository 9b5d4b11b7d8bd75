"""steerdiff: steer the sampling of diffusion models at inference time.

Everything is a denoiser ``D(x, sigma, **cond) -> x0_hat`` (EDM convention); samplers, guidance,
compositions and edits are functions of denoisers. See README.md.
"""
from . import sampling
from .api import sample
from .compose import compose, mixture
from .denoisers import Denoiser, condition, DiscreteDenoiser, EDMDenoiser, ScoreDenoiser, score_of
from .diversity import SPELL, DPPGuidance, EntropyGuidance
from .errors import SteerdiffError
from .fixed_condition import CADS, CFG, cads, cads_pipeline, cfg
from .guidance import guided
from .models import load
from .particles import Archive, ParticleGuidance, Pilot, Repulsion
from .sampling import get_sigmas_karras, get_sigmas_ve, sigmas_from_scheduler
from .stratified import stratified_sample
from .toy import GaussianMixtureDenoiser, ring

__version__ = "0.1.0"
__all__ = ["sample", "load", "guided", "sampling", "get_sigmas_karras", "get_sigmas_ve", "sigmas_from_scheduler",
           "Denoiser", "EDMDenoiser", "DiscreteDenoiser", "ScoreDenoiser", "score_of", "GaussianMixtureDenoiser",
           "ring", "SteerdiffError", "ParticleGuidance", "Repulsion", "Archive", "Pilot", "stratified_sample", "compose",
           "mixture", "condition", "cfg", "cads", "cads_pipeline", "CFG", "CADS",
           "SPELL", "DPPGuidance", "EntropyGuidance"]
