"""The heads beyond classification (causal LM, seq2seq LM, multiple choice, question answering, semantic
segmentation), from the exactness matrix's cases
(``exactness_cases.CASES``): what the matrix does not show.

- with ``masksub_main_weight=1, masksub_sub_weight=0`` a step's gradient is plain ``Trainer``'s (MaskSub at
  accumulation 2 with a smaller last micro-batch where the head allows; the case's own collator without
  MaskSub's part), while the sub branch still runs;
- a multiple-choice head is trained with cross-entropy over its choices whatever its config says: a sub loss
  that does not fit it is a one-line error (heads no objective serves: ``test_text_drop.py``).
"""

import copy
import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from exactness_cases import CASES, assert_gradients_equal
from helpers import GradientProbe, ListDataset, training_args
from models import tiny_segmenter
from transformers import Trainer, TrainingArguments

from masksub_hf import MaskSubTrainer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ACCUMULATED = dict(per_device_train_batch_size=4, gradient_accumulation_steps=2)
ONE_MICRO_BATCH = dict(per_device_train_batch_size=8, gradient_accumulation_steps=1)
# one case per head kind beyond classification and masking -> (MaskSub's arguments, plain Trainer's) for one step:
# - BERT's multiple-choice head returns its micro-batch's mean although it takes num_items_in_batch, so plain
#   Trainer over-weights accumulated micro-batches (docs/compatibility.md): its exact step is one micro-batch;
# - a question-answering head's softmax counts its scores at padding, so how a batch is padded is part of its
#   loss (plain Trainer's too): both take the step as one micro-batch;
# - BART's and T5's seq2seq heads take no num_items_in_batch: plain Trainer averages micro-batch means;
# - the segmenters' decoders hold batch norm, whose statistics are a micro-batch's: both take one micro-batch.
HEAD_CASES = {"llama_causal_lm_token_drop": (ACCUMULATED, ACCUMULATED),
              "bart_seq2seq_mask": (ACCUMULATED, ONE_MICRO_BATCH), "t5_seq2seq_drop": (ACCUMULATED, ONE_MICRO_BATCH),
              "segformer_segments_pixels": (ONE_MICRO_BATCH, ONE_MICRO_BATCH),
              "beit_segments_mask_token": (ONE_MICRO_BATCH, ONE_MICRO_BATCH),
              "bert_choices_mask": (ACCUMULATED, ONE_MICRO_BATCH), "bert_choices_drop": (ACCUMULATED, ONE_MICRO_BATCH),
              "bert_answers_mask": (ONE_MICRO_BATCH, ONE_MICRO_BATCH),
              "bert_answers_drop": (ONE_MICRO_BATCH, ONE_MICRO_BATCH)}


def plain_arguments(folder, **overrides):
    return TrainingArguments(str(folder), use_cpu=True, report_to="none", save_strategy="no", learning_rate=1e-3,
                             lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=0.0, seed=0,
                             disable_tqdm=True, **overrides)


@pytest.mark.parametrize("name", HEAD_CASES)
def test_main_branch_alone_is_plain_trainers_step(tmp_path, name):
    case = CASES[name]()
    model, items = case.build(tmp_path)
    plain_model = copy.deepcopy(model)
    step = dict(max_steps=1, logging_steps=1)
    masksub_probe, plain_probe = GradientProbe(), GradientProbe()
    collator = case.collator()
    trainer = MaskSubTrainer(model=model, args=training_args(tmp_path / "masksub", masksub_ratio=case.ratio,
                                                               masksub_mode=case.mode, masksub_main_weight=1.0,
                                                               masksub_sub_weight=0.0, **HEAD_CASES[name][0], **step),
                             train_dataset=ListDataset(items), data_collator=collator, callbacks=[masksub_probe])
    trainer.train()
    Trainer(model=plain_model, args=plain_arguments(tmp_path / "plain", **HEAD_CASES[name][1], **step),
            train_dataset=ListDataset(items), data_collator=getattr(collator, "base_collator", None),
            callbacks=[plain_probe]).train()
    assert trainer.masking.mode == case.mode
    assert [entry["sub_loss"] for entry in trainer.state.log_history if "sub_loss" in entry][0] > 0  # it ran
    # the matrix's fp32 tolerance: micro-batches padded to their own lengths round differently from one batch
    assert_gradients_equal(masksub_probe.gradients[0], plain_probe.gradients[0], "fp32", name)


