"""Causal LMs (``*ForCausalLM``): what the exactness matrix (``llama_causal_lm_token_drop``) and
``tests/test_heads.py`` do not show: packed (padding-free) batches are refused in one line, before any update."""

import copy

import pytest
import torch
from exactness_cases import NextTokens
from helpers import ListDataset, training_args
from transformers import DataCollatorWithFlattening

from masksub_hf import MaskSubTrainer


def test_packed_batches_are_refused_in_one_line(tmp_path):
    case = NextTokens()
    model, items = case.build(tmp_path)
    before = copy.deepcopy(model.state_dict())
    trainer = MaskSubTrainer(model=model, args=training_args(tmp_path, masksub_ratio=0.3, per_device_train_batch_size=4,
                                                               max_steps=1),
                             train_dataset=ListDataset(items), data_collator=DataCollatorWithFlattening(),
                             processing_class=case.tokenizer)
    with pytest.raises(ValueError, match="cannot train causal LM batches packed into one row .* position_ids"):
        trainer.train()
    assert all(torch.equal(value, model.state_dict()[name]) for name, value in before.items())
