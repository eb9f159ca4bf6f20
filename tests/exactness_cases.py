"""The exactness matrix's cases: every head kind x masking MaskSub supports, each with a reference in plain torch.

A case builds a tiny model, 7 training items and the collator a user would pass. Its reference takes one
micro-batch exactly as the trainer received it (the collator's output, with the mask MaskSub drew for it) and
returns two vectors written out in torch ops, with the mask applied by hand (no MaskSub code): the main branch's
loss per item (row, labelled token, image-text pair) and the sub branch's loss per item it predicts. The method
on the whole step is then ``0.5 * mean(all main items) + 0.5 * mean(all sub items)`` over every micro-batch of
every process (``reference_gradients``). Shared by tests/test_exactness.py and its 2-process script.
"""

import contextlib
import copy

import torch
import torch.nn.functional as F
import transformers
from helpers import TokenProbe, bpe_tokenizer, tiny_vit, word_tokenizer
from models import (
    REVIEWS,
    hf_model,
    model_and_tokenizer,
    pair_items,
    patch_row_items,
    tagged_items,
    tiny_clip,
    tiny_decoder,
    tiny_segmenter,
    tiny_seq2seq,
    tiny_siglip2,
)
from references import kept_positions, patch_mask, reference_image_embeds, reference_vit_logits, row_by_row_logits

from masksub_hf import MaskSubTextCollator, MaskSubTrainer
from masksub_hf.masking import MaskTokenBlocks, PixelMasking

ITEMS, BLOCK = 7, 8
FSDP2 = {"fsdp": True}  # version 2; its units: fsdp_units
ONE_BACKWARD, TWO_BACKWARD = {"masksub_backward": "one"}, {"masksub_backward": "two"}
# name: (processes, per-device batch, accumulation, engine and backward plan): 7 items, so the last micro-batch is
# smaller; 2 processes get 4 and 3 rows (even_batches off), unequal labelled tokens too. Plans: one process and DDP
# run two backward passes by default, FSDP2 one.
SETUPS = {
    "ga1": (1, 8, 1, {}),
    "ga2": (1, 4, 2, {}),
    "ga2_one_backward": (1, 4, 2, ONE_BACKWARD),
    "ddp_ga2": (2, 2, 2, {}),
    "ddp_ga2_one_backward": (2, 2, 2, ONE_BACKWARD),
    "fsdp2_ga1_two_backward": (2, 4, 1, FSDP2 | TWO_BACKWARD),
    "fsdp2_ga2": (2, 2, 2, FSDP2),
}
ONE_PROCESS_SETUPS = [setup for setup, (processes, *_) in SETUPS.items() if processes == 1]
TWO_PROCESS_SETUPS = [setup for setup, (processes, *_) in SETUPS.items() if processes == 2]


def soft_ce(sub, main):
    return -(torch.softmax(main.detach().float(), -1) * torch.log_softmax(sub.float(), -1)).sum(-1)


