"""Causal LMs (``*ForCausalLM``): what the exactness matrix (``llama_causal_lm_token_drop``) does not show.

- with ``masksub_main_weight=1, masksub_sub_weight=0`` a step's gradient is plain ``Trainer``'s (accumulation 2,
  unequal supervised tokens, a completion-only prompt), while the sub branch still runs;
- packed (padding-free) batches are refused in one line, before any update.
"""

import copy

import pytest
import torch
import transformers
from exactness_cases import NextTokens
from helpers import GradientProbe, ListDataset, training_args
from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening, Trainer, TrainingArguments

from masksub_hf import MaskSubTrainer


def plain_arguments(folder, **overrides):
    return TrainingArguments(str(folder), use_cpu=True, report_to="none", save_strategy="no", learning_rate=1e-3,
                             lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=0.0, seed=0,
                             disable_tqdm=True, **overrides)


def test_main_branch_alone_is_plain_trainers_step(tmp_path):
    case = NextTokens()
    model, items = case.build(tmp_path)
    plain_model = copy.deepcopy(model)
    shape = dict(per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=1, logging_steps=1)
    masksub_probe, plain_probe = GradientProbe(), GradientProbe()
    trainer = MaskSubTrainer(model=model, args=training_args(tmp_path / "masksub", masksub_ratio=0.3,
                                                               masksub_main_weight=1.0, masksub_sub_weight=0.0,
                                                               **shape),
                             train_dataset=ListDataset(items), data_collator=case.collator(), callbacks=[masksub_probe])
    trainer.train()
    Trainer(model=plain_model, args=plain_arguments(tmp_path / "plain", **shape), train_dataset=ListDataset(items),
            data_collator=DataCollatorForSeq2Seq(case.tokenizer), callbacks=[plain_probe]).train()
    assert trainer.masking.mode == "text_drop"
    assert [entry["sub_loss"] for entry in trainer.state.log_history if "sub_loss" in entry][0] > 0  # it ran
    expected = plain_probe.gradients[0]
    assert expected.keys() == masksub_probe.gradients[0].keys()
    for name, gradient in expected.items():
        torch.testing.assert_close(masksub_probe.gradients[0][name], gradient, rtol=1e-5, atol=1e-7, msg=name)


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


def test_unsupported_heads_still_get_one_line(tmp_path):
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=16)
    with pytest.raises(ValueError, match="no sub-branch objective for BertForQuestionAnswering: it trains .*causal "
                                         "language models"):
        MaskSubTrainer(model=transformers.BertForQuestionAnswering(config), args=training_args(tmp_path))
