"""``masksub_mode=text_drop``: the sub branch without ``ratio`` of each row's real tokens, for any tokenizer.

Decoder-only sequence classifiers (Llama, Qwen2, Mistral, GPT-2; left and right padding) and BERT, tiny and
built from configs, a byte-level BPE tokenizer without a mask token trained on real reviews:
- the batched, repacked sub input gives each row the logits of that row's kept tokens run alone, unpadded,
  at their original positions (the model's own pooling picks the same token);
- the pooled (last real) token, special tokens and padding are never dropped, the count is the ratio's;
- a MaskSubTrainer step's gradients equal a plain PyTorch step that builds the sub inputs row by row;
- ``auto`` picks ``text_drop`` for a tokenizer without a mask token, ``text`` for BERT's;
- LoRA (PEFT): only the adapters and the head train;
- heads MaskSub has no sub loss for (masked LM, seq2seq, segmentation) get a one-line error.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from helpers import (
    GradientProbe,
    ListDataset,
    RecordingCollator,
    bpe_tokenizer,
    tiny_bert,
    training_args,
    word_tokenizer,
)
from models import REVIEWS, tiny_decoder
from references import kept_positions, row_by_row_logits
from transformers import (
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
)

from masksub_hf import MaskSubTrainer
from masksub_hf.functional import batch_items
from masksub_hf.masking import TextMasking, TextTokenDrop, masking_for, num_masked
from masksub_hf.objectives import CausalLMObjective

DECODERS = ["llama", "qwen2", "mistral", "gpt2"]


def setup(family, padding_side, tmp_path):
    """(model, tokenizer): a decoder with the BPE tokenizer, or BERT with a word-piece one (it has [MASK])."""
    if family == "bert":
        tokenizer = word_tokenizer(tmp_path / "vocab", REVIEWS)
        tokenizer.padding_side = padding_side
        return tiny_bert(vocab_size=tokenizer.vocab_size), tokenizer
    tokenizer = bpe_tokenizer(REVIEWS, padding_side=padding_side)
    return tiny_decoder(family, len(tokenizer), tokenizer.pad_token_id), tokenizer


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("family", [*DECODERS, "bert"])
def test_repacked_rows_give_each_rows_kept_tokens_alone(tmp_path, family, padding_side):
    model, tokenizer = setup(family, padding_side, tmp_path)
    model.eval()
    batch = tokenizer(REVIEWS[:4], padding=True, truncation=True, max_length=40, return_tensors="pt")
    masking = masking_for(model, "text_drop", 0.3, tokenizer)
    dropped = masking.draw(batch, [11, 12, 13, 14])  # one seed per row, as MaskSubTrainer draws them
    for row in range(4):
        real = batch["attention_mask"][row].bool()
        last_real = int(torch.nonzero(real)[-1])
        special = torch.isin(batch["input_ids"][row], torch.tensor(tokenizer.all_special_ids)) & real
        eligible = int(real.sum()) - int(special.sum()) - (0 if special[last_real] else 1)
        assert int(dropped[row].sum()) == num_masked(eligible, 0.3) > 0
        assert not dropped[row, last_real] and not (dropped[row] & ~real).any() and not (dropped[row] & special).any()
    with torch.no_grad(), masking.apply(model, dict(batch), dropped) as sub_inputs:
        assert sub_inputs["input_ids"].shape[1] == max(len(kept_positions(batch, dropped, r)) for r in range(4))
        batched = model(**sub_inputs).logits
        alone = row_by_row_logits(model, batch, dropped)
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)


def labelled(tokenizer):
    return [{**tokenizer(text, truncation=True, max_length=40), "labels": i % 2} for i, text in enumerate(REVIEWS)]


@pytest.mark.parametrize("family,padding_side", [("llama", "left"), ("gpt2", "right"), ("bert", "right")])
def test_gradients_match_a_plain_pytorch_step(tmp_path, family, padding_side):
    model, tokenizer = setup(family, padding_side, tmp_path)
    reference = copy.deepcopy(model)
    collator = RecordingCollator(tokenizer, 0.3, mode="text_drop")
    probe = GradientProbe()
    args = training_args(tmp_path / "out", per_device_train_batch_size=8, max_steps=1, masksub_ratio=0.3,
                         masksub_mode="text_drop")
    trainer = MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(labelled(tokenizer)),
                             data_collator=collator, callbacks=[probe])
    assert isinstance(trainer.masking, TextTokenDrop)
    trainer.train()

    batch = collator.batches[0]
    dropped, labels = batch.pop("masksub_drop_mask"), batch.pop("labels")
    main_logits = reference(**batch).logits
    main_loss = F.cross_entropy(main_logits, labels)
    sub_logits = row_by_row_logits(reference, batch, dropped)
    targets = torch.softmax(main_logits.detach(), dim=-1)
    sub_loss = -(targets * torch.log_softmax(sub_logits, dim=-1)).sum(-1).mean()
    (0.5 * main_loss + 0.5 * sub_loss).backward()
    expected = {n: p.grad for n, p in reference.named_parameters() if p.grad is not None}
    assert expected.keys() == probe.gradients[0].keys()
    for name, gradient in expected.items():
        torch.testing.assert_close(probe.gradients[0][name], gradient, rtol=1e-4, atol=1e-6, msg=name)


def test_auto_drops_tokens_for_a_tokenizer_without_a_mask_token(tmp_path):
    tokenizer = bpe_tokenizer(REVIEWS)
    decoder = tiny_decoder("qwen2", len(tokenizer), tokenizer.pad_token_id)
    assert isinstance(masking_for(decoder, "auto", 0.15, tokenizer), TextTokenDrop)
    bert_tokenizer = word_tokenizer(tmp_path, REVIEWS)
    assert isinstance(masking_for(tiny_bert(vocab_size=bert_tokenizer.vocab_size), "auto", 0.15, bert_tokenizer),
                      TextMasking)
    args = training_args(tmp_path / "out", per_device_train_batch_size=4, max_steps=2, logging_steps=1,
                         masksub_ratio=0.15)
    trainer = MaskSubTrainer(model=decoder, args=args, train_dataset=ListDataset(labelled(tokenizer)),
                             processing_class=tokenizer)
    assert trainer.masking.mode == "text_drop"
    trainer.train()
    assert all(entry["sub_loss"] > 0 for entry in trainer.state.log_history if "loss" in entry)


def test_lora_trains_only_the_adapters_and_the_head(tmp_path):
    from peft import LoraConfig, get_peft_model

    tokenizer = bpe_tokenizer(REVIEWS, padding_side="left")
    base = tiny_decoder("llama", len(tokenizer), tokenizer.pad_token_id)
    model = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["q_proj", "v_proj"]))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = training_args(tmp_path, per_device_train_batch_size=4, max_steps=3, logging_steps=1, masksub_ratio=0.3)
    trainer = MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(labelled(tokenizer)),
                             processing_class=tokenizer)
    assert trainer.masking.mode == "text_drop"
    trainer.train()
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert changed == trainable, sorted(changed ^ trainable)
    assert any("lora_" in n for n in changed) and any("score" in n for n in changed)
    assert all("lora_" in n or "modules_to_save" in n for n in changed), sorted(changed)
    assert all(entry["sub_loss"] > 0 for entry in trainer.state.log_history if "loss" in entry)


@pytest.mark.parametrize("head", [BertForMaskedLM])
@pytest.mark.parametrize("mode", ["auto", "text", "text_drop", "dropout", "droppath"])
def test_heads_without_an_objective_are_a_one_line_error_in_every_mode(tmp_path, head, mode):
    """Before: dropout and droppath trained heads without an objective (question answering, before it had one,
    failed at its first step with KeyError 'logits'). The line lists the heads MaskSub trains."""
    tokenizer = word_tokenizer(tmp_path, REVIEWS)
    model = head(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                            num_attention_heads=2, intermediate_size=64, hidden_dropout_prob=0.1))
    args = training_args(tmp_path / "out", masksub_ratio=0.15, masksub_mode=mode)
    with pytest.raises(ValueError, match="MaskSub has no sub-branch objective for") as error:
        MaskSubTrainer(model=model, args=args, processing_class=tokenizer)
    assert "\n" not in str(error.value) and head.__name__ in str(error.value)
    assert "multiple-choice heads" in str(error.value) and "question answering heads" in str(error.value)


@pytest.mark.parametrize("mode", ["auto", "dropout"])
def test_a_language_model_head_learns_only_at_supervised_next_tokens(tmp_path, mode):
    """Before the causal-LM objective GPT2LMHeadModel was refused; before that, under dropout, it trained silently
    with soft cross-entropy over padding and -100 positions. Now each branch counts the supervised next tokens."""
    tokenizer = bpe_tokenizer(REVIEWS)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=64))
    trainer = MaskSubTrainer(model=model, args=training_args(tmp_path, masksub_ratio=0.3, masksub_mode=mode),
                             processing_class=tokenizer)
    assert isinstance(trainer.masksub_objective, CausalLMObjective)
    assert trainer.masking.mode == {"auto": "text_drop", "dropout": "dropout"}[mode]
    batch = dict(tokenizer([" ".join(text.split()[:4 + 3 * row]) for row, text in enumerate(REVIEWS[:3])],
                           padding=True, return_tensors="pt"))
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    labels[0, :2] = -100  # a prompt
    mask = trainer.masking.draw(batch) if trainer.masking.key else None
    main, sub = batch_items(trainer.masksub_objective, {**batch, "labels": labels}, trainer.masking, mask)
    supervised_next = labels[:, 1:] != -100
    assert main == supervised_next.sum()
    if mode == "dropout":
        assert sub == main
    else:  # the kept positions whose next token is supervised
        kept = (batch["attention_mask"].bool() & ~mask)[:, :-1]
        assert 0 < sub == (kept & supervised_next).sum() < main


def test_token_drop_keeps_the_token_a_decoder_pools_when_pad_is_eos():
    """pad_token = eos_token and rows ending in an attended eos (the usual Llama / Qwen set-up): transformers pools at
    the rightmost token that is not the pad id, the one before the eos. Before: dropped in 96 of 200 draws."""
    tokenizer = bpe_tokenizer(REVIEWS, padding_side="right")
    tokenizer.pad_token = tokenizer.eos_token
    model = tiny_decoder("qwen2", len(tokenizer), tokenizer.pad_token_id).eval()
    texts = [" ".join(text.split()[:6 + 2 * row]) + tokenizer.eos_token for row, text in enumerate(REVIEWS[:4])]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    rows = torch.arange(4)
    ends_in_eos = batch["input_ids"][rows, batch["attention_mask"].sum(1) - 1] == tokenizer.eos_token_id
    assert ends_in_eos.all()
    positions = torch.arange(batch["input_ids"].shape[1]).expand(4, -1)
    pooled = positions.masked_fill(batch["input_ids"] == tokenizer.pad_token_id, -1).amax(1)
    masking = masking_for(model, "text_drop", 0.5, tokenizer)
    for draw in range(200):
        dropped = masking.draw(batch, [draw * 4 + row for row in range(4)])
        assert dropped.any() and not dropped[rows, pooled].any(), draw
    with masking.apply(model, dict(batch), dropped) as sub_inputs:
        sub_ids = sub_inputs["input_ids"]
        sub_positions = torch.arange(sub_ids.shape[1]).expand(4, -1)
        sub_pooled = sub_positions.masked_fill(sub_ids == tokenizer.pad_token_id, -1).amax(1)
        assert torch.equal(sub_inputs["position_ids"][rows, sub_pooled], pooled)  # the same token, by the same rule


def alibi_classifier(family, tokenizer):
    from transformers import BloomConfig, BloomForSequenceClassification, MptConfig, MptForSequenceClassification

    torch.manual_seed(0)
    if family == "bloom":
        return BloomForSequenceClassification(BloomConfig(vocab_size=len(tokenizer), hidden_size=32, n_layer=1,
                                                          n_head=2, pad_token_id=0, num_labels=2))
    return MptForSequenceClassification(MptConfig(vocab_size=len(tokenizer), d_model=32, n_layers=1, n_heads=2,
                                                  pad_token_id=0, num_labels=2))


@pytest.mark.parametrize("family", ["bloom", "mpt"])
def test_alibi_models_hide_dropped_tokens_where_that_keeps_positions_else_are_refused_at_construction(tmp_path,
                                                                                                     family):
    """Bloom and MPT place tokens by ALiBi and take no position_ids. MPT counts positions 0..L-1 over its input:
    with the dropped tokens hidden from attention, the kept ones stay where they were (their logits differ from
    the same row with those tokens removed, and do not depend on the hidden ids). Bloom counts positions by the
    attention mask's running sum: hiding a token is removing it, the kept tokens shift, so it is refused when the
    trainer is built (before: `auto` stopped at the first training step)."""
    tokenizer = bpe_tokenizer(REVIEWS)
    model = alibi_classifier(family, tokenizer).eval()
    ids = tokenizer(REVIEWS[0], return_tensors="pt")["input_ids"][:, :14]
    keep = torch.ones_like(ids)
    keep[:, 3:9] = 0
    changed = ids.clone()
    changed[:, 3:9] = ids[:, 3:9].flip(1)
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=keep).logits
        removed = model(input_ids=ids[keep.bool()][None]).logits
        assert torch.equal(model(input_ids=changed, attention_mask=keep).logits, hidden)
    for mode in ("auto", "text_drop"):
        if family == "mpt":
            trainer = MaskSubTrainer(model=model, args=training_args(tmp_path, masksub_ratio=0.15, masksub_mode=mode),
                                     processing_class=tokenizer)
            assert trainer.masking.mode == "text_drop" and trainer.masking.hides
            assert not torch.allclose(hidden, removed, rtol=1e-4, atol=0)
            continue
        torch.testing.assert_close(hidden, removed)
        with pytest.raises(ValueError, match="numbers its tokens by the attention mask") as error:
            MaskSubTrainer(model=model, args=training_args(tmp_path, masksub_ratio=0.15, masksub_mode=mode),
                           processing_class=tokenizer)
        assert "\n" not in str(error.value) and "'dropout'" in str(error.value)


def test_token_drop_keeps_robertas_own_positions():
    """RoBERTa-style models number their tokens from ``pad_token_id + 1`` (a position table with a padding index):
    the sub branch's ``position_ids`` follow that rule, not ``0..L-1``, so a kept token keeps its position."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(0)
    model = RobertaForSequenceClassification(RobertaConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        max_position_embeddings=20, pad_token_id=1, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).eval()
    input_ids = torch.tensor([[0, 7, 8, 9, 10, 2], [0, 11, 12, 2, 1, 1]])
    inputs = {"input_ids": input_ids, "attention_mask": input_ids.ne(1).long()}
    masking = TextTokenDrop([0, 1, 2], 0.5, pad_token_id=1)
    nothing = torch.zeros_like(input_ids, dtype=torch.bool)
    with torch.no_grad(), masking.apply(model, inputs, nothing) as sub_inputs:
        torch.testing.assert_close(model(**sub_inputs).logits, model(**inputs).logits)
    assert sub_inputs["position_ids"][0].tolist() == [2, 3, 4, 5, 6, 7]  # pad id 1, then 1 + k
    dropped = torch.zeros_like(nothing)
    dropped[0, 2] = True  # token 8, at position 4
    with masking.apply(model, inputs, dropped) as sub_inputs:
        assert sub_inputs["position_ids"][0, :5].tolist() == [2, 3, 5, 6, 7]
