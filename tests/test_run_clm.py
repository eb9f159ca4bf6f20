"""``run_clm.py`` (``masksub-hf causal-lm``): transformers' ``run_clm.py`` flags plus MaskSub's, on real offline
text (Rotten Tomatoes reviews), a Llama built from ``--config_name`` with a byte-level BPE tokenizer."""

import json
import math
from itertools import chain

import pytest
import torch
import transformers
from helpers import bpe_tokenizer
from huggingface_hub import ModelCard

from masksub_hf.scripts import run_clm
from masksub_hf.scripts.demo_data import rotten_tomatoes


@pytest.fixture(scope="module")
def lm_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clm")
    sentences = list(rotten_tomatoes(seed=0)["sentence"][:260])
    (folder / "train.txt").write_text("\n".join(sentences[:200]) + "\n")
    (folder / "validation.txt").write_text("\n".join(sentences[200:]) + "\n")
    tokenizer = bpe_tokenizer(sentences)
    tokenizer.save_pretrained(folder / "tokenizer")
    transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                             pad_token_id=tokenizer.pad_token_id).save_pretrained(folder / "config")
    return folder


def run(folder, output, ratio):
    run_clm.main(["--config_name", str(folder / "config"), "--tokenizer_name", str(folder / "tokenizer"),
                  "--train_file", str(folder / "train.txt"), "--validation_file", str(folder / "validation.txt"),
                  "--block_size", "32", "--output_dir", str(output), "--do_train", "--do_eval", "--max_steps", "6",
                  "--per_device_train_batch_size", "4", "--learning_rate", "3e-3", "--logging_steps", "1",
                  "--use_cpu", "--report_to", "none", "--save_strategy", "no", "--seed", "0",
                  "--disable_tqdm", "true", "--masksub_ratio", str(ratio)])
    return json.loads((output / "all_results.json").read_text()), json.loads((output / "trainer_state.json").read_text())


def accuracy_by_hand(folder, output, block_size=32):
    """The saved model's next-token accuracy over the validation text, cut into blocks as transformers' script does."""
    from datasets import load_dataset

    tokenizer = transformers.AutoTokenizer.from_pretrained(folder / "tokenizer")
    texts = list(load_dataset("text", data_files=str(folder / "validation.txt"), keep_linebreaks=True)["train"]["text"])
    ids = list(chain(*tokenizer(texts)["input_ids"]))
    blocks = torch.tensor(ids[:len(ids) // block_size * block_size]).view(-1, block_size)
    model = transformers.AutoModelForCausalLM.from_pretrained(output).eval()
    with torch.no_grad():
        predicted = model(input_ids=blocks).logits[:, :-1].argmax(-1)
    return (predicted == blocks[:, 1:]).float().mean().item()


def test_causal_lm_script_trains_both_branches_and_reports_perplexity(tmp_path, lm_files):
    results, state = run(lm_files, tmp_path / "masksub", 0.15)
    baseline, baseline_state = run(lm_files, tmp_path / "baseline", 0)
    assert results["perplexity"] == pytest.approx(math.exp(results["eval_loss"]))
    assert results["eval_accuracy"] == pytest.approx(accuracy_by_hand(lm_files, tmp_path / "masksub"), abs=1e-6)
    logged = [entry for entry in state["log_history"] if "loss" in entry]
    assert len(logged) == 6 and all(entry["sub_loss"] > 0 and "main_loss" in entry for entry in logged)
    assert not any("sub_loss" in entry for entry in baseline_state["log_history"])
    assert results["eval_loss"] != baseline["eval_loss"]  # the sub branch changed the training
    first = [entry["loss"] for entry in state["log_history"] if "loss" in entry][0]
    assert first == pytest.approx(0.5 * logged[0]["main_loss"] + 0.5 * logged[0]["sub_loss"], rel=1e-3)
    card = (tmp_path / "masksub" / "README.md").read_text()
    assert {"masksub", "text-generation"} <= set(ModelCard(card).data.tags)
    assert "a `LlamaForCausalLM` built with random weights" in card
    transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "masksub")


def test_causal_lm_script_errors_are_one_line(tmp_path, lm_files, capsys):
    with pytest.raises(SystemExit):
        run_clm.main(["--config_name", str(lm_files / "config"), "--tokenizer_name", str(lm_files / "tokenizer"),
                      "--train_file", str(lm_files / "train.txt"), "--block_size", "100000", "--output_dir",
                      str(tmp_path), "--do_train", "--use_cpu", "--report_to", "none"])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "fewer than --block_size 100000 tokens" in error
