import pytest
import torch
from diffusers import UNet2DModel

from steerdiff.nets import unet_config


@pytest.fixture
def tiny_unet():
    """A tiny random diffusers UNet2DModel at 8x8 with one channel, built from a config."""
    torch.manual_seed(0)
    return UNet2DModel.from_config(unet_config("tiny", sample_size=8, in_channels=1, out_channels=1)).eval()


def save_tiny_colormnist(d, attention: bool = False) -> str:
    """Save a random one-level UNet checkpoint of ColorMNIST's shape (3, 28, 28) to ``d``, recorded as
    trained on the set data (``attention``: with self-attention in the mid block and in the up block
    after h, as the shipped nets have); returns its path."""
    from steerdiff import checkpoint as ckpt
    from steerdiff.nets import build_unet

    torch.manual_seed(0)
    ucfg = dict(
        sample_size=28,
        in_channels=3,
        out_channels=3,
        block_out_channels=[8],
        layers_per_block=1,
        down_block_types=["AttnDownBlock2D" if attention else "DownBlock2D"],
        up_block_types=["AttnUpBlock2D" if attention else "UpBlock2D"],
        norm_num_groups=4,
        add_attention=attention,
        **({"attention_head_dim": 4} if attention else {}),
    )
    conf = {
        "format": "steerdiff-checkpoint",
        "kind": "edm",
        "dataset": "colormnist-sets",
        "sample_shape": [3, 28, 28],
        "sigma_data": 0.5,
        "sigma_min": 0.002,
        "sigma_max": 80.0,
        "time_scale": 250.0,
    }
    return str(ckpt.save_checkpoint(d, conf, ucfg, build_unet(ucfg).state_dict()))


@pytest.fixture(scope="session")
def tiny_colormnist_checkpoint(tmp_path_factory):
    """A random one-level UNet checkpoint of ColorMNIST's shape (3, 28, 28), recorded as trained on the
    set data: a model that ``--model DIR`` loads and the edit commands accept."""
    return save_tiny_colormnist(tmp_path_factory.mktemp("tiny") / "model")
