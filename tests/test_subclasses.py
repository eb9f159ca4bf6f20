"""MaskSub in any Trainer subclass: ``MaskSubMixin`` before the class, ``MaskSubArguments`` before its arguments.

- ``Seq2SeqTrainer``: one step equals the method in plain torch (the exactness cases, accumulation 2 with a smaller
  last micro-batch); evaluation is the class's own, the arguments parse from a command line and pickle into
  checkpoints;
- a user's ``Trainer`` subclass overriding ``compute_loss`` trains as the method with that main loss
  (``test_token_classification``);
- a class whose ``training_step`` MaskSub's step would skip is refused in one line; a class with a model card of its
  own (TRL's) writes it, with the ``masksub`` tag.
"""

import copy
from dataclasses import dataclass

import pytest
import torch
from exactness_cases import CASES, Recording, assert_gradients_equal, reference_gradients, run_case
from helpers import ListDataset, image_items, tiny_vit, training_args
from transformers import HfArgumentParser, Seq2SeqTrainer, Seq2SeqTrainingArguments, Trainer, TrainingArguments

from masksub_hf import MaskSubArguments, MaskSubMixin, MaskSubTrainer


@dataclass
class MaskSubSeq2SeqArguments(MaskSubArguments, Seq2SeqTrainingArguments):
    pass


class MaskSubSeq2SeqTrainer(MaskSubMixin, Seq2SeqTrainer):
    pass


class RecordingSeq2SeqTrainer(Recording, MaskSubSeq2SeqTrainer):
    pass


def seq2seq_args(output_dir, **overrides):
    return training_args(output_dir, arguments_class=MaskSubSeq2SeqArguments, **overrides)


@pytest.mark.parametrize("name", ["vit_tokens_ce", "bert_mask", "clip", "bart_seq2seq_mask", "t5_seq2seq_drop"])
def test_seq2seq_trainer_steps_as_the_method(tmp_path, name):
    case, initial, trainer, gradients = run_case(name, "ga2", "fp32", tmp_path, seq2seq_args, RecordingSeq2SeqTrainer)
    assert isinstance(trainer, Seq2SeqTrainer) and isinstance(trainer.args, Seq2SeqTrainingArguments)
    assert len(trainer.recorded) == 2 and trainer.masking is not None
    expected = reference_gradients(case, initial, trainer.recorded, "fp32")
    assert_gradients_equal(gradients, expected, "fp32", f"{name}/seq2seq/ga2")


def test_seq2seq_evaluation_checkpoints_and_flags_are_the_classs_own(tmp_path):
    items = [{k: v for k, v in item.items() if not k.startswith("masksub_")}
             for item in image_items(12, torch.arange(12) % 3, num_keep=8)]
    args = seq2seq_args(tmp_path / "masksub", per_device_train_batch_size=4, max_steps=2, masksub_ratio=0.5,
                        save_strategy="steps", save_steps=2, per_device_eval_batch_size=4)
    trainer = MaskSubSeq2SeqTrainer(model=tiny_vit(seed=0), args=args, train_dataset=ListDataset(items),
                                    eval_dataset=ListDataset(items))
    plain = Seq2SeqTrainer(model=tiny_vit(seed=0), args=Seq2SeqTrainingArguments(
        tmp_path / "plain", use_cpu=True, report_to="none", per_device_eval_batch_size=4), eval_dataset=ListDataset(items))
    before = trainer.evaluate()
    assert before["eval_loss"] == pytest.approx(plain.evaluate()["eval_loss"], rel=1e-6)
    trainer.train()
    saved = torch.load(tmp_path / "masksub" / "checkpoint-2" / "training_args.bin", weights_only=False)
    assert type(saved) is MaskSubSeq2SeqArguments and saved.masksub_ratio == 0.5
    assert trainer.evaluate()["eval_loss"] != before["eval_loss"]

    parsed, = HfArgumentParser(MaskSubSeq2SeqArguments).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path / "cli"), "--masksub_ratio", "0.3", "--predict_with_generate", "true",
         "--generation_max_length", "7", "--use_cpu", "true"])
    assert (parsed.masksub_ratio, parsed.predict_with_generate, parsed.generation_max_length) == (0.3, True, 7)
    with pytest.raises(ValueError, match="masksub_ratio must be a number in"):
        MaskSubSeq2SeqArguments(output_dir=str(tmp_path), masksub_ratio=1.5)


def generated_tokens(prediction):
    """What a metric of generated text reads: token ids ``(rows, length)``, not logits."""
    predictions = prediction.predictions
    return {"dims": float(predictions.ndim), "length": float(predictions.shape[1]), "sum": float(predictions.sum())}


def test_seq2seq_generation_evaluation_is_the_classs_own(tmp_path):
    """predict_with_generate: MaskSub's Seq2SeqTrainer evaluates by generating, as plain Seq2SeqTrainer does (the
    sub-branch masks its collator draws never reach generate)."""
    case = CASES["bart_seq2seq_mask"]()
    model, items = case.build(tmp_path)
    generation = dict(predict_with_generate=True, generation_max_length=6, per_device_eval_batch_size=4)
    collator = case.collator()
    trainer = MaskSubSeq2SeqTrainer(model=model, args=seq2seq_args(tmp_path / "masksub", masksub_ratio=0.3,
                                                                   **generation),
                                    eval_dataset=ListDataset(items), data_collator=collator,
                                    compute_metrics=generated_tokens)
    plain = Seq2SeqTrainer(model=copy.deepcopy(model), args=Seq2SeqTrainingArguments(
        tmp_path / "plain", use_cpu=True, report_to="none", **generation), eval_dataset=ListDataset(items),
        data_collator=collator.base_collator, compute_metrics=generated_tokens)
    ours, theirs = trainer.evaluate(), plain.evaluate()
    assert ours["eval_dims"] == 2 and ours["eval_sum"] > 0  # generated tokens, not logits
    for key in ("eval_loss", "eval_length", "eval_sum"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-6), key


class StepWrappingTrainer(Trainer):
    def training_step(self, *args, **kwargs):
        return super().training_step(*args, **kwargs)


def test_a_class_whose_training_step_would_be_skipped_is_refused(tmp_path):
    args = training_args(tmp_path)
    with pytest.raises(TypeError, match="StepWrappingTrainer overrides training_step, which MaskSub's step replaces"):
        type("Mixed", (MaskSubMixin, StepWrappingTrainer), {})(model=tiny_vit(), args=args)
    wrapping_masksub = type("Wrapping", (MaskSubTrainer,), {"training_step": StepWrappingTrainer.training_step})
    assert wrapping_masksub(model=tiny_vit(), args=args).masking is not None  # it wraps MaskSub's step: allowed
    with pytest.raises(TypeError, match="needs arguments with MaskSub's fields .* got TrainingArguments"):
        MaskSubSeq2SeqTrainer(model=tiny_vit(), args=TrainingArguments(str(tmp_path), use_cpu=True))


class OwnCardTrainer(Trainer):
    """A Trainer subclass with a model card of its own, as TRL's trainers have."""

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        self.card_written = (model_name, dataset_name, tags)


def test_a_class_with_its_own_model_card_writes_it_with_the_masksub_tag(tmp_path):
    trainer = type("Mixed", (MaskSubMixin, OwnCardTrainer), {})(model=tiny_vit(), args=training_args(tmp_path))
    trainer.create_model_card(model_name="tiny", tags="sft")
    assert trainer.card_written == ("tiny", None, ["sft", "masksub"])
