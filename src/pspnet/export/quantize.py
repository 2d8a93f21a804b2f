"""int8 post-training quantisation of a PSPNet for CPU inference, through PyTorch 2 export (PT2E) and
`X86InductorQuantizer` (torchao): per-channel int8 weights, per-tensor uint8 activations calibrated on sample
inputs; Inductor then lowers the quantised graph to oneDNN int8 convolutions. Needs `pip install torchao`.

The graph is exported for one input shape: a quantised forward serves that shape only (the fixed-size windows of
the test protocol, or a fixed-size camera stream). Whether it keeps the answer is for `pspnet bench` to measure.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import torch
from torch import nn

from pspnet.errors import PSPNetError
from pspnet.model.fold import fold_batchnorm


def require_torchao() -> None:
    """Before a benchmark that ends with the int8 step: its absence said before the timings, not after them."""
    if importlib.util.find_spec("torchao") is None:
        raise PSPNetError("int8 quantisation in PyTorch (bench --int8) needs torchao, which no extra of pspnet "
                          "installs: pip install torchao (CPU int8 for use: `pspnet quantize`, OpenVINO)")


def quantize_int8(model: nn.Module, calibration: Sequence[torch.Tensor]) -> nn.Module:
    """An int8-quantised copy of eval-mode `model`, calibrated on `calibration` (normalised N×3×h×w batches, all of
    the shape it will be run at). Compile the result (`torch.compile` with freezing) to get int8 kernels."""
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )
    except ImportError as e:
        raise PSPNetError(f"int8 quantisation needs torchao ({e}); install it with `pip install torchao`") from None
    if not calibration:
        raise PSPNetError("int8 quantisation needs at least one calibration batch")
    example = calibration[0]
    with torch.no_grad():
        # BatchNorm folded first: the quantiser's conv + add + ReLU patterns do not match through an exported
        # BatchNorm, whose node has several outputs ("Input partition has more than one output node").
        exported = torch.export.export(fold_batchnorm(model), (example,)).module()
        quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(exported, quantizer)  # type: ignore[arg-type]
        for batch in calibration:
            if batch.shape != example.shape:
                raise PSPNetError(f"calibration batch of shape {tuple(batch.shape)}; the graph is exported for "
                                  f"{tuple(example.shape)}: give batches of one shape")
            prepared(batch)
        return convert_pt2e(prepared)
