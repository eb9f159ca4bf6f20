"""TRL's ``SFTTrainer`` with MaskSub (``MaskSubSFTTrainer``, ``MaskSubSFTConfig``): a tiny Llama fine-tuned on
prompt-completion pairs of real reviews (completion-only loss: SFT's default for such data), token drop.

- one step (accumulation 2, a smaller last micro-batch; fp32 and SFT's default bf16, gradient checkpointing on as
  SFT's default) equals the method written out in plain torch (``exactness_cases.NextTokens.reference``);
- main weight 1 / sub weight 0: plain ``SFTTrainer``'s gradient and training metrics (its fused LM head's loss,
  entropy, token accuracy, token count) while the sub branch runs; ratio 0: ``SFTTrainer``'s step itself;
- evaluation, the model card, the arguments (command line, checkpoint) are SFT's; what MaskSub cannot train
  (packing, padding-free rows, DFT) is refused in one line, and trains as SFT's own at ratio 0.
"""

import copy

import pytest
import torch

trl = pytest.importorskip("trl", minversion="1.16")

import datasets  # noqa: E402
from exactness_cases import NextTokens, Recording, assert_gradients_equal, reference_gradients  # noqa: E402
from helpers import GradientProbe, bpe_tokenizer  # noqa: E402
from models import REVIEWS, tiny_decoder  # noqa: E402
from transformers import HfArgumentParser  # noqa: E402

from masksub_hf import MaskSubSFTConfig, MaskSubSFTTrainer  # noqa: E402

TOKENIZER = bpe_tokenizer(REVIEWS)
PAIRS = datasets.Dataset.from_list([{"prompt": " ".join(review.split()[:3]),
                                     "completion": " " + " ".join(review.split()[3:10])} for review in REVIEWS[:7]])


class RecordingSFTTrainer(Recording, MaskSubSFTTrainer):
    pass


def sft_args(output_dir, arguments_class=MaskSubSFTConfig, **overrides):
    settings = dict(output_dir=str(output_dir), use_cpu=True, report_to="none", save_strategy="no", seed=0,
                    optim="sgd", learning_rate=0.5, lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=0.0,
                    per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=1, logging_steps=1,
                    bf16=False, disable_tqdm=True)
    return arguments_class(**{**settings, **overrides})


def llama():
    return tiny_decoder("llama", len(TOKENIZER), TOKENIZER.pad_token_id, head="causal_lm")


def train(trainer_class, args, model=None, **kwargs):
    """``(trainer, gradients of each step before the optimizer)``."""
    probe = GradientProbe()
    trainer = trainer_class(model=model or llama(), args=args, train_dataset=PAIRS, processing_class=TOKENIZER,
                            callbacks=[probe], **kwargs)
    trainer.train()
    return trainer, probe.gradients


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_step_is_the_method_on_completion_only_pairs(tmp_path, precision):
    model = llama()
    initial = copy.deepcopy(model)
    args = sft_args(tmp_path, masksub_ratio=0.3, bf16=precision == "bf16")
    assert args.gradient_checkpointing  # SFT's default: both branches recompute their activations
    forwards = []  # of the decoder stack: one per branch and micro-batch (SFT's fused loss would add a third)
    model.model.register_forward_hook(lambda *_: forwards.append(1))
    trainer, gradients = train(RecordingSFTTrainer, args, model)
    assert len(forwards) == 4 and trainer.masking is not None and [len(batch["labels"]) for batch in trainer.recorded] == [4, 3]
    prompt_labels = [(batch["labels"][:, 0] == -100).all() for batch in trainer.recorded]
    assert all(prompt_labels)  # completion-only: the prompts are in no loss
    expected = reference_gradients(NextTokens(), initial, trainer.recorded, precision)
    assert_gradients_equal(gradients[0], expected, precision, f"sft/{precision}")


def test_main_weight_one_gives_sfts_own_step_and_metrics_while_the_sub_branch_runs(tmp_path):
    plain, plain_gradients = train(trl.SFTTrainer, sft_args(tmp_path / "plain", trl.SFTConfig, max_steps=2))
    ours, our_gradients = train(MaskSubSFTTrainer, sft_args(tmp_path / "ours", max_steps=2, masksub_main_weight=1.0,
                                                            masksub_sub_weight=0.0))
    for step in range(2):
        assert_gradients_equal(our_gradients[step], plain_gradients[step], "fp32", f"step {step}")
    for theirs, mine in zip(plain.state.log_history[:2], ours.state.log_history[:2]):
        for key in ("loss", "entropy", "mean_token_accuracy", "num_tokens"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-6), key
        assert mine["sub_loss"] > 0  # the sub branch ran
    assert plain.state.log_history[1]["mean_token_accuracy"] > 0  # the accuracy compared is not a constant 0

    off, off_gradients = train(MaskSubSFTTrainer, sft_args(tmp_path / "off", masksub_ratio=0.0,
                                                           gradient_accumulation_steps=1, per_device_train_batch_size=8))
    plain_one, plain_one_gradients = train(trl.SFTTrainer, sft_args(tmp_path / "plain1", trl.SFTConfig,
                                                                    gradient_accumulation_steps=1,
                                                                    per_device_train_batch_size=8))
    assert off.masking is None
    assert all(torch.equal(off_gradients[0][name], plain_one_gradients[0][name]) for name in plain_one_gradients[0])


