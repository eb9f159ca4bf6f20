"""The model card's MaskSub section: the ``masksub`` tag, the run's settings and the paper (TRL style)."""

import os
import re

MASKSUB_TAG = "masksub"
PAPER_CITATION = """@inproceedings{heo2025masksub,
  title     = {Masking meets Supervision: A Strong Learning Alliance},
  author    = {Heo, Byeongho and Kim, Taekyung and Yun, Sangdoo and Han, Dongyoon},
  booktitle = {CVPR},
  year      = {2025},
  note      = {arXiv:2306.11339}
}"""


def with_masksub_tag(tags):
    tags = [tags] if isinstance(tags, str) else list(tags or [])
    return tags + ([MASKSUB_TAG] if MASKSUB_TAG not in tags else [])


def card_settings(args, masking, objective):
    """The run's MaskSub settings as the card shows them: what ``auto`` chose, the block size for block maskings."""
    settings = {
        "masksub_ratio": args.masksub_ratio,
        "masksub_mode": f"auto ({masking.mode})" if args.masksub_mode == "auto" else args.masksub_mode,
        "masksub_loss": f"auto ({objective.sub_loss_name()})" if args.masksub_loss == "auto"
        else objective.sub_loss_name(),
        "masksub_main_weight": args.masksub_main_weight,
        "masksub_sub_weight": args.masksub_sub_weight,
    }
    if masking.mode in ("pixels", "mask_token"):
        settings["masksub_block_size"] = args.masksub_block_size or "default (32 px at 224 px)"
    return settings


def describe_base(base):
    """A base model as the card's text names it: a Hub link, or a local folder by its name (never its path)."""
    if os.path.exists(base):
        return f"a local model folder, `{os.path.basename(os.path.normpath(base))}`"
    return f"[{base}](https://huggingface.co/{base})"


def rewrite_card_text(output_dir, bases=None, local_data=None, log_history=(), built_as=None):
    """What Trainer's card text cannot say, said in ``output_dir/README.md``:

    - ``built_as`` (``(model class, config name)``): what a model trained from scratch is and was built from;
    - ``bases`` (``{role: base}``; role "" for a single model): Trainer says a model whose base is a local folder
      (kept out of the metadata) or that has several bases (a dual encoder's towers) was "trained from scratch";
    - ``local_data`` (file or folder names): Trainer says "an unknown dataset";
    - a run evaluated only after training leaves "Training results" empty: the logged losses go there."""
    path = os.path.join(output_dir, "README.md")
    with open(path) as card:
        text = card.read()
    if built_as:
        model_class, config_name = built_as
        text = text.replace("This model was trained from scratch", f"This model, a `{model_class}` built with random "
                            f"weights from `{os.path.basename(os.path.normpath(config_name))}`, was trained from "
                            "scratch", 1)
    if bases:
        named = " and ".join(describe_base(base) + (f" ({role})" if role else "") for role, base in bases.items())
        text = text.replace("This model was trained from scratch", f"This model is a fine-tuned version of {named},", 1)
    if local_data:
        text = text.replace("an unknown dataset.", "local data (" + ", ".join(f"`{name}`" for name in local_data)
                            + ").", 1)
    text = re.sub(r"### Training results\n\s*\n(?=### )", lambda _: "### Training results\n\n"
                  + logged_losses_table(log_history) + "\n", text, count=1)
    with open(path, "w") as card:
        card.write(text)


def local_data_type(names):
    """How ``datasets`` reads local data (its loader's name): an image folder, or csv / json files."""
    extension = os.path.splitext(names[0])[1].lstrip(".").lower()
    return {"": "imagefolder", "jsonl": "json"}.get(extension, extension)


def add_local_results(output_dir, task, local_data, log_history):
    """The card's metadata results for a run on local data, which Trainer drops (it names no Hub dataset): each
    evaluation metric Trainer's card reports, on the dataset named by its loader (``imagefolder``, ``csv``)."""
    from huggingface_hub import EvalResult, ModelCard
    from transformers.modelcard import infer_metric_tags_from_eval_results, parse_log_history

    evaluated = parse_log_history(log_history)[2]
    metrics = infer_metric_tags_from_eval_results(evaluated or {})
    if not metrics or not task:
        return
    path = os.path.join(output_dir, "README.md")
    card = ModelCard.load(path)
    card.data.eval_results = [
        EvalResult(task_type=task, dataset_type=local_data_type(local_data),
                   dataset_name=f"local data ({', '.join(local_data)})", metric_type=tag, metric_name=name,
                   metric_value=evaluated[name]) for tag, name in metrics.items()]
    card.save(path)


def logged_losses_table(log_history, rows=10):
    """The training losses of at most ``rows`` logged steps, evenly spaced, the last included (with each branch's
    loss under MaskSub); the run was evaluated after training only (results above)."""
    logged = [entry for entry in log_history if "loss" in entry and "step" in entry]
    if not logged:
        return "Evaluated after training only (results above); no training loss was logged.\n"
    shown = min(rows, len(logged))  # spaced from the first to the last logged step
    picked = sorted({round(i * (len(logged) - 1) / max(shown - 1, 1)) for i in range(shown)})
    entries = [logged[i] for i in picked]
    columns = [("Step", "step"), ("Epoch", "epoch"), ("Training loss", "loss"), ("Main branch", "main_loss"),
               ("Sub branch", "sub_loss")]
    # A run resumed at another ratio logs the branch losses at some steps only: their cells stay empty elsewhere.
    columns = [(title, key) for title, key in columns if any(key in entry for entry in entries)]
    lines = ["| " + " | ".join(title for title, _ in columns) + " |", "|" + "---|" * len(columns)]
    for entry in entries:
        cells = (entry.get(key, "") for _, key in columns)
        lines.append("| " + " | ".join(f"{cell:.4g}" if isinstance(cell, float) else str(cell) for cell in cells) + " |")
    return ("Evaluated after training only (results above); the training loss at "
            f"{len(picked)} of the {len(logged)} logged steps (all of them: `trainer_state.json`):\n\n"
            + "\n".join(lines) + "\n")


def append_masksub_section(output_dir, settings):
    """Append the MaskSub section (a table of ``settings`` and the citation) to ``output_dir/README.md``."""
    rows = "\n".join(f"| `{name}` | {value} |" for name, value in settings.items())
    section = (
        "\n## MaskSub\n\nTrained with [MaskSub](https://arxiv.org/abs/2306.11339) (masksub-hf): a sub branch "
        "sharing the model's weights sees a masked copy of each batch and learns the main branch's detached "
        "output; evaluation uses the main model only.\n\n| setting | value |\n|---|---|\n"
        f"{rows}\n\n### Citation\n\n```bibtex\n{PAPER_CITATION}\n```\n"
    )
    with open(os.path.join(output_dir, "README.md"), "a") as card:
        card.write(section)
