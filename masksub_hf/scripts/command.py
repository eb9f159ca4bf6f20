"""``masksub-hf``: the scripts as one installed command, as TRL's ``trl sft``.

    masksub-hf image-classification --model_name_or_path ./my-vit --train_dir data/train ... --masksub_ratio 0.5
    masksub-hf image-classification deit3_vit_s_400ep.yaml --config_name vit_small_patch16_224 ...  # a shipped recipe
    accelerate launch -m masksub_hf.scripts.run_glue ...          # several processes: the script's module

Each subcommand is a script's ``main`` with the same flags (``masksub-hf <command> --help``).
"""

import importlib
import importlib.util
import sys

from .. import __version__

COMMANDS = {
    "image-classification": ("run_image_classification", "fine-tune or train an image classifier"),
    "text-classification": ("run_glue", "fine-tune a text classifier (GLUE or csv/json)"),
    "token-classification": ("run_ner", "fine-tune a token classifier (NER, POS)"),
    "clip": ("run_clip", "train or fine-tune a CLIP-style dual encoder"),
    "causal-lm": ("run_clm", "train or fine-tune a causal language model (text, csv or json)"),
    "seq2seq": ("run_seq2seq", "fine-tune or train a seq2seq language model (summarisation, translation; csv or json)"),
    "plot": ("plot", "draw a run's losses (and gradient norms) from its trainer_state.json"),
}

# What only the scripts import: setup.cfg's `scripts` extra (import names).
SCRIPTS_EXTRA = ("evaluate", "sklearn", "scipy", "pandas", "matplotlib")


def usage():
    width = max(map(len, COMMANDS))
    lines = [f"usage: masksub-hf <command> [flags]  (masksub-hf {__version__}; 'masksub-hf <command> --help' for a "
             "command's flags)", "", "commands:"]
    lines += [f"  {name:<{width}}  {about} (masksub_hf/scripts/{module}.py)" for name, (module, about) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"masksub-hf {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        print(f"error: masksub-hf: unknown command {argv[0]!r}; pick one of {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    missing = [name for name in SCRIPTS_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        print(f"error: masksub-hf {argv[0]} needs the scripts extra (missing: {', '.join(missing)}): "
              "pip install 'masksub-hf[scripts]'.", file=sys.stderr)
        return 2
    module = importlib.import_module(f"masksub_hf.scripts.{COMMANDS[argv[0]][0]}")
    sys.argv[0] = f"masksub-hf {argv[0]}"  # the program name in the command's --help and errors
    module.main(argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