@pytest.mark.parametrize("name", [*HEAD_CASES, "bert_tokens_mask", "clip"])
def test_a_sub_loss_the_head_does_not_have_is_one_line(tmp_path, name):
    """Before: heads with one sub loss ignored --masksub_loss (a token classifier asked for mse trained soft CE)."""
    model, _ = CASES[name]().build(tmp_path)
    with pytest.raises(ValueError, match=rf"^masksub_loss='mse' does not fit {type(model).__name__}, whose sub loss "
                                         r"is [^\n]*use masksub_loss='auto'\.$"):
        MaskSubTrainer(model=model, args=training_args(tmp_path, masksub_ratio=0.3, masksub_loss="mse"))


def test_a_one_label_segmenter_is_one_line(tmp_path):
    """transformers trains a one-label segmenter with a sigmoid per pixel: no class distribution to distil."""
    with pytest.raises(ValueError, match=r"^MaskSub trains SegformerForSemanticSegmentation with one class "
                                         r"distribution per pixel: num_labels=1 [^\n]*use num_labels >= 2\.$"):
        MaskSubTrainer(model=tiny_segmenter("segformer", num_labels=1), args=training_args(tmp_path, masksub_ratio=0.5))


@pytest.mark.parametrize("mode", ["auto", "dropout"])
def test_object_detection_is_refused_saying_why(tmp_path, mode):
    """A detector's outputs are a set matched to the objects anew each forward: no per-prediction target to learn."""
    model = transformers.YolosForObjectDetection(transformers.YolosConfig(
        image_size=[32, 32], patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, num_detection_tokens=4, num_labels=3))
    with pytest.raises(ValueError, match=r"^MaskSub has no sub-branch objective for YolosForObjectDetection: it "
                                         r"predicts a set of objects, each matched [^\n]*bipartite matching[^\n]*$"):
        MaskSubTrainer(model=model, args=training_args(tmp_path, masksub_ratio=0.5, masksub_mode=mode))


def test_segmenters_never_drop_patch_tokens(tmp_path):
    """A ViT-backed segmenter (DPT) reads every patch in its grid: auto zero-fills pixel blocks; tokens is refused."""
    config = transformers.DPTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4,
                                    num_attention_heads=2, intermediate_size=64, backbone_out_indices=[0, 1, 2, 3],
                                    neck_hidden_sizes=[8, 8, 16, 16], fusion_hidden_size=16, num_labels=3,
                                    use_auxiliary_head=False)
    model = transformers.DPTForSemanticSegmentation(config)
    assert MaskSubTrainer(model=model, args=training_args(tmp_path, masksub_ratio=0.5)).masking.mode == "pixels"
    with pytest.raises(ValueError, match=r"^masksub_mode='tokens' cannot mask DPTForSemanticSegmentation [^\n]*"
                                         r"modes that fit it: \['pixels'\]"):
        MaskSubTrainer(model=model, args=training_args(tmp_path, masksub_ratio=0.5, masksub_mode="tokens"))


def test_multiple_choice_ignores_a_regression_config(tmp_path):
    """``num_labels=1`` reads as regression to a sequence classifier; a multiple-choice head still scores choices
    with cross-entropy, and so does its sub branch."""
    model, _ = CASES["bert_choices_mask"]().build(tmp_path)
    model.config.num_labels = 1
    trainer = MaskSubTrainer(model=model, args=training_args(tmp_path, masksub_ratio=0.3))
    assert trainer.masksub_objective.sub_loss_name() == "soft_ce"


def test_an_answer_with_one_end_past_the_sequence_is_one_line(tmp_path):
    """transformers ignores a start or end at or past the sequence's end, each on its own: the head's loss would
    then average starts and ends over different inputs, which no per-input item count can express."""
    case = CASES["bert_answers_mask"]()
    model, items = case.build(tmp_path)
    items[0] = {**items[0], "end_positions": 1000}
    trainer = MaskSubTrainer(model=model, args=training_args(tmp_path, masksub_ratio=0.3, max_steps=1),
                             train_dataset=ListDataset(items), data_collator=case.collator())
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    with pytest.raises(ValueError, match=r"^MaskSub: 1 input\(s\) of a batch have an answer start or end past [^\n]*$"):
        trainer.train()
    assert all(torch.equal(before[name], parameter) for name, parameter in model.named_parameters())


def test_beam_search_answer_heads_are_one_line(tmp_path):
    """XLNet's SQuAD head scores ends per start candidate: no start and end distributions to distil."""
    config = transformers.XLNetConfig(vocab_size=50, d_model=16, n_layer=1, n_head=2, d_inner=16)
    with pytest.raises(ValueError, match=r"^MaskSub has no sub-branch objective for XLNetForQuestionAnswering:[^\n]*$"):
        MaskSubTrainer(model=transformers.XLNetForQuestionAnswering(config), args=training_args(tmp_path))


