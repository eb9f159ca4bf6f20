"""On a GPU: one MaskSub step's gradients on CUDA equal the same step on the CPU (fp32, TF32 off), for token
drop (ViT), zero-filled pixel blocks (ResNet) and [MASK] (BERT), each with the same mask on both devices.

Skipped without CUDA: `python benchmarks/gpu.py` runs it on a lent GPU. Tolerance: 1e-4 of the largest
gradient, absolute (reduction orders differ between the devices' kernels; a mask that did not reach the sub
branch, or a branch left out, is off by far more).
"""

import copy

import pytest
import torch
from helpers import tiny_bert, tiny_vit
from transformers import ResNetConfig, ResNetForImageClassification

from masksub_hf.functional import masksub_step
from masksub_hf.masking import PixelMasking, TextMasking, masking_for
from masksub_hf.objectives import objective_for

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu.py)")


def tiny_resnet():
    torch.manual_seed(0)
    return ResNetForImageClassification(ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16],
                                                     depths=[1, 1], layer_type="basic", num_labels=3))


def case(name):
    """(model, inputs, labels, masking, mask): the same mask for both devices, drawn once on the CPU."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1, 2, 1])
    if name == "bert":
        model = tiny_bert(num_labels=3)
        input_ids = torch.randint(5, 64, (4, 12), generator=generator)
        inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
        masking = TextMasking(mask_token_id=4, special_token_ids=[0, 1, 2, 3, 4], ratio=0.15)
    else:
        model = tiny_vit() if name == "vit" else tiny_resnet()
        inputs = {"pixel_values": torch.randn(4, 3, 32, 32, generator=generator)}
        masking = masking_for(model, "auto", 0.5) if name == "vit" else PixelMasking(0.5)
    return model, inputs, labels, masking, masking.draw(inputs, generator)


def gradients(model, inputs, labels, masking, mask, device):
    model = model.to(device)
    moved = {k: v.to(device) for k, v in inputs.items()}
    masksub_step(model, {**moved, "labels": labels.to(device)}, masking, objective_for(model), mask.to(device))
    masking.remove_hooks()
    return {n: p.grad.detach().cpu() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", ["vit", "resnet", "bert"])
def test_cuda_gradients_equal_cpu_gradients(name):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model, inputs, labels, masking, mask = case(name)
    on_cpu = gradients(copy.deepcopy(model), inputs, labels, masking, mask, "cpu")
    on_cuda = gradients(model, inputs, labels, masking, mask, "cuda")
    scale = max(g.abs().max() for g in on_cpu.values())
    assert scale > 0 and on_cpu.keys() == on_cuda.keys()
    for parameter, expected in on_cpu.items():
        assert (on_cuda[parameter] - expected).abs().max() <= 1e-4 * scale, parameter
