"""run_ner.py as a user runs it, offline: a small tagged set written from real reviews (capitalised words inside a
sentence tagged as entities, IOB2), a tiny BERT saved locally; and the shipped entity-level metric."""

import json
import re
from pathlib import Path

import pytest
from script_fixtures import tiny_bert_dir

from masksub_hf.scripts import run_ner
from masksub_hf.scripts.demo_data import rotten_tomatoes
from masksub_hf.scripts.metrics import load_metric

ROOT = Path(__file__).resolve().parents[1]

COMMON = ["--do_train", "--do_eval", "--num_train_epochs", "1", "--per_device_train_batch_size", "8",
          "--logging_steps", "2", "--report_to", "none", "--use_cpu", "--save_strategy", "no", "--seed", "0",
          "--disable_tqdm", "true", "--ignore_mismatched_sizes"]


def tagged(sentence):
    """Words and IOB2 tags: a run of capitalised words after the first word is one entity (B-ENT, I-ENT...)."""
    words = re.findall(r"\w+|[^\w\s]", sentence)[:30]
    tags, inside = [], False
    for position, word in enumerate(words):
        entity = position > 0 and word[:1].isupper()
        tags.append(("I-ENT" if inside else "B-ENT") if entity else "O")
        inside = entity
    return {"tokens": words, "ner_tags": tags}


@pytest.fixture(scope="module")
def ner_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ner")
    reviews = list(rotten_tomatoes(seed=0)["sentence"][:96])
    files = {}
    for split, rows in (("train", reviews[:64]), ("validation", reviews[64:80]), ("test", reviews[80:])):
        files[split] = root / f"{split}.json"
        files[split].write_text("".join(json.dumps(tagged(review)) + "\n" for review in rows))
    words = [word.lower() for review in reviews for word in re.findall(r"\w+|[^\w\s]", review)]
    return files, tiny_bert_dir(root / "bert", words)


def run(tmp_path, ner_data, *flags):
    files, model = ner_data
    output = tmp_path / "out"
    run_ner.main(["--model_name_or_path", str(model), "--train_file", str(files["train"]), "--validation_file",
                  str(files["validation"]), "--test_file", str(files["test"]), "--output_dir", str(output),
                  *COMMON, *flags])
    return output, json.loads((output / "all_results.json").read_text())


@pytest.mark.parametrize("ratio", ["0.15", "0"])
def test_run_ner_trains_evaluates_and_predicts(tmp_path, ner_data, ratio):
    output, results = run(tmp_path, ner_data, "--masksub_ratio", ratio, "--do_predict",
                          "--return_entity_level_metrics")
    for name in ("eval_precision", "eval_recall", "eval_f1", "eval_accuracy", "eval_ENT_f1", "eval_ENT_number"):
        assert name in results, name
    assert 0.0 <= results["eval_f1"] <= 1.0 and results["eval_ENT_number"] > 0
    state = json.loads((output / "trainer_state.json").read_text())
    logged = [entry for entry in state["log_history"] if "loss" in entry]
    assert logged and all(("sub_loss" in entry) == (ratio != "0") for entry in logged)
    predictions = (output / "predictions.txt").read_text().splitlines()
    assert len(predictions) == 16 and all(set(row.split()) <= {"O", "B-ENT", "I-ENT"} for row in predictions)
    assert 0.0 <= json.loads((output / "predict_results.json").read_text())["predict_f1"] <= 1.0  # gold tags: scored
    assert ("MaskSub" in (output / "README.md").read_text()) == (ratio != "0")
    config = json.loads((output / "config.json").read_text())
    assert set(config["id2label"].values()) == {"B-ENT", "I-ENT", "O"}


def test_label_all_tokens_and_token_drop(tmp_path, ner_data):
    _, results = run(tmp_path, ner_data, "--label_all_tokens", "--masksub_mode", "text_drop", "--masksub_ratio", "0.3")
    assert "eval_f1" in results


def test_an_unknown_tag_in_validation_is_a_one_line_error(tmp_path, ner_data, capsys):
    files, model = ner_data
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"tokens": ["A", "Film"], "ner_tags": ["O", "B-PER"]}) + "\n")
    with pytest.raises(SystemExit) as exit_status:
        run_ner.main(["--model_name_or_path", str(model), "--train_file", str(files["train"]), "--validation_file",
                      str(bad), "--output_dir", str(tmp_path / "out"), *COMMON])
    assert exit_status.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after datasets' progress bars
    assert error.startswith("error: --validation_file") and "B-PER" in error


