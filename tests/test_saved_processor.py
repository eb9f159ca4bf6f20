"""The image processor a run saves does, reloaded with ``AutoImageProcessor``, what the script's evaluation did.

Before: a model built with ``--config_name`` (DINOv2, MobileNetV2 at 32 px) was saved with ``size`` 32 but its
family's ``crop_size`` 224 and ``do_center_crop``: reloaded, the processor made 224 x 224 inputs, silently (class
probabilities up to 0.047 from what the script evaluated). A Hub-style folder whose processor resizes and then
crops trained at the resize size, not the crop the processor gives the model."""

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from script_fixtures import mnist_imagefolder
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    BitImageProcessor,
    Dinov2Config,
    MobileNetV2Config,
)
from transformers.models.auto import image_processing_auto
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

from masksub_hf.recipes.image_transforms import eval_transform
from masksub_hf.scripts import run_image_classification
from masksub_hf.scripts.image_processing import Geometry, family_processor, processor_geometry, set_processor_geometry

# Processors whose images reach the model otherwise than resized, cropped and normalised (the scripts' transforms
# take their size, not these steps): the reloaded processor gives the training shape, not the same values.
QUIRKS = {
    "levit": "resizes the shorter edge to 256/224 of its size before the crop",
    "mobilevit": "flips channels to BGR and does not normalise",
    "mobilevitv2": "flips channels to BGR and does not normalise",
    "efficientnet": "rescales to [-1, 1] with an offset before normalising",
    "donut-swin": "fits the image into its size and pads (thumbnail)",
    "textnet": "resizes to multiples of 32 with the ImageNet mean and std in another scale",
}
# Not image classifiers MaskSub trains from a config: NaFlex patch rows, colour clusters, a multimodal processor,
# timm (below), and PPLCNet (its classifier computes no loss).
NOT_HERE = {"siglip2", "imagegpt", "shieldgemma2", "timm_wrapper", "pp_lcnet"}
FAMILIES = sorted(set(MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES) & set(image_processing_auto.IMAGE_PROCESSOR_MAPPING_NAMES)
                  - NOT_HERE)


class Config:
    def __init__(self, model_type):
        self.model_type = model_type


def non_square_image():
    """Its resized long side (int(32 * 71 / 50) = 45) leaves an odd margin to crop: transformers' and torchvision's
    center crops are one pixel apart there."""
    return PIL.Image.fromarray(np.random.RandomState(0).randint(0, 255, (50, 71, 3), dtype=np.uint8))


@pytest.mark.parametrize("crop_ratio", [None, 0.875])
@pytest.mark.parametrize("model_type", FAMILIES)
def test_family_processor_reloads_as_evaluation_resizes_and_crops(tmp_path, model_type, crop_ratio):
    processor = family_processor(Config(model_type), 32)
    if crop_ratio is not None:  # --eval_crop_ratio: only processors that resize the shorter edge and crop take it
        try:
            set_processor_geometry(processor, Geometry.square(32, crop_ratio, processor.image_mean, processor.image_std))
        except ValueError as error:
            assert "without a center crop" in str(error)
            return
    geometry = processor_geometry(processor)
    processor.save_pretrained(tmp_path)
    reloaded = AutoImageProcessor.from_pretrained(tmp_path)(non_square_image(), return_tensors="pt")["pixel_values"][0]
    evaluated = eval_transform(geometry.size, geometry.resize, geometry.mean, geometry.std, geometry.interpolation,
                               geometry.floor_crop)(non_square_image())
    assert tuple(reloaded.shape) == tuple(evaluated.shape) == (3, 32, 32)
    if model_type not in QUIRKS:
        assert (reloaded - evaluated).abs().mean() < 1e-3  # PIL's rounding of resized pixels; the old error was 0.05+


def test_geometry_of_hub_processors():
    """Read as transformers does: resize (shorter edge or both sides), then the center crop."""
    dinov2 = BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224})
    assert processor_geometry(dinov2) == Geometry((224, 224), 256, dinov2.image_mean, dinov2.image_std, "bicubic")
    convnext = image_processing_auto.get_image_processor_class_from_name("ConvNextImageProcessor")()
    assert processor_geometry(convnext).size == (384, 384) and processor_geometry(convnext).resize == (384, 384)
    convnext.size = {"shortest_edge": 224}
    assert processor_geometry(convnext).resize == 256  # 224 / crop_pct 0.875


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    train_dir, validation_dir = mnist_imagefolder(root / "data", train=64, validation=32)
    for path in Path(root).rglob("*.png"):  # 31 x 28: at 32 px an odd margin of 3 to crop (see non_square_image)
        PIL.Image.open(path).convert("RGB").resize((31, 28)).save(path)
    return train_dir, validation_dir


def reloaded_loss(output, validation_dir):
    """The loss of the saved model and processor, reloaded, on the validation folder, and the processor's shape."""
    model = AutoModelForImageClassification.from_pretrained(output).eval()
    processor = AutoImageProcessor.from_pretrained(output)
    paths = sorted(Path(validation_dir).glob("*/*.png"))
    inputs = processor([PIL.Image.open(path).convert("RGB") for path in paths], return_tensors="pt")["pixel_values"]
    labels = torch.tensor([model.config.label2id[path.parent.name] for path in paths])
    with torch.no_grad():
        loss = model(pixel_values=inputs, labels=labels).loss
    return loss.item(), tuple(inputs.shape[-2:])


def dinov2_config(path):
    Dinov2Config(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64).save_pretrained(path)
    return ["--config_name", str(path)]


def mobilenet_config(path):
    MobileNetV2Config(image_size=32, depth_multiplier=0.35, num_channels=3).save_pretrained(path)
    return ["--config_name", str(path)]


def dinov2_hub_folder(path):
    """A Hub-style folder whose processor resizes the shorter edge to 40 and crops 32 (DINOv2's 256 / 224)."""
    AutoModelForImageClassification.from_config(
        Dinov2Config(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, num_labels=10)).save_pretrained(path)
    BitImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return ["--model_name_or_path", str(path)]


def timm_architecture(path):
    return ["--config_name", "test_vit", "--image_size", "32"]  # timm's tiny test ViT (16-px patches), built for 160 px


def resnet_folder_with_crop_ratio(path):
    from transformers import ResNetConfig

    ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic").save_pretrained(path)
    return ["--config_name", str(path), "--image_size", "32", "--eval_crop_ratio", "0.875"]


@pytest.mark.parametrize("source, size", [(dinov2_config, 32), (mobilenet_config, 32), (dinov2_hub_folder, 32),
                                          (timm_architecture, 32), (resnet_folder_with_crop_ratio, 32)],
                         ids=["dinov2-config", "mobilenet-config", "dinov2-hub-folder", "timm-image-size",
                              "resnet-crop-ratio"])
def test_saved_processor_reproduces_the_scripts_evaluation(tmp_path, digits, source, size):
    train_dir, validation_dir = digits
    output = tmp_path / "out"
    run_image_classification.main([
        *source(tmp_path / "model"), "--train_dir", str(train_dir), "--validation_dir", str(validation_dir),
        "--output_dir", str(output), "--do_train", "--do_eval", "--max_steps", "2", "--per_device_train_batch_size",
        "16", "--report_to", "none", "--use_cpu", "--save_strategy", "no", "--seed", "0", "--disable_tqdm", "true"])
    evaluated = json.loads((output / "all_results.json").read_text())["eval_loss"]
    loss, shape = reloaded_loss(output, validation_dir)
    assert shape == (size, size)
    assert loss == pytest.approx(evaluated, rel=1e-3)  # the same inputs, but for PIL's rounding of resized pixels
