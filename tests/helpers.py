"""Tiny offline models, datasets, a gradient probe and a 2-process launcher shared by the tests."""

import gc
import os
import re
import subprocess
import sys

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    TrainerCallback,
    ViTConfig,
    ViTForImageClassification,
)

from masksub_hf import MaskSubTextCollator, MaskSubTrainingArguments
from masksub_hf.scripts.demo_data import ListDataset  # noqa: F401  (re-exported for the tests)

# Where the tests that use training_args train: "cpu" (the default run), or "cuda" (benchmarks/gpu.py sets
# MASKSUB_TEST_DEVICE=cuda for the mixed-precision and compile tests on a lent GPU).
TEST_DEVICE = os.environ.get("MASKSUB_TEST_DEVICE", "cpu")
IMAGE_SIZE, PATCH_SIZE = 32, 8
NUM_PATCHES = (IMAGE_SIZE // PATCH_SIZE) ** 2
# Two small layers without dropout, so a reference computation sees exactly what the trainer sees.
TINY_ENCODER = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)


def tiny_vit(num_labels=3, problem_type=None, seed=0):
    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        **TINY_ENCODER,
        num_labels=num_labels,
        problem_type=problem_type,
    )
    return ViTForImageClassification(config)


def tiny_bert(num_labels=2, seed=0, vocab_size=64):
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        max_position_embeddings=64,
        **TINY_ENCODER,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config)


def word_tokenizer(folder, sentences):
    """A BERT word-piece tokenizer (with [MASK]) whose vocabulary is the words of ``sentences``."""
    from transformers import BertTokenizerFast

    words = sorted(set(re.findall(r"\w+|[^\w\s]", " ".join(sentences).lower())))  # BERT's word and punctuation split
    vocab = os.path.join(str(folder), "vocab.txt")
    os.makedirs(str(folder), exist_ok=True)
    written = f"{vocab}.{os.getpid()}"  # whole, then renamed: 2-process scripts write the same file at once
    with open(written, "w") as file:
        file.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    os.replace(written, vocab)
    tokenizer = BertTokenizerFast(vocab=vocab)  # transformers 5 silently ignores vocab_file= (every token [UNK])
    assert tokenizer.vocab_size == len(words) + 5, tokenizer.vocab_size
    return tokenizer


def bpe_tokenizer(sentences, vocab_size=400, padding_side="right"):
    """A byte-level BPE tokenizer trained on ``sentences``, with a pad token and no mask token (as decoder-only
    models' tokenizers): ``<pad>`` is id 0, ``<eos>`` id 1."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(list(sentences), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>",
                                   padding_side=padding_side)


def review_items(folder, count=8):
    """``(tokenizer, items)``: ``count`` real reviews of different lengths, tokenized, unpadded, labelled."""
    from masksub_hf.scripts.demo_data import rotten_tomatoes

    reviews = rotten_tomatoes(seed=0).head(count)
    tokenizer = word_tokenizer(folder, reviews["sentence"])
    items = [{**tokenizer(sentence, truncation=True, max_length=48), "labels": label}
             for sentence, label in zip(reviews["sentence"], reviews["label"])]
    return tokenizer, items


def image_items(num_samples, labels, num_keep, seed=0):
    """Samples with their own precomputed keep indices, so a reference can apply the same masks."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(num_samples, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    keep = torch.rand(num_samples, NUM_PATCHES, generator=generator).argsort(dim=1)[:, :num_keep].sort(dim=1).values
    return [
        {"pixel_values": pixels[i], "labels": labels[i], "masksub_keep_indices": keep[i]} for i in range(num_samples)
    ]


def training_args(output_dir, arguments_class=MaskSubTrainingArguments, **overrides):
    defaults = dict(
        output_dir=str(output_dir),
        use_cpu=TEST_DEVICE == "cpu",
        report_to="none",
        save_strategy="no",
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=0.0,
        seed=0,
        disable_tqdm=True,
    )
    defaults.update(overrides)
    return arguments_class(**defaults)


class GradientProbe(TrainerCallback):
    """Copies every parameter's gradient right before the optimizer step (after Trainer's clipping)."""

    def __init__(self):
        self.gradients = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.gradients.append({n: whole(p.grad).detach().clone() for n, p in model.named_parameters()
                               if p.grad is not None})


def freeze_what_survives():
    """Trainer runs collect garbage several times each (Accelerate's ``free_memory``), and a full collection scans
    every live object: torch's, transformers' and earlier runs' (~540,000 after the imports alone, ~800,000 after
    the compile tests), 0.2-0.3 s each. Collected, then frozen, what survives is never scanned again: a collection
    sees only what comes after (a zoo test: 1.04 s -> 0.14 s; the 2-process exactness launch: 91 s -> 62 s).
    Objects freed by reference counting still go."""
    gc.collect()
    gc.freeze()


def whole(tensor):
    """A tensor FSDP2 shards (a DTensor) gathered whole on every process; any other tensor as it is."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def fsdp_on_cpu():
    """Let this process's Accelerate run FSDP on gloo CPU processes, for the tests.

    Accelerate keeps the FSDP plugin Trainer gives it only for GPU-like devices (``AcceleratorState``), and on CPU
    runs DDP; torch's FSDP2 (``fully_shard``) itself runs on gloo. Here the plugin is kept on CPU as on GPUs
    (mixed precision set the same way): Trainer then takes its FSDP path. Tests only: MaskSub never patches
    Accelerate.
    """
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    original = AcceleratorState.__init__
    if getattr(original, "keeps_fsdp_on_cpu", False):
        return

    def init(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            if self._mixed_precision != "no":
                fsdp_plugin.set_mixed_precision(self._mixed_precision)
            self.fsdp_plugin = fsdp_plugin
            self.distributed_type = PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    init.keeps_fsdp_on_cpu = True
    AcceleratorState.__init__ = init


def launch(script_args, processes=2, port=29517, timeout=600, config_file=None):
    """Run a script under ``accelerate launch``: 2 gloo processes on CPU (pass ``--use_cpu`` to the script),
    or the processes an Accelerate ``config_file`` describes (e.g. DeepSpeed), ``processes`` of them."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes)]
    if config_file:
        command += ["--config_file", str(config_file), "--main_process_port", str(port)]
    else:
        command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        if processes > 1:
            command += ["--multi_gpu", "--main_process_port", str(port)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}
    completed = subprocess.run(command + [str(a) for a in script_args], capture_output=True, text=True, env=env,
                               timeout=timeout)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed


class RecordingCollator(MaskSubTextCollator):
    """Keeps each batch it makes (with its text mask), so a reference can replay the step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches = []

    def __call__(self, features):
        batch = super().__call__(features)
        self.batches.append({k: v.clone() for k, v in batch.items()})
        return batch


class TokenProbe(GradientProbe):
    """Also keeps the gradient of the MaskSub-owned mask token, when there is one."""

    def __init__(self, owned):
        super().__init__()
        self.owned = owned

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        super().on_pre_optimizer_step(args, state, control, model=model)
        self.gradients[-1].update({f"owned.{i}": p.grad.clone() for i, p in enumerate(self.owned())})
