"""``torch_compile=True``: every masking mode trains exactly as in eager mode.

Dynamo does not guard on module hooks, so a hook added only for the sub forward used to be missing from
the graph compiled for the main forward, which was then reused for the sub branch whenever both forwards
were called with the same arguments (a custom ``compute_loss`` calling ``model(pixel_values=...)``): the
sub branch silently saw every token. The matrix runs on Dynamo with the ``aot_eager`` backend (Dynamo's
graph capture and guards, AOT autograd, no code generation: seconds instead of minutes); one case runs on
the default ``inductor`` backend.
"""

import pytest
import torch
import torch.nn.functional as F
from helpers import ListDataset, tiny_bert, tiny_vit, training_args
from models import hf_model
from test_best_model import image_data, text_data

from masksub_hf import MaskSubTrainer

STEPS = 3


class ForwardOnlyCompute(MaskSubTrainer):
    """A custom ``compute_loss`` that calls the model without labels, as the sub branch does."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = F.cross_entropy(outputs.logits, labels)
        return (loss, outputs) if return_outputs else loss


def swin_with_drop_path():
    model = hf_model("swin")
    model.config.drop_path_rate = 0.1
    model = type(model)(model.config)
    for module in model.modules():
        if hasattr(module, "drop_prob"):
            module.drop_prob = 0.0  # the main branch without drop-path; PathSub's sub branch at 0.1
    return model


CASES = {  # mode -> (model, data)
    "tokens": (tiny_vit, image_data),
    "mask_token": (lambda: hf_model("swin"), image_data),
    "pixels": (lambda: hf_model("resnet"), image_data),
    "text": (tiny_bert, text_data),
    "dropout": (tiny_vit, image_data),
    "droppath": (swin_with_drop_path, image_data),
}


@pytest.fixture(autouse=True)
def dynamo_cleared_after():
    """Dynamo's caches outlive a test and slow every later model call of the session (x1.35 measured on the zoo):
    cleared after each test here."""
    yield
    torch._dynamo.reset()


def train(tmp_path, mode, custom_loss, ratio=0.5, **compile_args):
    build, data = CASES[mode]
    model = build()
    args = training_args(tmp_path, masksub_ratio=ratio, masksub_mode=mode, masksub_block_size=8, max_steps=STEPS,
                         per_device_train_batch_size=4, optim="sgd", learning_rate=0.1, **compile_args)
    trainer_class = ForwardOnlyCompute if custom_loss else MaskSubTrainer
    trainer = trainer_class(model=model, args=args, train_dataset=ListDataset(data()))
    torch._dynamo.reset()
    trainer.train()
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def assert_close_parameters(actual, expected, atol):
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, rtol=0, atol=atol, msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("custom_loss", [False, True], ids=["trainer_loss", "custom_compute_loss"])
@pytest.mark.parametrize("mode", list(CASES))
def test_compiled_training_equals_eager(tmp_path, mode, custom_loss):
    eager = train(tmp_path / "eager", mode, custom_loss)
    compiled = train(tmp_path / "compiled", mode, custom_loss, torch_compile=True, torch_compile_backend="aot_eager")
    assert_close_parameters(compiled, eager, atol=1e-5)
    # the sub branch really ran masked: without it (ratio 0) the weights end elsewhere
    plain = train(tmp_path / "plain", mode, custom_loss, ratio=0.0)
    assert any(not torch.allclose(plain[name], value, atol=1e-4) for name, value in eager.items())


@pytest.mark.slow
def test_inductor_token_drop_with_custom_compute_loss_equals_eager(tmp_path):
    eager = train(tmp_path / "eager", "tokens", custom_loss=True)
    compiled = train(tmp_path / "compiled", "tokens", custom_loss=True, torch_compile=True)
    assert_close_parameters(compiled, eager, atol=1e-5)