# example -> (its head, the metric it reports, its held-out data as the example builds it, the collator, label keys)
EXAMPLE_TASKS = {
    "multiple_choice": ("BertForMultipleChoice", "accuracy", lambda example, tokenizer, reviews:
                        example["review_endings"](tokenizer, reviews, 4, 64, seed=43),
                        transformers.DataCollatorForMultipleChoice, ["labels"]),
    "question_answering": ("BertForQuestionAnswering", "exact_match", lambda example, tokenizer, reviews:
                           example["phrase_questions"](tokenizer, reviews, 96, seed=43),
                           transformers.DataCollatorWithPadding, ["start_positions", "end_positions"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("task", EXAMPLE_TASKS)
def test_an_example_reports_its_saved_models_score(tmp_path, task):
    """``examples/<task>.py`` as a user runs it: both branches train, and the score it reports is the saved
    model's, reloaded as a plain transformers model, on the held-out reviews."""
    head, metric, held_out_data, collator, label_keys = EXAMPLE_TASKS[task]
    path = EXAMPLES / f"{task}.py"
    command = [sys.executable, str(path), "--output_dir", str(tmp_path), "--masksub_ratio", "0.15",
               "--max_train_samples", "24", "--max_eval_samples", "16", "--per_device_train_batch_size", "8",
               "--max_steps", "2", "--logging_steps", "1", "--do_train", "--do_eval", "--report_to", "none",
               "--use_cpu", "--disable_tqdm", "true"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"MaskSub for {head}: ratio 0.15, mode auto (text)" in completed.stderr
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    assert all(entry["sub_loss"] > 0 for entry in state["log_history"] if "loss" in entry)
    reported = json.loads((tmp_path / "eval_results.json").read_text())[f"eval_{metric}"]
    example = runpy.run_path(str(path), run_name="example")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    reviews = [text for text in example["rotten_tomatoes"](seed=0)["sentence"] if len(text.split()) >= 8][24:40]
    batch = collator(tokenizer)(held_out_data(example, tokenizer, reviews).items)
    labels = tuple(batch.pop(key).numpy() for key in label_keys)
    model = getattr(transformers, head).from_pretrained(tmp_path).eval()
    with torch.no_grad():
        outputs = model(**batch)
    predictions = (outputs.logits,) if task == "multiple_choice" else (outputs.start_logits, outputs.end_logits)
    predictions = tuple(logits.numpy() for logits in predictions)
    score = example[metric](transformers.EvalPrediction(
        predictions=predictions[0] if len(predictions) == 1 else predictions,
        label_ids=labels[0] if len(labels) == 1 else labels))[metric]
    assert score == pytest.approx(reported)


@pytest.mark.slow
def test_the_segmentation_example_reports_its_saved_models_score(tmp_path):
    """``examples/semantic_segmentation.py`` as a user runs it: both branches train (pixel blocks), and the mean IoU
    it reports is the saved model's, reloaded as a plain SegFormer, on the held-out digits."""
    path = EXAMPLES / "semantic_segmentation.py"
    command = [sys.executable, str(path), "--output_dir", str(tmp_path), "--masksub_ratio", "0.5",
               "--max_train_samples", "32", "--max_eval_samples", "16", "--per_device_train_batch_size", "16",
               "--max_steps", "2", "--logging_steps", "1", "--do_train", "--do_eval", "--report_to", "none",
               "--use_cpu", "--disable_tqdm", "true"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "MaskSub for SegformerForSemanticSegmentation: ratio 0.5, mode auto (pixels)" in completed.stderr
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    assert all(entry["sub_loss"] > 0 for entry in state["log_history"] if "loss" in entry)
    reported = json.loads((tmp_path / "eval_results.json").read_text())
    example = runpy.run_path(str(path), run_name="example")
    images, digits = example["mnist_digits"](seed=0)
    held_out = example["digit_maps"](images[32:48], digits[32:48]).items
    pixels, labels = torch.stack([i["pixel_values"] for i in held_out]), torch.stack([i["labels"] for i in held_out])
    model = transformers.SegformerForSemanticSegmentation.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        upsampled = torch.nn.functional.interpolate(model(pixel_values=pixels).logits, size=labels.shape[-2:],
                                                    mode="bilinear", align_corners=False)
    predicted, labels = upsampled.argmax(1).numpy(), labels.numpy()
    ious = [((predicted == c) & (labels == c)).sum() / ((predicted == c) | (labels == c)).sum()
            for c in range(11) if ((predicted == c) | (labels == c)).any()]
    assert reported["eval_mean_iou"] == pytest.approx(float(sum(ious) / len(ious)))
    assert reported["eval_pixel_accuracy"] == pytest.approx(float((predicted == labels).mean()))
