import pytest
import torch
from diffusers import UNet2DModel

from steerdiff.nets import unet_config


@pytest.fixture
def tiny_unet():
    """A tiny random diffusers UNet2DModel at 8x8 with one channel, built from a config."""
    torch.manual_seed(0)
    return UNet2DModel.from_config(unet_config("tiny", sample_size=8, in_channels=1, out_channels=1)).eval()
