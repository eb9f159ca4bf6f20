"""Completion-only training: should the sub branch lose tokens of the whole sequence, or of the prompt only?

    python benchmarks/completion_only.py --jobs 2        # 3 arms x 5 seeds (about 40 minutes on 2 CPU cores)
    python benchmarks/completion_only.py --quick         # a smoke test, not a result

TRL's ``SFTTrainer`` through ``MaskSubSFTTrainer``: a Llama (128 wide, 4 layers, a 2,000-token byte-level BPE, no
mask token: token drop) trained from scratch on Rotten Tomatoes snippets cut in two, the first half of the words the
prompt, the rest the completion (completion-only loss: SFT's default for prompt-completion data); 2,000 training
pairs, 1,000 others for validation, 10 epochs. The metric is SFT's ``eval_mean_token_accuracy``: the completion
tokens predicted right, teacher-forced. Arms, each seed the same initialisation and data order:

- ``baseline``: ``masksub_ratio=0`` (SFT's own steps);
- ``all``: ratio 0.15 of every real token dropped (prompt and completion alike; MaskSub's behaviour);
- ``prompt``: ratio 0.15 of the prompt's tokens dropped, the completion whole (``PromptTokenDrop`` below, defined
  here for the measurement only).

Writes ``completion_only.json`` / ``.md`` to ``benchmarks/results``: each arm's paired gain over the baseline and
``prompt`` minus ``all``, mean and 95% t-interval over the seeds.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from masksub_hf.masking.base import choose_uniformly  # noqa: E402
from masksub_hf.masking.text import TextTokenDrop, maskable_tokens  # noqa: E402
from masksub_hf.scripts.demo_data import rotten_tomatoes  # noqa: E402
from masksub_hf.scripts.paired import paired_summary  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
ARMS = {"baseline": 0.0, "all": 0.15, "prompt": 0.15}
SEEDS = [0, 1, 2, 3, 4]
TRAIN, VALIDATION = slice(0, 2000), slice(4000, 5000)


class PromptTokenDrop(TextTokenDrop):
    """Token drop restricted to the prompt: the real, non-special tokens in no loss (labels -100)."""

    def draw(self, batch, generator=None):
        eligible = maskable_tokens(batch["input_ids"], batch.get("attention_mask"), self.special_token_ids)
        return choose_uniformly(eligible & (batch["labels"] == -100), self.ratio, generator)


def pairs(rows):
    """Prompt-completion pairs: each snippet's first half of words, then the rest."""
    import datasets

    words = [sentence.split() for sentence in rows]
    return datasets.Dataset.from_list([{"prompt": " ".join(w[:len(w) // 2]), "completion": " " + " ".join(w[len(w) // 2:])}
                                       for w in words])


def train_one(arm, seed, output, quick):
    """One run in this process; writes ``result.json``."""
    import torch
    from quality import bpe_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    from masksub_hf import MaskSubSFTConfig, MaskSubSFTTrainer

    torch.set_num_threads(1)  # runs share the cores
    frame = rotten_tomatoes(seed=0)["sentence"]
    train_rows, eval_rows = (frame[:200], frame[4000:4100]) if quick else (frame[TRAIN], frame[VALIDATION])
    tokenizer = bpe_tokenizer(frame[TRAIN], output / "tokenizer")
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256,
                                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
                                         eos_token_id=tokenizer.eos_token_id))
    args = MaskSubSFTConfig(output_dir=str(output), use_cpu=True, report_to="none", save_strategy="no", seed=seed,
                            masksub_ratio=ARMS[arm], per_device_train_batch_size=16, per_device_eval_batch_size=64,
                            learning_rate=2e-3, weight_decay=0.01, lr_scheduler_type="cosine", warmup_steps=0.05,
                            num_train_epochs=1 if quick else 10, bf16=False, gradient_checkpointing=False,
                            max_length=128, logging_steps=50, disable_tqdm=True, eval_strategy="no")
    trainer = MaskSubSFTTrainer(model=model, args=args, train_dataset=pairs(train_rows),
                                eval_dataset=pairs(eval_rows), processing_class=tokenizer)
    if arm == "prompt":  # the same drop, drawn among the prompt's tokens only (kept for the whole run)
        prompt_only = PromptTokenDrop.__new__(PromptTokenDrop)
        prompt_only.__dict__.update(trainer.masking.__dict__)
        trainer.masking = prompt_only
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    assert arm != "prompt" or isinstance(trainer.masking, PromptTokenDrop)  # not rebuilt at the start of training
    accuracy = 100 * trainer.evaluate()["eval_mean_token_accuracy"]
    (output / "result.json").write_text(json.dumps({"accuracy": accuracy, "train_seconds": seconds}))


def run(arm, seed, work, quick):
    """The cached result of one run, training it in a child process when missing."""
    output = work / f"{arm}_seed{seed}"
    result = output / "result.json"
    if not result.exists():
        output.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "OMP_NUM_THREADS": "1"}
        command = [sys.executable, __file__, "--train", arm, str(seed), str(output)] + (["--quick"] if quick else [])
        finished = subprocess.run(command, env=env, capture_output=True, text=True)
        if finished.returncode != 0:
            raise RuntimeError(finished.stderr[-3000:])
    return json.loads(result.read_text())


