"""The README's Usage snippet, copied from the README itself, runs as written on an image folder.

Before: as written it stopped with ``KeyError: 'image'`` raised inside ``masksub_hf/pipeline/seeding.py`` (Trainer had
removed the column its transform read), and what ``auto`` chose was logged where a Python session never shows it."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from script_fixtures import mnist_imagefolder, tiny_vit_dir

ROOT = Path(__file__).resolve().parents[1]


def python_block(path, heading):
    """The first Python block under ``heading`` in the Markdown file ``path``."""
    text = (ROOT / path).read_text()
    return re.search(r"```python\n(.*?)```", text[text.index(heading):], re.S).group(1)


def usage_snippet():
    return python_block("README.md", "## Usage")


@pytest.mark.slow
def test_readme_usage_snippet_runs_on_an_image_folder(tmp_path):
    mnist_imagefolder(tmp_path / "data", train=48, validation=16)  # data/train/<digit>/*.png, data/validation/...
    tiny_vit_dir(tmp_path / "vit-base")
    script = tmp_path / "snippet.py"
    script.write_text(usage_snippet() + "\nprint(type(trainer.masking).__name__, trainer.state.epoch)\n")
    completed = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                               timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    # a plain Python session, no logging set up: what auto chose is shown
    assert "[masksub_hf] MaskSub for ViTForImageClassification: ratio 0.5, mode auto (tokens)" in completed.stderr
    assert completed.stdout.strip().splitlines()[-1] == "PatchTokenDrop 3.0"  # the sub branch's masking, 3 epochs


def test_a_transform_reading_a_removed_column_says_why(tmp_path):
    """Trainer's default remove_unused_columns=True removes 'image' before the transform reads it: the error says so."""
    import pytest
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForImageClassification

    from masksub_hf import MaskSubTrainer, MaskSubTrainingArguments

    mnist_imagefolder(tmp_path / "data", train=16, validation=8)
    data = load_dataset("imagefolder", data_dir=str(tmp_path / "data"))
    data.set_transform(lambda batch: {"pixel_values": [torch.zeros(3, 32, 32) for _ in batch["image"]],
                                      "labels": batch["label"]})
    model = AutoModelForImageClassification.from_pretrained(tiny_vit_dir(tmp_path / "vit"), num_labels=10,
                                                            ignore_mismatched_sizes=True)
    args = MaskSubTrainingArguments(output_dir=str(tmp_path / "out"), max_steps=1, use_cpu=True, report_to="none")
    with pytest.raises(KeyError, match="remove_unused_columns=False") as error:
        MaskSubTrainer(model=model, args=args, train_dataset=data["train"]).train()
    assert "'image', not among its columns (label)" in str(error.value)


def test_offline_tokenizer_recipe_builds_a_whole_vocabulary_that_trains_from_scratch(tmp_path):
    """docs/offline.md's tokenizer recipe, as written, on real review snippets; its folder trains with run_glue.py."""
    from script_fixtures import rotten_tomatoes_csv

    from masksub_hf.scripts import run_glue

    files = rotten_tomatoes_csv(tmp_path, train=200, validation=40, test=0)  # train.csv, validation.csv
    script = tmp_path / "tokenizer.py"
    script.write_text(python_block("docs/offline.md", "## Text offline"))
    completed = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    size, tokens = completed.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(size) > 500 and "[UNK]" not in tokens  # a vocabulary of the reviews' words, not 5 special tokens
    output = tmp_path / "out"
    run_glue.main(["--config_name", str(tmp_path / "bert-small"), "--train_file", str(files["train"]),
                   "--validation_file", str(files["validation"]), "--max_seq_length", "32", "--output_dir",
                   str(output), "--do_train", "--max_steps", "2", "--per_device_train_batch_size", "8", "--use_cpu",
                   "--report_to", "none", "--logging_steps", "1", "--disable_tqdm", "true"])
    import json

    logged = [e for e in json.loads((output / "trainer_state.json").read_text())["log_history"] if "sub_loss" in e]
    assert len(logged) == 2 and all(e["sub_loss"] > 0 for e in logged)  # [MASK] replacement ran: mask_token set
