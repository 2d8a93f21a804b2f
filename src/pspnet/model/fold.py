"""BatchNorm folding: an inference-time transform of a PSPNet that keeps the function it computes."""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

# (convolution, normalisation) attribute pairs of our modules (resnet.py, pyramid_pooling.py, head.py); shortcut
# branches are nn.Sequential(conv, norm) and are paired by their indices "0", "1".
CONV_NORM_PAIRS: tuple[tuple[str, str], ...] = (
    ("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"), ("conv", "norm"), ("0", "1"),
)



def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with every BatchNorm that follows a convolution folded into it.

    conv(x)·γ/σ + (β − μγ/σ) is one convolution with scaled weights and a bias: the same function, one pass over
    the activations fewer. The model itself is left untouched (it may still be trained or saved).
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        for conv_name, norm_name in CONV_NORM_PAIRS:
            conv, norm = getattr(module, conv_name, None), getattr(module, norm_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.modules.batchnorm._BatchNorm):
                if norm.track_running_stats and norm.running_mean is not None:
                    setattr(module, conv_name, fuse_conv_bn_eval(conv, norm))
                    setattr(module, norm_name, nn.Identity())
    return folded
