"""Network builders: diffusers ``UNet2DModel`` configurations sized for CPU training.

The ``lean`` preset (channels 16/32/64, one ResNet per block, attention only at the coarsest level
and in the mid block) is the shipped models'; ``small`` (32/64/64) is slower per step
for little gain on MNIST (measured in docs/benchmarks.md); ``tiny`` is for tests.
"""

from __future__ import annotations

from diffusers import UNet2DModel

PRESETS = {
    "lean": dict(block_out_channels=(16, 32, 64), layers_per_block=1),
    "small": dict(block_out_channels=(32, 64, 64), layers_per_block=1),
    "tiny": dict(block_out_channels=(8, 16), layers_per_block=1),  # tests only
}


def unet_config(
    preset: str,
    *,
    sample_size: int,
    in_channels: int,
    out_channels: int,
    num_class_embeds: int | None = None,
    dropout: float = 0.0,
) -> dict:
    """A ``UNet2DModel`` config dict (what ``save_pretrained`` writes as ``config.json``)."""
    p = PRESETS[preset]
    levels = len(p["block_out_channels"])
    return dict(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=out_channels,
        block_out_channels=list(p["block_out_channels"]),
        layers_per_block=p["layers_per_block"],
        down_block_types=["DownBlock2D"] * (levels - 1) + ["AttnDownBlock2D"],
        up_block_types=["AttnUpBlock2D"] + ["UpBlock2D"] * (levels - 1),
        norm_num_groups=min(8, p["block_out_channels"][0]),
        attention_head_dim=min(32, p["block_out_channels"][-1]),
        num_class_embeds=num_class_embeds,
        dropout=dropout,
    )


def build_unet(config: dict) -> UNet2DModel:
    """A freshly initialised ``UNet2DModel`` from a config dict."""
    return UNet2DModel.from_config(config)
