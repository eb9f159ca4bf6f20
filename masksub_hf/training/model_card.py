"""The model card, written from a template (``templates/model_card.md``) with what ``Trainer`` knows of the run
(transformers' ``TrainingSummary``: metadata, evaluation results, hyperparameters) and what MaskSub adds: the
``masksub`` tag, the run's settings, the paper. The method's tag, words and citation are the trainer's class data
(``MaskSubTrainer.method_card``, as TRL's trainers keep theirs); nothing of Trainer's card text is edited.

What the card says beyond Trainer's own: the bases by role (a dual encoder's towers), a local base by its folder
name (the Hub refuses local paths as ``base_model``), local data by its file names (with metadata results on the
dataset named by its loader), the architecture and config a model trained from scratch was built from, and,
for a run evaluated only after training, its logged losses.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from string import Template


@dataclass(frozen=True)
class MethodCard:
    """What a trainer's model card says of its method: class data of the trainer, as TRL's trainers keep theirs."""

    tag: str  # the Hub tag of models trained with it
    description: str  # the card's paragraph on it (markdown)
    citation: str  # BibTeX


MASKSUB = MethodCard(
    tag="masksub",
    description="Trained with [MaskSub](https://arxiv.org/abs/2306.11339) (masksub-hf): a sub branch sharing the "
                "model's weights sees a masked copy of each batch and learns the main branch's detached output; "
                "evaluation uses the main model only.",
    citation="""@inproceedings{heo2025masksub,
  title     = {Masking meets Supervision: A Strong Learning Alliance},
  author    = {Heo, Byeongho and Kim, Taekyung and Yun, Sangdoo and Han, Dongyoon},
  booktitle = {CVPR},
  year      = {2025},
  note      = {arXiv:2306.11339}
}""")
TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"


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
    """A base model as the card names it: a Hub link, or a local folder by its name (never its path)."""
    if os.path.exists(base):
        return f"a local model folder, `{os.path.basename(os.path.normpath(base))}`"
    return f"[{base}](https://huggingface.co/{base})"


def describe_data(dataset, local_data):
    if local_data:
        return "local data (" + ", ".join(f"`{name}`" for name in local_data) + ")"
    names = [dataset] if isinstance(dataset, str) else list(dataset or [])
    if not names:
        return "an unknown dataset"
    return " and ".join(f"the {name}" for name in names) + (" datasets" if len(names) > 1 else " dataset")


def describe_origin(bases, hub_base, built_as, data):
    """The card's first sentence: what the model was trained from, on what."""
    if hub_base is not None:
        return f"This model is a fine-tuned version of {describe_base(hub_base)} on {data}."
    if bases:
        named = " and ".join(describe_base(base) + (f" ({role})" if role else "") for role, base in bases.items())
        return f"This model is a fine-tuned version of {named}, on {data}."
    if built_as:
        model_class, config_name = built_as
        return (f"This model, a `{model_class}` built with random weights from "
                f"`{os.path.basename(os.path.normpath(config_name))}`, was trained from scratch on {data}.")
    return f"This model was trained from scratch on {data}."


def rounded(value, decimals=4):
    return f"{value:.{decimals}f}" if isinstance(value, float) and len(repr(value).split(".")[-1]) > decimals else value


def local_data_type(names):
    """How ``datasets`` reads local data (its loader's name): an image folder, or csv / json files."""
    extension = os.path.splitext(names[0])[1].lstrip(".").lower()
    return {"": "imagefolder", "jsonl": "json"}.get(extension, extension)


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


def framework_versions(with_masksub):
    import datasets
    import tokenizers
    import torch
    import transformers

    from .. import __version__

    versions = [("masksub-hf", __version__)] if with_masksub else []
    versions += [("Transformers", transformers.__version__), ("Pytorch", torch.__version__),
                 ("Datasets", datasets.__version__), ("Tokenizers", tokenizers.__version__)]
    return "\n".join(f"- {name} {version}" for name, version in versions)


def local_results(summary, task, local_data):
    """The metadata results of a run on local data, which Trainer's card drops (it names no Hub dataset): each
    evaluation metric on the dataset named by its loader (``imagefolder``, ``csv``)."""
    from huggingface_hub import EvalResult
    from transformers.modelcard import infer_metric_tags_from_eval_results

    metrics = infer_metric_tags_from_eval_results(summary.eval_results or {})
    if not metrics or not task:
        return []
    return [EvalResult(task_type=task, dataset_type=local_data_type(local_data),
                       dataset_name=f"local data ({', '.join(local_data)})", metric_type=tag, metric_name=name,
                       metric_value=summary.eval_results[name]) for tag, name in metrics.items()]


