"""Activation checkpointing of the backbone: the same forward, gradients and BatchNorm statistics as without it, with
a fraction of the activations kept for the backward pass."""

import copy

import torch
import torch.nn.functional as F

from pspnet import PSPNet
from pspnet.bench.memory import saved_for_backward
from pspnet.engine.recipe import Recipe, training_model
from pspnet.model.recompute import recomputed


def step(model: PSPNet, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One forward and backward in training mode (dropout on, replayed in the recomputation); the main logits and
    every parameter's gradient."""
    torch.manual_seed(3)
    logits, aux = model(x)
    (F.cross_entropy(logits, target) + 0.4 * F.cross_entropy(aux, target)).backward()
    return logits.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}


def test_recomputed_blocks_give_the_same_outputs_gradients_and_batchnorm_statistics() -> None:
    torch.manual_seed(0)
    plain = PSPNet(4, backbone="resnet18", dropout=0.1).train()
    recomputing = copy.deepcopy(plain)
    recomputing.backbone.recompute = True
    x, target = torch.randn(2, 3, 40, 48), torch.randint(0, 4, (2, 40, 48))
    out_a, grads_a = step(plain, x, target)
    out_b, grads_b = step(recomputing, x, target)
    assert torch.equal(out_a, out_b)
    assert all(torch.allclose(grads_a[k], grads_b[k], rtol=1e-5, atol=1e-7) for k in grads_a)
    buffers_a, buffers_b = dict(plain.named_buffers()), dict(recomputing.named_buffers())
    assert all(torch.equal(buffers_a[k], buffers_b[k]) for k in buffers_a), "the recomputation counted twice"
    assert int(buffers_b["backbone.layer1.0.bn1.num_batches_tracked"]) == 1


def test_frozen_batchnorm_stays_frozen_in_the_recomputation() -> None:
    torch.manual_seed(0)
    model = PSPNet(3, backbone="resnet18", dropout=0.0).train()
    model.backbone.recompute = True
    norm = model.backbone.layer2[0].bn1
    norm.eval()
    before = norm.running_mean.clone()
    step(model, torch.randn(2, 3, 33, 33), torch.randint(0, 3, (2, 33, 33)))
    assert torch.equal(norm.running_mean, before) and norm.track_running_stats


def saved_bytes(model: PSPNet, x: torch.Tensor) -> int:
    return saved_for_backward(lambda: model(x))


def test_the_backbone_keeps_a_fraction_of_its_activations() -> None:
    torch.manual_seed(0)
    model = PSPNet(3, backbone="resnet50").train()
    x = torch.randn(1, 3, 97, 97)
    kept = saved_bytes(model, x)
    model.backbone.recompute = True
    recomputed = saved_bytes(model, x)
    assert recomputed < kept / 2, (kept, recomputed)  # 2.25×: the head, the aux head and the blocks' inputs remain


def test_the_recipe_switches_it_on_for_training_only_and_inference_is_untouched() -> None:
    model = PSPNet(3, backbone="resnet18").eval()
    x = torch.randn(1, 3, 33, 41)
    with torch.no_grad():
        expected = model(x)
    trained = training_model(model, Recipe(activation_checkpointing=True), "cpu")
    assert trained.backbone.recompute and Recipe(activation_checkpointing=True).describe() == \
        "fp32, activation checkpointing"
    with torch.no_grad():
        assert torch.equal(trained.eval()(x), expected)


class _TwoBlocks(torch.nn.Module):
    """Two of the backbone's blocks run as the backbone runs them with `recompute` on (compiled or not)."""

    def __init__(self) -> None:
        super().__init__()
        from pspnet.model.resnet import BasicBlock
        self.blocks = torch.nn.Sequential(BasicBlock(8, 8, 1, 1, "batch"),
                                          BasicBlock(8, 8, 1, 2, "batch"))
        self.recompute = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.recompute:
            return self.blocks(x)
        for block in self.blocks:
            x = recomputed(block, x)
        return x


def test_compiled_recomputation_updates_the_batchnorm_statistics_once() -> None:
    """Under torch.compile the recomputation cannot take the context that puts the statistics back; the compiled
    graph must apply their update once by itself (what lets training compile with activation checkpointing)."""
    torch.manual_seed(0)
    plain = _TwoBlocks().train()
    compiled_module = copy.deepcopy(plain)
    compiled_module.recompute = True
    compiled = torch.compile(compiled_module)
    x = torch.randn(2, 8, 12, 14)
    plain(x).square().mean().backward()
    compiled(x).square().mean().backward()
    buffers_a, buffers_b = dict(plain.named_buffers()), dict(compiled_module.named_buffers())
    assert all(torch.allclose(buffers_a[k], buffers_b[k], rtol=1e-5, atol=1e-6) for k in buffers_a), \
        "the compiled recomputation counted the statistics twice"
    assert int(buffers_b["blocks.0.bn1.num_batches_tracked"]) == 1
    grads_b = dict(compiled_module.named_parameters())
    for name, p in plain.named_parameters():
        assert torch.allclose(p.grad, grads_b[name].grad, rtol=1e-4, atol=1e-6), name
