"""The functional API (plain PyTorch / Accelerate loops) computes what MaskSubTrainer computes."""

import copy
import json
from pathlib import Path

import pytest
import torch
from exactness_cases import CASES, assert_gradients_equal, reference_gradients
from helpers import GradientProbe, ListDataset, image_items, launch, tiny_vit, training_args
from references import assert_same_gradients
from transformers import ViTForImageClassification, default_data_collator

from masksub_hf import MaskSubTrainer
from masksub_hf.functional import masksub_step
from masksub_hf.masking import masking_for
from masksub_hf.objectives import objective_for

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "accelerate_loop.py"


def test_functional_step_gives_the_trainers_gradients(tmp_path):
    model = tiny_vit()
    items = image_items(8, torch.arange(8) % 3, num_keep=8)
    functional_model = copy.deepcopy(model)

    probe = GradientProbe()
    args = training_args(tmp_path, per_device_train_batch_size=8, max_steps=1)
    MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(items), callbacks=[probe]).train()

    batch = {k: torch.stack([item[k] for item in items]) for k in items[0]}
    masking = masking_for(functional_model, "auto", 0.5)
    main_loss, sub_loss = masksub_step(functional_model, {"pixel_values": batch["pixel_values"], "labels": batch["labels"]},
                                       masking, objective_for(functional_model), batch["masksub_keep_indices"])
    functional_gradients = {n: p.grad for n, p in functional_model.named_parameters() if p.grad is not None}
    assert_same_gradients(functional_gradients, probe.gradients[0])
    assert torch.isfinite(main_loss) and torch.isfinite(sub_loss)


@pytest.mark.slow
def test_accelerate_loop_example_on_two_processes(tmp_path):
    launch([EXAMPLE, "--use_cpu", "--output_dir", tmp_path, "--max_train_samples", "256", "--max_eval_samples", "128",
            "--per_device_train_batch_size", "32"], port=29519)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["distributed_type"] == "DistributedType.MULTI_CPU" and results["num_processes"] == 2
    assert results["eval_samples"] == 128 and results["final_main_loss"] > 0 and results["final_sub_loss"] > 0
    # The reported accuracy is the saved model's, a plain transformers model, on the 128 digits after the 256 trained on
    import importlib.util

    spec = importlib.util.spec_from_file_location("accelerate_loop", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    images, labels = example.mnist_digits(seed=0)
    pixels, targets = example.mnist_tensors(images[256:384], labels[256:384]).tensors
    model = ViTForImageClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        correct = int((model(pixel_values=pixels).logits.argmax(-1) == targets).sum())
    assert correct / 128 == results["eval_accuracy"]


@pytest.mark.parametrize("name", list(CASES))
def test_functional_step_is_the_method_for_every_case(tmp_path, name):
    """``masksub_step`` in a plain loop, on one batch of each exactness case (its collator's output; the mask drawn
    here where the trainer would draw it), with the head's default main branch: the method in plain torch."""
    case = CASES[name]()
    model, items = case.build(tmp_path)
    initial = copy.deepcopy(model)
    batch = (case.collator() or default_data_collator)(items)
    masking = masking_for(model, case.mode, case.ratio, getattr(case, "tokenizer", None),
                          case.args.get("masksub_block_size"))
    if masking.key not in batch:
        batch[masking.key] = masking.draw(batch, torch.Generator().manual_seed(0))
    if masking.parameters():  # a mask token MaskSub owns: the reference's copy of it
        case.token = torch.nn.Parameter(masking.parameters()[0].detach().clone())
    inputs = {key: value for key, value in batch.items() if not key.startswith("masksub_")}
    masksub_step(model, inputs, masking, objective_for(model), batch[masking.key])
    gradients = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    if case.token is not None:
        gradients["owned.0"] = masking.parameters()[0].grad
    assert_gradients_equal(gradients, reference_gradients(case, initial, [batch], "fp32"), "fp32", name)