def model_card_text(summary, *, origin, method=None, settings=None, log_history=(), local_results=()):
    """The card: ``summary`` (a ``TrainingSummary``) through the template, with the ``method`` (a ``MethodCard``)
    and its ``settings``, when it trained (None: off)."""
    import yaml
    from huggingface_hub import ModelCard
    from transformers.modelcard import make_markdown_table

    results = ""
    if summary.eval_results:
        results = "\nIt achieves the following results on the evaluation set:\n" + "\n".join(
            f"- {name}: {rounded(value)}" for name, value in summary.eval_results.items()) + "\n"
    paragraph = citation = ""
    if settings is not None:
        rows = "\n".join(f"| `{name}` | {value} |" for name, value in settings.items())
        paragraph = f"\n{method.description}\n\n| setting | value |\n|---|---|\n{rows}\n"
        citation = f"\n## Citation\n\n```bibtex\n{method.citation}\n```\n"
    hyperparameters = "\n".join(f"- {name}: {value}" for name, value in (summary.hyperparameters or {}).items())
    text = Template(TEMPLATE.read_text()).substitute(
        metadata=yaml.dump(summary.create_metadata(), sort_keys=False), model_name=summary.model_name,
        origin=origin, results=results, method=paragraph,
        hyperparameters="The following hyperparameters were used during training:\n" + hyperparameters
        if hyperparameters else "More information needed",
        training_results=make_markdown_table(summary.eval_lines) if summary.eval_lines
        else logged_losses_table(log_history),
        frameworks=framework_versions(settings is not None), citation=citation)
    if local_results:
        card = ModelCard(text)
        card.data.eval_results = list(local_results)
        text = str(card)
    return text


def write_model_card(trainer, settings=None, *, language=None, license=None, tags=None, model_name=None,
                     finetuned_from=None, tasks=None, dataset_tags=None, dataset=None, dataset_args=None,
                     local_data=None, config_name=None):
    """``output_dir/README.md`` for ``trainer``'s run (``MaskSubTrainer.create_model_card`` says what each argument
    adds to Trainer's); ``settings``: the MaskSub settings (``card_settings``), None when MaskSub is off; the method's
    tag, paragraph and citation: ``trainer.method_card``."""
    from huggingface_hub import ModelCard
    from transformers.modelcard import TrainingSummary

    path = os.path.join(trainer.args.output_dir, "README.md")
    existing = ModelCard.load(path).data if os.path.exists(path) else None  # e.g. a PEFT adapter's card
    tags = [tags] if isinstance(tags, str) else list(tags or [])
    tags += [tag for tag in (existing.tags or [] if existing is not None else []) if tag not in tags]
    if settings is not None and trainer.method_card.tag not in tags:
        tags.append(trainer.method_card.tag)
    bases = dict(finetuned_from) if isinstance(finetuned_from, dict) else ({"": finetuned_from} if finetuned_from else {})
    single = next(iter(bases.values())) if len(bases) == 1 else None
    hub_base = single if single and not os.path.exists(single) else None
    if local_data:  # nothing for Trainer to infer a Hub dataset from ("imagefolder" is none)
        dataset_tags, dataset, dataset_args = [], [], []
    summary = TrainingSummary.from_trainer(trainer, language=language, license=license, tags=tags or None,
                                           model_name=model_name, finetuned_from=hub_base, tasks=tasks,
                                           dataset_tags=dataset_tags, dataset=dataset, dataset_args=dataset_args)
    model = trainer.accelerator.unwrap_model(trainer.model)
    built_as = (type(model).__name__, config_name) if config_name and not bases else None
    if hub_base is None and (bases or built_as or not summary.finetuned_from):
        summary.finetuned_from = None  # Trainer's guess from the config's _name_or_path is no base here
    origin = describe_origin(bases, summary.finetuned_from, built_as, describe_data(summary.dataset, local_data))
    task = tasks if isinstance(tasks, str) else None
    text = model_card_text(summary, origin=origin, method=trainer.method_card, settings=settings,
                           log_history=trainer.state.log_history,
                           local_results=local_results(summary, task, local_data) if local_data else ())
    with open(path, "w", encoding="utf-8") as card:
        card.write(text)
    if existing is not None and existing.get("library_name") == "peft":  # as Trainer: the adapter's own card
        model.create_or_update_model_card(trainer.args.output_dir)