def image_items(labels, seed=0):
    pixels = torch.randn(ITEMS, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    return [{"pixel_values": pixels[i], "labels": labels[i]} for i in range(ITEMS)]


def row_losses(kind, main, sub, labels):
    """Per-row main and sub losses of a one-prediction-per-input head (transformers' loss for ``kind``)."""
    main, sub = main.float(), sub.float()
    if kind == "ce":
        return F.cross_entropy(main, labels, reduction="none"), soft_ce(sub, main)
    if kind == "bce":
        return (F.binary_cross_entropy_with_logits(main, labels, reduction="none").mean(-1),
                F.binary_cross_entropy_with_logits(sub, main.detach().sigmoid(), reduction="none").mean(-1))
    return (main.squeeze(-1) - labels) ** 2, ((sub - main.detach()) ** 2).mean(-1)


# (relative to a tensor's largest gradient, absolute as a fraction of the step's largest gradient): a difference
# within either is rounding. The absolute part is for gradients that are zero in exact arithmetic (a key bias's; a
# multiple-choice score head's bias, which a softmax over choices ignores): their computed values are sums of
# rounding errors of the step's large terms, a few units of the precision's epsilon of the largest gradient
# (float32: 1.2e-7; bfloat16: 3.9e-3).
# FSDP2's bf16 casts the parameters themselves to bf16 (autocast leaves the embeddings' and norms' in float32) and
# reduces gradients in bf16: measured up to 5.8% (an embedding's gradient, summed over every token).
TOLERANCE = {"fp32": (1e-5, 1e-6), "bf16": (5e-2, 5e-3), "bf16_fsdp2": (1e-1, 1e-2)}


class Recording:
    """Before a MaskSub trainer class: keeps every micro-batch as the step receives it, the collator's output plus
    the mask drawn for it."""

    recorded = ()

    def get_batch_samples(self, *args, **kwargs):
        batches, num_items = super().get_batch_samples(*args, **kwargs)
        self.recorded = [*self.recorded, *({k: v.detach().cpu().clone() for k, v in batch.items()
                                            if torch.is_tensor(v)} for batch in batches)]
        return batches, num_items


class RecordingTrainer(Recording, MaskSubTrainer):
    pass


def assert_gradients_equal(actual, expected, precision, label):
    """Each tensor's largest difference within a tolerance of its largest gradient, or within an absolute floor
    (a fraction of the step's largest gradient: rounding, for gradients that are zero in exact arithmetic)."""
    assert actual.keys() == expected.keys(), (label, sorted(actual.keys() ^ expected.keys()))
    relative, absolute = TOLERANCE[precision]
    floor = absolute * max(gradient.abs().max().item() for gradient in expected.values())
    for name, gradient in expected.items():
        allowed = max(relative * gradient.abs().max().item(), floor)
        difference = (actual[name].float() - gradient.float()).abs().max().item()
        assert difference <= allowed, f"{label} {name}: {difference:.3g} > {allowed:.3g}"


class Case:
    mode, ratio, args, token = "auto", 0.5, {}, None  # token: the mask token, where MaskSub owns one

    def collator(self):
        return None


class VitRows(Case):
    """ViT, patch tokens dropped (the trainer draws the masks); single-label, multi-label BCE, regression."""

    def __init__(self, kind):
        self.kind = kind

    def build(self, tmp_path):
        generator = torch.Generator().manual_seed(1)
        if self.kind == "bce":
            return tiny_vit(3, "multi_label_classification"), image_items(torch.randint(0, 2, (ITEMS, 3),
                                                                                       generator=generator).float())
        if self.kind == "mse":
            return tiny_vit(1, "regression"), image_items(torch.randn(ITEMS, generator=generator))
        return tiny_vit(3), image_items(torch.randint(0, 3, (ITEMS,), generator=generator))

    def reference(self, model, batch):
        main = reference_vit_logits(model, batch["pixel_values"])
        sub = reference_vit_logits(model, batch["pixel_values"], batch["masksub_keep_indices"])
        return row_losses(self.kind, main, sub, batch["labels"])


class BlockImages(Case):
    """Block masking on transformers' image models: zero-filled pixel blocks (ResNet, ConvNeXt, ConvNeXt V2), or a
    mask token through the model's own ``bool_masked_pos`` path (Swin, Swin V2, BEiT; the token MaskSub's own where
    the model has none)."""

    args = {"masksub_block_size": BLOCK}

    def __init__(self, family):
        self.family = family
        self.pixels = family in PIXEL_FAMILIES

    def build(self, tmp_path):
        labels = torch.randint(0, 3, (ITEMS,), generator=torch.Generator().manual_seed(1))
        return hf_model(self.family), image_items(labels)

    def reference(self, model, batch):
        pixels = batch["pixel_values"]
        blocks = batch[PixelMasking.key if self.pixels else MaskTokenBlocks.key]
        main = model(pixel_values=pixels).logits
        if self.pixels:
            sub = model(pixel_values=pixels * (1 - patch_mask(blocks, BLOCK).unsqueeze(1).float())).logits
        else:
            backbone = getattr(model, self.family)
            if self.token is not None:  # MaskSub's own token, lent to transformers' own masked-image path
                backbone.embeddings.mask_token = self.token
            masked = patch_mask(blocks, BLOCK // model.config.patch_size).flatten(1)
            sub = model.classifier(backbone(pixel_values=pixels, bool_masked_pos=masked).pooler_output)
            if self.token is not None:
                backbone.embeddings.mask_token = None
        return row_losses("ce", main, sub, batch["labels"])


class Segments(Case):
    """Semantic segmentation: SegFormer with zero-filled pixel blocks, BEiT with a mask token (MaskSub's own) through
    its embeddings' ``bool_masked_pos`` (the trainer draws both). Each labelled pixel an item, at the label map's
    resolution (the logits upsampled bilinearly, as the heads' loss does); a border of each label map ignored (255).
    """

    args = {"masksub_block_size": BLOCK}

    def __init__(self, family):
        self.family = family
        self.mode = "pixels" if family == "segformer" else "mask_token"  # what auto picks (tests/test_zoo.py)

    def build(self, tmp_path):
        generator = torch.Generator().manual_seed(1)
        labels = torch.randint(0, 3, (ITEMS, 32, 32), generator=generator)
        labels[:, :2] = 255  # unlabelled rows
        labels[3, :, :20] = 255  # one map mostly unlabelled: items differ per image
        return tiny_segmenter(self.family), image_items(labels)

    def reference(self, model, batch):
        pixels, labels = batch["pixel_values"], batch["labels"]
        if self.family == "segformer":
            blocks = patch_mask(batch[PixelMasking.key], BLOCK).unsqueeze(1).float()
            sub = model(pixel_values=pixels * (1 - blocks)).logits
        else:  # the blocks' patches handed to the embeddings, with the reference's copy of MaskSub's token
            masked = patch_mask(batch[MaskTokenBlocks.key], BLOCK // model.config.patch_size).flatten(1)
            embeddings = model.beit.embeddings
            hook = embeddings.register_forward_pre_hook(
                lambda module, args, kwargs: (args, {**kwargs, "bool_masked_pos": masked}), with_kwargs=True)
            embeddings.mask_token = self.token
            sub = model(pixel_values=pixels).logits
            embeddings.mask_token = None
            hook.remove()
        main = model(pixel_values=pixels).logits

        def pixels_of(logits):  # (labelled pixels, classes) at the labels' resolution
            upsampled = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)
            return upsampled.permute(0, 2, 3, 1)[labels != 255]

        return (F.cross_entropy(pixels_of(main), labels[labels != 255], reduction="none"),
                soft_ce(pixels_of(sub), pixels_of(main)))


def review_items(tokenizer, eos=""):
    return [{**tokenizer(" ".join(text.split()[:5 + 2 * i]) + eos), "labels": i % 2}
            for i, text in enumerate(REVIEWS[:ITEMS])]


class TextRows(Case):
    """Sequence classifiers: BERT with [MASK] or token drop; a Qwen2 decoder with token drop, left padding and
    pad == eos (rows end in an attended eos; the head pools the token before it)."""

    ratio = 0.3

    def __init__(self, family, mode):
        self.family, self.mode = family, mode

    def build(self, tmp_path):
        if self.family == "bert":
            self.tokenizer = word_tokenizer(tmp_path / "vocab", REVIEWS)
            torch.manual_seed(0)
            config = transformers.BertConfig(vocab_size=self.tokenizer.vocab_size, max_position_embeddings=64,
                                             hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                             intermediate_size=64, hidden_dropout_prob=0.0,
                                             attention_probs_dropout_prob=0.0, num_labels=2)
            return transformers.BertForSequenceClassification(config), review_items(self.tokenizer)
        self.tokenizer = bpe_tokenizer(REVIEWS, padding_side="left")
        self.tokenizer.pad_token = self.tokenizer.eos_token
        model = tiny_decoder("qwen2", len(self.tokenizer), self.tokenizer.pad_token_id)
        return model, review_items(self.tokenizer, eos=self.tokenizer.eos_token)

    def collator(self):
        return MaskSubTextCollator(self.tokenizer, self.ratio, mode=self.mode)

    def reference(self, model, batch):
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        main = model(**inputs).logits
        if self.mode == "text":
            sub = model(**{**inputs, "input_ids": batch["masksub_input_ids"]}).logits
        else:
            sub = row_by_row_logits(model, inputs, batch["masksub_drop_mask"])
        return row_losses("ce", main, sub, batch["labels"])


class ScoringBert(Case):
    """A tiny BERT whose head scores alternatives (choices, answer starts and ends), over a word-piece tokenizer of
    the reviews (with [MASK]); [MASK] or token drop."""

    ratio = 0.3

    def __init__(self, mode):
        self.mode = mode

    def tiny_bert(self, tmp_path, head):
        self.tokenizer = word_tokenizer(tmp_path / "vocab", REVIEWS)
        torch.manual_seed(0)
        return head(transformers.BertConfig(vocab_size=self.tokenizer.vocab_size, max_position_embeddings=64,
                                            hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                            intermediate_size=64, hidden_dropout_prob=0.0,
                                            attention_probs_dropout_prob=0.0,
                                            # at 0.02 near-uniform scores in both branches: the sub branch's
                                            # gradients ~1e-5 of the main's, below what the matrix can see
                                            initializer_range=0.2))


class Choices(ScoringBert):
    """Multiple choice: 3 choices an input, each a sentence pair (context, ending) of its own length, masked as a
    sequence of its own; an input an item."""

    def build(self, tmp_path):
        model = self.tiny_bert(tmp_path, transformers.BertForMultipleChoice)
        items = []
        for i, text in enumerate(REVIEWS[:ITEMS]):
            context = " ".join(text.split()[:3 + i])
            endings = [" ".join(REVIEWS[(i + 3 * c + 1) % len(REVIEWS)].split()[:3 + 2 * c]) for c in range(3)]
            items.append({**self.tokenizer([context] * 3, endings), "labels": i % 3})
        return model, items

    def collator(self):
        base = transformers.DataCollatorForMultipleChoice(self.tokenizer)
        return MaskSubTextCollator(self.tokenizer, self.ratio, mode=self.mode, base_collator=base)

    def reference(self, model, batch):
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
        main = model(**inputs).logits
        if self.mode == "text":
            sub = model(**{**inputs, "input_ids": batch["masksub_input_ids"]}).logits
        else:  # each choice's kept tokens alone, at their original positions: one score each
            sub = torch.stack([
                row_by_row_logits(lambda **one: model(**{k: v[:, None] for k, v in one.items()}),
                                  {k: v[row] for k, v in inputs.items()}, batch["masksub_drop_mask"][row])[:, 0]
                for row in range(len(main))])
        return row_losses("ce", main, sub, batch["labels"])


class Answers(ScoringBert):
    """Extractive question answering: a question and a review, the answer a span of the review, one input's both
    ends past the sequence (transformers ignores it: no item). An input an item, its loss the mean of its start and
    end cross-entropies; the sub branch's distributions over the real tokens it sees, the main one's at the same
    tokens renormalised."""

    def build(self, tmp_path):
        model = self.tiny_bert(tmp_path, transformers.BertForQuestionAnswering)
        items = []
        for i, text in enumerate(REVIEWS[:ITEMS]):
            encoded = self.tokenizer(" ".join(REVIEWS[-1 - i].split()[:2 + i % 3]), " ".join(text.split()[:4 + 2 * i]))
            start = encoded["token_type_ids"].index(1) + i % 3  # in the review
            if i == 3:  # both ends past the sequence: transformers' loss ignores the input
                items.append({**encoded, "start_positions": 1000, "end_positions": 1000})
            else:
                items.append({**encoded, "start_positions": start, "end_positions": start + i % 2})
        return model, items

    def collator(self):
        return MaskSubTextCollator(self.tokenizer, self.ratio, mode=self.mode,
                                   base_collator=transformers.DataCollatorWithPadding(self.tokenizer))

    def reference(self, model, batch):
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
        main = model(**inputs)
        length = batch["input_ids"].shape[1]
        main_losses, sub_losses = [], []
        for row in range(batch["input_ids"].shape[0]):
            start, end = int(batch["start_positions"][row]), int(batch["end_positions"][row])
            if start >= length:
                continue
            main_losses.append((F.cross_entropy(main.start_logits[row].float(), torch.tensor(start))
                                + F.cross_entropy(main.end_logits[row].float(), torch.tensor(end))) / 2)
            if self.mode == "text":
                real = batch["attention_mask"][row].bool()
                sub = model(**{k: v[row][None] for k, v in inputs.items()}
                            | {"input_ids": batch["masksub_input_ids"][row][None]})
                positions = torch.arange(length)[real]
                sub_start, sub_end = sub.start_logits[0, real], sub.end_logits[0, real]
            else:  # the kept tokens alone, at their original positions
                positions = torch.tensor(kept_positions(batch, batch["masksub_drop_mask"], row))
                sub = model(input_ids=batch["input_ids"][row, positions][None], position_ids=positions[None],
                            token_type_ids=batch["token_type_ids"][row, positions][None],
                            attention_mask=torch.ones(1, len(positions), dtype=torch.long))
                sub_start, sub_end = sub.start_logits[0], sub.end_logits[0]
            sub_losses.append((soft_ce(sub_start, main.start_logits[row, positions])
                               + soft_ce(sub_end, main.end_logits[row, positions])) / 2)
        return torch.stack(main_losses), torch.stack(sub_losses)


class TokenTags(Case):
    """Token classifiers: BERT with [MASK] or token drop; each labelled token an item (the sub branch's: the
    labelled tokens it predicts)."""

    ratio = 0.3

    def __init__(self, family, mode):
        self.family, self.mode = family, mode

    def build(self, tmp_path):
        model, self.tokenizer = model_and_tokenizer(self.family, tmp_path)
        return model, tagged_items(self.tokenizer)[:ITEMS]

    def collator(self):
        base = transformers.DataCollatorForTokenClassification(self.tokenizer)
        return MaskSubTextCollator(self.tokenizer, self.ratio, mode=self.mode, base_collator=base)

    def reference(self, model, batch):
        labels, attention = batch["labels"], batch["attention_mask"]
        main = model(input_ids=batch["input_ids"], attention_mask=attention).logits
        main_losses = F.cross_entropy(main[labels != -100].float(), labels[labels != -100], reduction="none")
        sub_losses = []
        for row in range(labels.shape[0]):
            if self.mode == "text":
                logits = model(input_ids=batch["masksub_input_ids"][row][None], attention_mask=attention[row][None])
                positions = list(range(labels.shape[1]))
            else:
                dropped = batch["masksub_drop_mask"][row]
                positions = [i for i in range(labels.shape[1]) if attention[row, i] and not dropped[i]]
                kept = torch.tensor(positions)
                # the mask given: without one, transformers >= 5.25 reads gapped positions as packed sequences
                logits = model(input_ids=batch["input_ids"][row, kept][None], position_ids=kept[None],
                               attention_mask=torch.ones(1, len(kept), dtype=torch.long))
            for j, position in enumerate(positions):
                if labels[row, position] != -100:
                    sub_losses.append(soft_ce(logits.logits[0, j], main[row, position]))
        return main_losses, torch.stack(sub_losses)


class NextTokens(Case):
    """A causal LM (Llama) with token drop: each supervised next token an item; every other row starts with a
    two-token prompt left out of the loss (completion-only), right padding labelled -100."""

    ratio = 0.3
    mode = "text_drop"

    def build(self, tmp_path):
        self.tokenizer = bpe_tokenizer(REVIEWS)
        model = tiny_decoder("llama", len(self.tokenizer), self.tokenizer.pad_token_id, head="causal_lm")
        items = []
        for i, text in enumerate(REVIEWS[:ITEMS]):
            encoded = self.tokenizer(" ".join(text.split()[:5 + 2 * i]))
            prompt = 2 if i % 2 else 0  # the first token's label counts in no loss: a model predicts from it
            items.append({**encoded, "labels": [-100] * prompt + encoded["input_ids"][prompt:]})
        return model, items

    def collator(self):
        base = transformers.DataCollatorForSeq2Seq(self.tokenizer)
        return MaskSubTextCollator(self.tokenizer, self.ratio, mode=self.mode, base_collator=base)

    def reference(self, model, batch):
        labels, attention = batch["labels"], batch["attention_mask"]
        main = model(input_ids=batch["input_ids"], attention_mask=attention).logits
        main_losses, sub_losses = [], []
        for row in range(labels.shape[0]):
            for position in range(labels.shape[1] - 1):
                if labels[row, position + 1] != -100:
                    main_losses.append(F.cross_entropy(main[row, position].float(), labels[row, position + 1]))
            kept = kept_positions(batch, batch["masksub_drop_mask"], row)
            logits = model(input_ids=batch["input_ids"][row, kept][None], position_ids=torch.tensor([kept]),
                           attention_mask=torch.ones(1, len(kept), dtype=torch.long)).logits[0]
            for j, position in enumerate(kept):
                if position + 1 < labels.shape[1] and labels[row, position + 1] != -100:
                    sub_losses.append(soft_ce(logits[j], main[row, position]))
        return torch.stack(main_losses), torch.stack(sub_losses)


INIT = {"bart": 0.2, "t5": 0.05}


class Targets(Case):
    """A seq2seq LM, the source masked and the decoder teacher-forced on the labels: BART with [MASK] (the collator
    also makes the decoder's inputs), T5 with token drop (hidden from attention: T5 takes no position_ids; the
    model makes the decoder's inputs). Each labelled target token an item; target padding labelled -100."""

    ratio = 0.3

    def __init__(self, family, mode):
        self.family, self.mode = family, mode

    def build(self, tmp_path):
        if self.mode == "text":
            self.tokenizer = word_tokenizer(tmp_path / "vocab", REVIEWS)
            vocab, eos = self.tokenizer.vocab_size, self.tokenizer.sep_token_id
        else:
            self.tokenizer = bpe_tokenizer(REVIEWS)
            vocab, eos = len(self.tokenizer), self.tokenizer.eos_token_id
        # BART at 0.02: near-uniform next-token distributions, the sub branch's gradients too small for the matrix
        # to see; T5 at 10x its scale: one-hot attention, blind to its positions
        model = tiny_seq2seq(self.family, vocab, self.tokenizer.pad_token_id, eos, init=INIT[self.family])
        items = []
        for i, text in enumerate(REVIEWS[:ITEMS]):
            source = self.tokenizer(" ".join(text.split()[:4 + 2 * i]))
            target = self.tokenizer(" ".join(REVIEWS[-1 - i].split()[:2 + i % 4]))["input_ids"]
            items.append({**source, "labels": target})
        self.model = model
        return model, items

    def collator(self):
        # BART: the collator makes decoder_input_ids (given the model); T5: the model makes them from the labels
        base = transformers.DataCollatorForSeq2Seq(self.tokenizer, model=self.model if self.mode == "text" else None)
        return MaskSubTextCollator(self.tokenizer, self.ratio, mode=self.mode, base_collator=base)

    def reference(self, model, batch):
        labels, attention = batch["labels"], batch["attention_mask"]
        start = torch.full_like(labels[:, :1], model.config.decoder_start_token_id)
        decoder = torch.cat([start, labels[:, :-1]], dim=1)  # teacher forcing: the target shifted right
        decoder = decoder.masked_fill(decoder == -100, model.config.pad_token_id)
        main = model(input_ids=batch["input_ids"], attention_mask=attention, decoder_input_ids=decoder).logits
        if self.mode == "text":
            sub = model(input_ids=batch["masksub_input_ids"], attention_mask=attention, decoder_input_ids=decoder)
        else:  # the dropped source tokens hidden from every attention, the encoder's and the decoder's cross
            sub = model(input_ids=batch["input_ids"], decoder_input_ids=decoder,
                        attention_mask=attention * ~batch["masksub_drop_mask"])
        supervised = labels != -100
        return (F.cross_entropy(main[supervised].float(), labels[supervised], reduction="none"),
                soft_ce(sub.logits[supervised], main[supervised]))


class ClipPairs(Case):
    """CLIP: images only masked (patch tokens dropped); each image-text pair an item of the micro-batch's matrix."""

    def build(self, tmp_path):
        return tiny_clip(), pair_items()[:ITEMS]

    def reference(self, model, batch):
        main = model(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"],
                     attention_mask=batch["attention_mask"], return_loss=True)
        logits = main.logits_per_image.float()
        pairs = torch.arange(len(logits))
        main_losses = 0.5 * (F.cross_entropy(logits, pairs, reduction="none")
                             + F.cross_entropy(logits.t(), pairs, reduction="none"))
        image = reference_image_embeds(model, batch["pixel_values"], batch["masksub_keep_indices"])
        image = image / image.norm(dim=-1, keepdim=True)
        sub = (model.logit_scale.exp() * image @ main.text_embeds.detach().t()).float()
        return main_losses, 0.5 * (soft_ce(sub, logits) + soft_ce(sub.t(), logits.t()))


class Siglip2PatchRows(Case):
    """SigLIP 2: patch rows (NaFlex), the hidden ones zeroed in pixel_attention_mask (the trainer draws them); the
    pairwise sigmoid loss, an image's row of pair losses an item."""

    def build(self, tmp_path):
        drawn_here = "masksub_hidden_patches"
        return tiny_siglip2(), [{k: v for k, v in item.items() if k != drawn_here} for item in patch_row_items()[:ITEMS]]

    def reference(self, model, batch):
        images = {"pixel_values": batch["pixel_values"], "spatial_shapes": batch["spatial_shapes"]}
        main = model(**images, pixel_attention_mask=batch["pixel_attention_mask"], input_ids=batch["input_ids"],
                     attention_mask=batch["attention_mask"], return_loss=True)
        logits = main.logits_per_image.float()
        signs = 2 * torch.eye(len(logits)) - 1
        main_losses = -F.logsigmoid(signs * logits).sum(dim=1)
        seen = batch["pixel_attention_mask"] * ~batch["masksub_hidden_patches"]
        image = model.get_image_features(**images, pixel_attention_mask=seen).pooler_output
        image = image / image.norm(dim=-1, keepdim=True)
        sub = (model.logit_scale.exp() * image @ main.text_embeds.detach().t() + model.logit_bias).float()
        sub_losses = F.binary_cross_entropy_with_logits(sub, torch.sigmoid(logits.detach()), reduction="none")
        return main_losses, sub_losses.sum(dim=1)


PIXEL_FAMILIES = ("resnet", "convnext", "convnextv2")
MASK_TOKEN_FAMILIES = ("swin", "swinv2", "beit")
# The matrix runs one family of each block kind; the family tests (tests/test_families.py) run every one at GA=1.
FAMILY_CASES = {f"{family}_blocks": (lambda family=family: BlockImages(family))
                for family in PIXEL_FAMILIES + MASK_TOKEN_FAMILIES}
CASES = {
    "vit_tokens_ce": lambda: VitRows("ce"),
    "vit_tokens_bce": lambda: VitRows("bce"),
    "vit_tokens_mse": lambda: VitRows("mse"),
    "resnet_pixels": lambda: BlockImages("resnet"),
    "swin_mask_token": lambda: BlockImages("swin"),
    "bert_mask": lambda: TextRows("bert", "text"),
    "bert_token_drop": lambda: TextRows("bert", "text_drop"),
    "qwen2_token_drop_left_pad_eos": lambda: TextRows("qwen2", "text_drop"),
    "bert_choices_mask": lambda: Choices("text"),
    "bert_choices_drop": lambda: Choices("text_drop"),
    "bert_answers_mask": lambda: Answers("text"),
    "bert_answers_drop": lambda: Answers("text_drop"),
    "bert_tokens_mask": lambda: TokenTags("bert", "text"),
    "bert_tokens_drop": lambda: TokenTags("bert", "text_drop"),
    "llama_causal_lm_token_drop": NextTokens,
    "bart_seq2seq_mask": lambda: Targets("bart", "text"),
    "t5_seq2seq_drop": lambda: Targets("t5", "text_drop"),
    "segformer_segments_pixels": lambda: Segments("segformer"),
    "beit_segments_mask_token": lambda: Segments("beit"),
    "clip": ClipPairs,
    "siglip2_patch_rows": Siglip2PatchRows,
}
DUAL_ENCODERS = ("clip", "siglip2_patch_rows")


def run_case(name, setup, precision, tmp_path, training_args, trainer_class):
    """Train one optimizer step; ``(case, initial model, trainer, gradients before the step, batches seen here)``."""
    from helpers import ListDataset

    case = (CASES | FAMILY_CASES)[name]()
    model, items = case.build(tmp_path)
    initial = copy.deepcopy(model)
    processes, batch, accumulation, engine = SETUPS[setup]
    refusal = fsdp_refusal(model, precision) if engine.get("fsdp") else None
    if refusal:
        raise Unshardable(refusal)
    args = training_args(tmp_path / f"{name}_{setup}_{precision}", per_device_train_batch_size=batch,
                         gradient_accumulation_steps=accumulation, max_steps=1, masksub_ratio=case.ratio,
                         masksub_mode=case.mode, bf16=precision == "bf16", optim="sgd",
                         accelerator_config={"even_batches": False}, **engine, **fsdp_units(model, engine),
                         **case.args)
    trainer = trainer_class(model=model, args=args, train_dataset=ListDataset(items), data_collator=case.collator())
    probe = TokenProbe(trainer._owned_parameters)  # the model's gradients and an owned mask token's
    trainer.add_callback(probe)
    if trainer._owned_parameters():
        case.token = torch.nn.Parameter(trainer._owned_parameters()[0].detach().clone())
    trainer.linear_dtypes = set()  # what every linear layer computed in, both branches: bf16 autocast reaches both
    hooks = [module.register_forward_hook(lambda m, a, out: trainer.linear_dtypes.add(out.dtype))
             for module in model.modules() if isinstance(module, torch.nn.Linear)]
    trainer.train()
    for hook in hooks:
        hook.remove()
    return case, initial, trainer, probe.gradients[0]


def fsdp_units(model, engine):
    """The layer classes FSDP2 shards as units: the model's ``_no_split_modules`` less any that holds the input
    embedding (Accelerate 1.16 then shards that embedding once more by itself, which fails: already sharded)."""
    if not engine.get("fsdp"):
        return {}
    embedding = model.get_input_embeddings()
    units = {type(module).__name__ for module in model.modules()
             if type(module).__name__ in (model._no_split_modules or ())
             and not any(inner is embedding for inner in module.modules())}
    return {"fsdp_config": {"version": 2, "transformer_layer_cls_to_wrap": sorted(units)}}


class Unshardable(Exception):
    """A case whose model the engine itself cannot shard."""


def fsdp_refusal(model, precision):
    """Why Accelerate cannot train ``model`` with FSDP2 on CPU (plain ``Trainer`` fails the same), or None."""
    try:
        embedding = model.get_input_embeddings()  # Accelerate 1.16's FSDP2 asks every model for it
    except NotImplementedError:
        return f"Accelerate's FSDP2 cannot prepare {type(model).__name__}: its get_input_embeddings raises"
    # It shards the input embedding as a unit of its own: a weight another module holds too (BART's encoder and
    # decoder embeddings share model.shared's) is then in two FSDP groups, which torch refuses.
    weight, output = getattr(embedding, "weight", None), model.get_output_embeddings()
    holders = [type(module).__name__ for module in model.modules() if module is not embedding and module is not output
               and any(parameter is weight for parameter in module.parameters(recurse=False))]
    if holders:
        return (f"Accelerate's FSDP2 cannot prepare {type(model).__name__}: its input embedding's weight is shared "
                f"with {holders[0]}")
    if precision == "bf16" and any(isinstance(module, torch.nn.BatchNorm2d) for module in model.modules()):
        return (f"{type(model).__name__} under FSDP2's bf16 on CPU: torch's CPU batch_norm refuses bf16 weights "
                "beside float32 running statistics")
    return None


def reference_gradients(case, model, batches, precision):
    """One backward of ``0.5 * mean(main items) + 0.5 * mean(sub items)`` over every micro-batch of the step."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    main, sub = [], []
    for batch in batches:
        with autocast:
            main_losses, sub_losses = case.reference(model, batch)
        main.append(main_losses.float())
        sub.append(sub_losses.float())
    main, sub = torch.cat(main), torch.cat(sub)
    (0.5 * main.sum() / len(main) + 0.5 * sub.sum() / len(sub)).backward()
    gradients = {n: p.grad for n, p in model.named_parameters() if p.grad is not None and p is not case.token}
    if case.token is not None:
        gradients["owned.0"] = case.token.grad
    return gradients