def summary(differences):
    mean, half_width = paired_summary(differences)
    return {"mean": mean, "ci95_half_width": half_width, "per_seed": differences}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", nargs=3, metavar=("ARM", "SEED", "OUTPUT"), help="(internal) one run")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--work_dir", default=str(RESULTS / "completion_only_runs"))
    args = parser.parse_args()
    if args.train:
        arm, seed, output = args.train
        return train_one(arm, int(seed), Path(output), args.quick)
    work = Path(args.work_dir) / ("quick" if args.quick else "full")
    seeds = SEEDS[:1] if args.quick else SEEDS
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {(arm, seed): pool.submit(run, arm, seed, work, args.quick) for seed in seeds for arm in ARMS}
        runs = {key: future.result() for key, future in futures.items()}
    accuracy = {arm: [runs[arm, seed]["accuracy"] for seed in seeds] for arm in ARMS}
    report = {
        "command": " ".join(["python benchmarks/completion_only.py", *sys.argv[1:]]),
        "measured": time.strftime("%Y-%m-%d"), "device": "cpu", "seeds": seeds, "masksub_ratio": ARMS["all"],
        "accuracy": accuracy,
        "mean_accuracy": {arm: sum(values) / len(values) for arm, values in accuracy.items()},
        "time_ratio": {arm: sum(runs[arm, s]["train_seconds"] / runs["baseline", s]["train_seconds"] for s in seeds)
                       / len(seeds) for arm in ARMS},
        "gain_all": summary([a - b for a, b in zip(accuracy["all"], accuracy["baseline"])]),
        "gain_prompt": summary([a - b for a, b in zip(accuracy["prompt"], accuracy["baseline"])]),
        "prompt_minus_all": summary([a - b for a, b in zip(accuracy["prompt"], accuracy["all"])]),
    }
    name = "completion_only_quick" if args.quick else "completion_only"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2))
    lines = [f"# Completion-only training: drop from all tokens or from the prompt only ({report['measured']}, "
             f"cpu)", "", f"`{report['command']}`, seeds {seeds}, ratio {ARMS['all']}; completion-token accuracy "
             "(SFT's eval_mean_token_accuracy), %.", "", "| comparison | mean | 95% interval | per seed |", "|---|---|---|---|"]
    for key in ("gain_all", "gain_prompt", "prompt_minus_all"):
        row = report[key]
        interval = ("n/a" if row["ci95_half_width"] is None else
                    f"[{row['mean'] - row['ci95_half_width']:+.2f}, {row['mean'] + row['ci95_half_width']:+.2f}]")
        lines.append(f"| {key} | {row['mean']:+.2f} | {interval} | "
                     f"{', '.join(f'{d:+.2f}' for d in row['per_seed'])} |")
    lines += ["", "mean accuracy: " + ", ".join(f"{arm} {value:.2f}" for arm, value in report["mean_accuracy"].items()),
              "time vs baseline: " + ", ".join(f"{arm} x{value:.2f}" for arm, value in report["time_ratio"].items())]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
