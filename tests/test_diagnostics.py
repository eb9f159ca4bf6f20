"""Figure-2 diagnostics: per-branch gradient norms in the logs, and the plots drawn from them."""

import copy

import pytest
import torch
from helpers import ListDataset, image_items, training_args
from models import make_case
from PIL import Image
from references import REFERENCE_LOSSES, reference_vit_logits

from masksub_hf import MaskSubTrainer
from masksub_hf.scripts.plot import main as plot_main


def branch_gradient_norm(model, loss):
    model.zero_grad()
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).norm().item()


def test_gradient_norms_on_an_engine_of_one_backward_are_refused_in_one_line(tmp_path, monkeypatch):
    """DeepSpeed on one process backpropagates both branches at once under auto: no branch norms to measure (before:
    a crash unpacking them after the first step)."""
    from masksub_hf.training import engine

    monkeypatch.setattr(engine, "is_sharded", lambda accelerator: True)  # as DeepSpeed on one process
    model, items = make_case("ce")
    args = training_args(tmp_path, max_steps=1, masksub_log_grad_norm=True)
    with pytest.raises(ValueError, match="masksub_log_grad_norm .* pass --masksub_backward two"):
        MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(items))
    args = training_args(tmp_path, max_steps=1, masksub_log_grad_norm=True, masksub_backward="two")
    MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(items))  # two passes asked: measured


def test_logged_gradient_norms_are_each_branchs_gradient(tmp_path):
    model, items = make_case("ce")
    reference = copy.deepcopy(model)
    args = training_args(tmp_path, per_device_train_batch_size=8, max_steps=1, logging_steps=1,
                         masksub_log_grad_norm=True)
    trainer = MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(items))
    trainer.train()
    (logged,) = [entry for entry in trainer.state.log_history if "loss" in entry]

    batch = {k: torch.stack([item[k] for item in items]) for k in items[0]}
    main_loss_fn, sub_loss_fn = REFERENCE_LOSSES["ce"]
    main = reference_vit_logits(reference, batch["pixel_values"])
    main_norm = branch_gradient_norm(reference, 0.5 * main_loss_fn(main, batch["labels"]))
    sub = reference_vit_logits(reference, batch["pixel_values"], batch["masksub_keep_indices"])
    sub_norm = branch_gradient_norm(reference, 0.5 * sub_loss_fn(sub, main.detach()))
    assert logged["main_grad_norm"] == pytest.approx(main_norm, rel=1e-5)
    assert logged["sub_grad_norm"] == pytest.approx(sub_norm, rel=1e-5)


def test_plots_from_trainer_state(tmp_path, monkeypatch):
    """The plots draw exactly the logged curves: MaskSub's total, main and sub losses and the baseline's loss, then
    each branch's gradient norm, at the logged steps (read back from each run's trainer_state.json)."""
    import json

    import matplotlib.axes

    items = image_items(32, torch.arange(32) % 3, num_keep=8)
    for name, ratio in (("baseline", 0.0), ("masksub", 0.5)):
        args = training_args(tmp_path / name, per_device_train_batch_size=4, max_steps=6, logging_steps=2,
                             masksub_ratio=ratio, masksub_log_grad_norm=ratio > 0)
        trainer = MaskSubTrainer(model=make_case("ce")[0], args=args, train_dataset=ListDataset(items))
        trainer.train()
        trainer.save_state()
    drawn = []
    plot = matplotlib.axes.Axes.plot

    def recording_plot(axis, x, y, **kwargs):
        drawn.append((kwargs["label"], list(x), list(y)))
        return plot(axis, x, y, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", recording_plot)
    plot_main([str(tmp_path / "masksub"), "--baseline", str(tmp_path / "baseline"), "--out", str(tmp_path / "plots")])

    def logged(name, key):
        history = json.loads((tmp_path / name / "trainer_state.json").read_text())["log_history"]
        return [entry["step"] for entry in history if key in entry and "loss" in entry], \
            [entry[key] for entry in history if key in entry and "loss" in entry]

    expected = [("MaskSub total", "masksub", "loss"), ("MaskSub main branch", "masksub", "main_loss"),
                ("MaskSub sub branch", "masksub", "sub_loss"), ("baseline", "baseline", "loss"),
                ("main branch", "masksub", "main_grad_norm"), ("sub branch", "masksub", "sub_grad_norm")]
    assert [label for label, _, _ in drawn] == [label for label, _, _ in expected]
    for (label, steps, values), (_, run, key) in zip(drawn, expected):
        assert (steps, values) == logged(run, key) and steps == [2, 4, 6], label
    for name in ("losses.png", "grad_norms.png"):
        with Image.open(tmp_path / "plots" / name) as image:
            image.verify()


def test_plot_reads_a_library_runs_folder_and_errors_in_one_line(tmp_path, capsys):
    """A library run's --output_dir holds trainer_state.json only in its checkpoints: the plot reads the newest one.
    Before: a FileNotFoundError traceback, as for a folder that does not exist (now one line, exit status 2)."""
    import json

    from masksub_hf.scripts.plot import trainer_state

    items = image_items(16, torch.arange(16) % 3, num_keep=8)
    args = training_args(tmp_path / "run", per_device_train_batch_size=4, max_steps=6, logging_steps=1,
                         save_strategy="steps", save_steps=3)
    MaskSubTrainer(model=make_case("ce")[0], args=args, train_dataset=ListDataset(items)).train()
    newest = tmp_path / "run" / "checkpoint-6" / "trainer_state.json"
    assert trainer_state(str(tmp_path / "run")) == str(newest)
    assert len([e for e in json.loads(newest.read_text())["log_history"] if "sub_loss" in e]) == 6
    plot_main([str(tmp_path / "run")])
    assert (tmp_path / "run" / "losses.png").is_file()
    capsys.readouterr()
    for missing in (tmp_path / "nowhere", tmp_path / "empty"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        with pytest.raises(SystemExit) as exit_:
            plot_main([str(missing)])
        assert exit_.value.code == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and error.startswith(f"error: {missing}")