def test_entity_metric_follows_conlleval_chunking():
    metric = load_metric("seqeval")
    references = [["B-PER", "I-PER", "O", "B-LOC"], ["I-ORG", "I-ORG", "O", "B-PER", "I-LOC"]]
    predictions = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "I-ORG", "O", "B-PER", "I-PER"]]
    result = metric.compute(predictions=predictions, references=references)
    # true: PER(0-1), LOC(3), ORG(0-1, IOB1 start), PER(3), LOC(4); predicted: PER(0-1), ORG(0-1), PER(3-4)
    assert result["overall_precision"] == pytest.approx(2 / 3)
    assert result["overall_recall"] == pytest.approx(2 / 5)
    assert result["overall_f1"] == pytest.approx(2 * (2 / 3) * (2 / 5) / (2 / 3 + 2 / 5))
    assert result["overall_accuracy"] == pytest.approx(6 / 9)
    assert result["PER"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "number": 2}
    assert result["LOC"]["recall"] == 0.0 and result["LOC"]["number"] == 2


def test_csv_files_train_as_their_json_twins(tmp_path, ner_data, capsys):
    """csv holds the word and tag lists as text (as pandas writes them): before, IndexError in tokenize_and_align.
    Now the same data as csv trains to the json run's results, and a cell that is not a list is one line."""
    import pandas as pd

    files, model = ner_data
    csv = {}
    for split, path in files.items():
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        csv[split] = tmp_path / f"{split}.csv"
        pd.DataFrame(rows).to_csv(csv[split], index=False)
    _, from_json = run(tmp_path / "json", ner_data)
    output = tmp_path / "csv"
    run_ner.main(["--model_name_or_path", str(model), "--train_file", str(csv["train"]), "--validation_file",
                  str(csv["validation"]), "--output_dir", str(output), *COMMON])
    from_csv = json.loads((output / "all_results.json").read_text())
    assert from_csv["eval_f1"] == from_json["eval_f1"] and from_csv["train_loss"] == from_json["train_loss"]

    broken = pd.read_csv(csv["train"])
    broken.loc[3, "ner_tags"] = "O O B-ENT"
    broken.to_csv(tmp_path / "broken.csv", index=False)
    with pytest.raises(SystemExit) as exit_info:
        run_ner.main(["--model_name_or_path", str(model), "--train_file", str(tmp_path / "broken.csv"),
                      "--validation_file", str(csv["validation"]), "--output_dir", str(tmp_path / "b"), *COMMON])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert exit_info.value.code == 2 and len(errors) == 1, errors
    assert errors[0].startswith("error: --label_column_name: column 'ner_tags' of the train data, row 3"), errors


def test_a_prediction_file_without_tags_is_tagged(tmp_path, ner_data):
    """A test file with the words only: each word gets a predicted tag (no metrics: there is nothing to score)."""
    files, model = ner_data
    rows = [json.loads(line) for line in files["test"].read_text().splitlines()]
    (tmp_path / "words.json").write_text("".join(json.dumps({"tokens": row["tokens"]}) + "\n" for row in rows))
    output = tmp_path / "out"
    run_ner.main(["--model_name_or_path", str(model), "--train_file", str(files["train"]), "--validation_file",
                  str(files["validation"]), "--test_file", str(tmp_path / "words.json"), "--do_predict",
                  "--output_dir", str(output), *COMMON])
    tagged_rows = (output / "predictions.txt").read_text().splitlines()
    assert [len(line.split()) for line in tagged_rows] == [len(row["tokens"]) for row in rows]
    assert all(tag in ("O", "B-ENT", "I-ENT") for line in tagged_rows for tag in line.split())
    assert not (output / "predict_results.json").exists()


def test_run_ner_trains_with_a_training_file_alone(tmp_path, ner_data):
    """As transformers' run_ner.py: --train_file alone trains (before: "give --train_file and --validation_file");
    --do_eval without a validation file is a one-line error naming the flag."""
    files, model = ner_data
    output = tmp_path / "out"
    flags = [flag for flag in COMMON if flag != "--do_eval"]
    run_ner.main(["--model_name_or_path", str(model), "--train_file", str(files["train"]), "--output_dir", str(output),
                  *flags])
    results = json.loads((output / "all_results.json").read_text())
    assert results["train_samples"] == 64 and "eval_f1" not in results
    assert (output / "model.safetensors").is_file()
    with pytest.raises(SystemExit) as stopped:
        run_ner.main(["--model_name_or_path", str(model), "--train_file", str(files["train"]),
                      "--output_dir", str(tmp_path / "eval"), *COMMON])
    assert stopped.value.code == 2
