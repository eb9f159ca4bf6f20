"""``run_seq2seq.py`` (``masksub-hf seq2seq``): transformers' ``run_summarization.py`` flags plus MaskSub's, on real
offline text (Rotten Tomatoes reviews: each review's first half the source, its second half the target), a T5
built from ``--config_name`` with a byte-level BPE tokenizer (no mask token: the source's tokens are hidden)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import transformers
from helpers import bpe_tokenizer
from huggingface_hub import ModelCard

from masksub_hf.scripts import run_seq2seq
from masksub_hf.scripts.demo_data import rotten_tomatoes


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seq2seq")
    sentences = list(rotten_tomatoes(seed=0)["sentence"][:232])
    halves = [(" ".join(s.split()[:len(s.split()) // 2]), " ".join(s.split()[len(s.split()) // 2:]))
              for s in sentences]
    frame = pd.DataFrame(halves, columns=["review_start", "review_end"])
    frame[:200].to_csv(folder / "train.csv", index=False)
    frame[200:].to_csv(folder / "validation.csv", index=False)
    tokenizer = bpe_tokenizer(sentences)
    tokenizer.save_pretrained(folder / "tokenizer")
    transformers.T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
                          pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                          decoder_start_token_id=tokenizer.pad_token_id).save_pretrained(folder / "config")
    return folder


def run(folder, output, ratio, *extra):
    run_seq2seq.main(["--config_name", str(folder / "config"), "--tokenizer_name", str(folder / "tokenizer"),
                      "--train_file", str(folder / "train.csv"), "--validation_file", str(folder / "validation.csv"),
                      "--text_column", "review_start", "--summary_column", "review_end", "--max_source_length", "32",
                      "--max_target_length", "24", "--output_dir", str(output), "--do_train", "--do_eval",
                      "--max_steps", "6", "--per_device_train_batch_size", "4", "--learning_rate", "3e-3",
                      "--logging_steps", "1", "--use_cpu", "--report_to", "none", "--save_strategy", "no", "--seed",
                      "0", "--disable_tqdm", "true", "--masksub_ratio", str(ratio), *extra])
    return json.loads((output / "all_results.json").read_text()), json.loads((output / "trainer_state.json").read_text())


def accuracy_by_hand(folder, output):
    """The saved model's teacher-forced target-token accuracy on the validation pairs, written out here."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder / "tokenizer")
    frame = pd.read_csv(folder / "validation.csv")
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(output).eval()
    right = total = 0
    for source, target in zip(frame["review_start"], frame["review_end"]):
        inputs = tokenizer(source, max_length=32, truncation=True, return_tensors="pt")
        labels = tokenizer(text_target=target, max_length=24, truncation=True, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            predicted = model(**inputs, labels=labels).logits.argmax(-1)
        right, total = right + int((predicted == labels).sum()), total + labels.numel()
    return right / total


def test_seq2seq_script_trains_both_branches_and_reports_target_accuracy(tmp_path, pair_files):
    results, state = run(pair_files, tmp_path / "masksub", 0.15)
    baseline, baseline_state = run(pair_files, tmp_path / "baseline", 0)
    assert results["eval_accuracy"] == pytest.approx(accuracy_by_hand(pair_files, tmp_path / "masksub"), abs=1e-6)
    logged = [entry for entry in state["log_history"] if "loss" in entry]
    assert len(logged) == 6 and all(entry["sub_loss"] > 0 and "main_loss" in entry for entry in logged)
    assert not any("sub_loss" in entry for entry in baseline_state["log_history"])
    assert results["eval_loss"] != baseline["eval_loss"]  # the sub branch changed the training
    first = logged[0]
    assert first["loss"] == pytest.approx(0.5 * first["main_loss"] + 0.5 * first["sub_loss"], rel=1e-3)
    card = (tmp_path / "masksub" / "README.md").read_text()
    assert {"masksub", "text2text-generation"} <= set(ModelCard(card).data.tags)
    assert "masksub_mode" in card and "text_drop" in card  # auto resolved: no mask token, source tokens hidden
    transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "masksub")


def test_seq2seq_script_generates_and_scores_rouge(tmp_path, pair_files):
    results, _ = run(pair_files, tmp_path / "generate", 0.15, "--predict_with_generate", "--val_max_target_length",
                     "8", "--max_eval_samples", "8")
    assert 0 < results["eval_gen_len"] <= 8
    assert {"eval_rouge1", "eval_rouge2", "eval_rougeL"} <= results.keys()
    assert all(0 <= results[key] <= 100 for key in ("eval_rouge1", "eval_rouge2", "eval_rougeL"))


def test_rouge_by_hand():
    scores = run_seq2seq.rouge("the cat sat on the mat", "the cat lay on the mat")
    assert scores["rouge1"] == pytest.approx(5 / 6)  # the, cat, on, the, mat
    assert scores["rouge2"] == pytest.approx(2 * 3 / 10)  # (the cat), (on the), (the mat) of 5 and 5
    assert scores["rougeL"] == pytest.approx(5 / 6)
    assert run_seq2seq.rouge("", "anything") == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    assert np.isclose(run_seq2seq.longest_common_subsequence("abcbdab", "bdcaba"), 4)


def test_seq2seq_script_errors_are_one_line(tmp_path, pair_files, capsys):
    with pytest.raises(SystemExit):
        run(pair_files, tmp_path / "bad", 0.15, "--summary_column", "headline")
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--summary_column 'headline' is not a column of the data (review_start, review_end)" in error
