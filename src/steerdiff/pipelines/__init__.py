"""diffusers pipelines (Stable Diffusion) as steerdiff denoisers.

Modules:

- ``stable_diffusion``: was ``steerdiff.pipelines``
"""

# steerdiff.pipelines was one module: every name it defined (private ones too) stays importable from here
from .stable_diffusion import (  # noqa: F401
    DecodedEmbedding,
    PipelineDenoiser,
    _CFGNet,
    _check_pipeline,
    decoded,
    from_pipeline,
    load_pipeline,
    particle_callback,
    pipeline_from_options,
    style_latents,
    tiny_pipeline,
    train_latent_classifier,
)

__all__ = [
    "PipelineDenoiser",
    "from_pipeline",
    "load_pipeline",
    "particle_callback",
    "pipeline_from_options",
    "DecodedEmbedding",
    "decoded",
    "style_latents",
    "train_latent_classifier",
    "tiny_pipeline",
]
