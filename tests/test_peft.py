"""PEFT LoRA with MaskSub: only adapters (and the saved head) train, masks reach the sub branch, the
adapter saves and reloads to identical outputs. transformers 5.23's ViT names its attention projections
``q_proj``/``v_proj``; BERT keeps ``query``/``value``."""

import pytest
import torch
from helpers import ListDataset, tiny_bert, tiny_vit, training_args
from peft import LoraConfig, PeftModel, get_peft_model
from test_best_model import image_data, text_data

from masksub_hf import MaskSubTrainer

LORA = {"vit": (tiny_vit, image_data, ["q_proj", "v_proj"]), "bert": (tiny_bert, text_data, ["query", "value"])}


def lora_model(family):
    build, _, target_modules = LORA[family]
    config = LoraConfig(r=4, lora_alpha=8, target_modules=target_modules, modules_to_save=["classifier"],
                        init_lora_weights="gaussian")  # non-zero B: both LoRA factors get gradients at once
    return get_peft_model(build(), config)


def inputs_seen(model, family):
    """What enters the model on every forward: ViT token counts, BERT input ids."""
    seen = []
    if family == "vit":
        layer = model.base_model.model.vit.layers[0]
        layer.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[1]))
    else:
        embeddings = model.base_model.model.bert.embeddings.word_embeddings
        embeddings.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    return seen


def train(tmp_path, family, ratio):
    model = lora_model(family)
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    seen = inputs_seen(model, family)
    args = training_args(tmp_path, masksub_ratio=ratio, max_steps=2, per_device_train_batch_size=4,
                         learning_rate=1e-2)
    trainer = MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(LORA[family][1]()))
    trainer.train()
    return model, initial, seen, trainer


@pytest.mark.parametrize("family", list(LORA))
def test_lora_trains_adapters_only_with_masks_in_the_sub_branch(tmp_path, family):
    model, initial, seen, trainer = train(tmp_path / "run", family, ratio=0.5)
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, initial[name])}
    assert changed and all("lora_" in name or "modules_to_save" in name for name in changed)
    assert any("lora_A" in name for name in changed) and any("lora_B" in name for name in changed)
    if family == "vit":
        assert seen == [17, 9, 17, 9]  # main: CLS + 16 patches; sub: CLS + 8 kept
    else:  # main forwards see the clean ids, sub forwards the [MASK] (id 4) copy
        assert [bool((ids == 4).any()) for ids in seen] == [False, True, False, True]

    plain, _, _, _ = train(tmp_path / "plain", family, ratio=0.0)  # the sub branch changed the result
    assert any(not torch.equal(p, dict(plain.named_parameters())[name]) for name, p in model.named_parameters())

    trainer.save_model(str(tmp_path / "adapter"))
    reloaded = PeftModel.from_pretrained(LORA[family][0](), tmp_path / "adapter").eval()
    key = "pixel_values" if family == "vit" else "input_ids"
    batch = {key: torch.stack([item[key] for item in LORA[family][1](seed=1)[:4]])}
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, reloaded(**batch).logits)
