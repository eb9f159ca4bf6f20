"""The model card's MaskSub section: the ``masksub`` tag, the run's settings and the paper (TRL style)."""

import os

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


def name_local_base(output_dir, folder_name):
    """Trainer's card says a model whose base is a local folder was "trained from scratch": name the folder."""
    path = os.path.join(output_dir, "README.md")
    with open(path) as card:
        text = card.read()
    text = text.replace("This model was trained from scratch", f"This model is a fine-tuned version of a local model "
                        f"folder, `{folder_name}`,", 1)
    with open(path, "w") as card:
        card.write(text)


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