def test_evaluation_card_and_arguments_are_sfts_own(tmp_path):
    args = sft_args(tmp_path / "ours", max_steps=2, save_strategy="steps", save_steps=2, per_device_eval_batch_size=4)
    trainer = MaskSubSFTTrainer(model=llama(), args=args, train_dataset=PAIRS, eval_dataset=PAIRS,
                                processing_class=TOKENIZER)
    plain = trl.SFTTrainer(model=llama(), args=sft_args(tmp_path / "plain", trl.SFTConfig,
                                                          per_device_eval_batch_size=4),
                           train_dataset=PAIRS, eval_dataset=PAIRS, processing_class=TOKENIZER)
    before, theirs = trainer.evaluate(), plain.evaluate()
    for key in ("eval_loss", "eval_entropy", "eval_mean_token_accuracy"):
        assert before[key] == pytest.approx(theirs[key], rel=1e-6), key
    trainer.train()
    assert trainer.evaluate()["eval_loss"] < before["eval_loss"]
    card = (tmp_path / "ours" / "README.md").read_text()  # SFT's card, written with each checkpoint
    assert "masksub" in card and "sft" in card and "trl" in card
    saved = torch.load(tmp_path / "ours" / "checkpoint-2" / "training_args.bin", weights_only=False)
    assert type(saved) is MaskSubSFTConfig and saved.masksub_ratio == 0.5

    parsed, = HfArgumentParser(MaskSubSFTConfig).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path / "cli"), "--masksub_ratio", "0.3", "--max_length", "64", "--use_cpu", "true"])
    assert (parsed.masksub_ratio, parsed.max_length, parsed.packing) == (0.3, 64, False)


@pytest.mark.parametrize("setting, message", [
    (dict(packing=True), "packed or padding-free SFT batches"),
    (dict(padding_free=True, max_length=None), "packed or padding-free SFT batches"),
    (dict(loss_type="dft"), "loss_type='dft'"),
])
def test_what_masksub_cannot_train_is_refused_in_one_line(tmp_path, setting, message):
    with pytest.raises(ValueError, match=message) as refused:
        MaskSubSFTTrainer(model=llama(), args=sft_args(tmp_path, **setting), train_dataset=PAIRS,
                          processing_class=TOKENIZER)
    assert "\n" not in str(refused.value)
    trainer = MaskSubSFTTrainer(model=llama(), args=sft_args(tmp_path, masksub_ratio=0.0, **setting),
                                train_dataset=PAIRS, processing_class=TOKENIZER)
    assert trainer.masking is None  # SFT's own steps


def test_lora_adapters_from_sfts_peft_config_train_with_the_sub_branch(tmp_path):
    peft = pytest.importorskip("peft")
    trainer = MaskSubSFTTrainer(model=llama(), args=sft_args(tmp_path, max_steps=2, learning_rate=0.1),
                                train_dataset=PAIRS, processing_class=TOKENIZER,
                                peft_config=peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    before = {name: parameter.detach().clone() for name, parameter in trainer.model.named_parameters()}
    trainer.train()
    changed = {name for name, parameter in trainer.model.named_parameters() if not torch.equal(parameter, before[name])}
    assert changed and all(".lora_" in name for name in changed)
    assert all(entry["sub_loss"] > 0 for entry in trainer.state.log_history if "loss" in entry)


def test_a_moe_router_loss_is_refused_in_one_line_and_trains_without_it(tmp_path):
    import transformers

    config = transformers.MixtralConfig(vocab_size=len(TOKENIZER), hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                        num_local_experts=2, num_experts_per_tok=1,
                                        pad_token_id=TOKENIZER.pad_token_id)
    with pytest.raises(ValueError, match="set router_aux_loss_coef=0.0") as refused:
        MaskSubSFTTrainer(model=transformers.MixtralForCausalLM(config), args=sft_args(tmp_path),
                          train_dataset=PAIRS, processing_class=TOKENIZER)
    assert "\n" not in str(refused.value)
    trainer = MaskSubSFTTrainer(model=transformers.MixtralForCausalLM(config),
                                args=sft_args(tmp_path, router_aux_loss_coef=0.0), train_dataset=PAIRS,
                                processing_class=TOKENIZER)
    trainer.train()
    assert trainer.state.log_history[0]["sub_loss"] > 0
