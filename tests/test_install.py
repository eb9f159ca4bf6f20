"""Installing: a wheel carries the scripts, the recipe files and the method card; `pip install` alone gives a
`masksub-hf` command that runs a script with a shipped recipe from any folder; the library imports and trains
without the `scripts` extra, and the command says which extra is missing in one line."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from script_fixtures import mnist_imagefolder, tiny_vit_dir

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "masksub_hf" / "recipes" / "configs"
SCRIPTS = ("run_image_classification", "run_glue", "run_ner", "run_clip", "run_clm", "run_seq2seq")
# The scripts extra of setup.cfg, by import name; hidden from a fresh interpreter as if not installed.
HIDE_EXTRA = """
import sys
HIDDEN = {"evaluate", "sklearn", "scipy", "matplotlib"}  # pandas stays: datasets itself needs it


class Hiding:
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        return None if name.split(".")[0] in HIDDEN else self.finder.find_spec(name, path, target)

    def __getattr__(self, name):
        return getattr(self.finder, name)


sys.meta_path[:] = [Hiding(finder) for finder in sys.meta_path]
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                    str(folder), str(ROOT)], check=True, capture_output=True)
    return next(folder.glob("masksub_hf-*.whl"))


def test_the_wheel_carries_the_scripts_the_recipe_files_the_method_card_and_the_command(wheel):
    """Before: the wheel held masksub_hf/ without the scripts, recipes or method card, and no command."""
    names = zipfile.ZipFile(wheel).namelist()
    for script in SCRIPTS:
        assert f"masksub_hf/scripts/{script}.py" in names
    recipes = {f"masksub_hf/recipes/configs/{path.relative_to(SHIPPED)}" for path in SHIPPED.rglob("*.yaml")}
    assert len(recipes) == 8 and recipes <= set(names)
    assert any(name.endswith("share/doc/masksub-hf/method-card.md") for name in names)
    entry_points = next(name for name in names if name.endswith("entry_points.txt"))
    assert "masksub-hf = masksub_hf.scripts.command:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_pip_install_alone_runs_a_script_with_a_shipped_recipe_from_any_folder(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target",
                    str(site), str(wheel)], check=True, capture_output=True)
    train, validation = mnist_imagefolder(tmp_path / "data", train=48, validation=16)
    model = tiny_vit_dir(tmp_path / "vit")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    where = subprocess.run([sys.executable, "-c", "import masksub_hf; print(masksub_hf.__file__)"], cwd=work,
                           env=env, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site))  # the installed copy, not this checkout
    completed = subprocess.run(
        [str(site / "bin" / "masksub-hf"), "image-classification", "cpu/deit3_mnist.yaml", "--model_name_or_path",
         str(model), "--train_dir", str(train), "--validation_dir", str(validation), "--output_dir", "out",
         "--max_steps", "2", "--per_device_train_batch_size", "8", "--use_cpu", "--report_to", "none",
         "--save_strategy", "no", "--disable_tqdm", "true", "--logging_steps", "1"],
        cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    state = json.loads((work / "out" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and state["log_history"][0]["sub_loss"] > 0
    assert json.loads((work / "out" / "run_arguments.json").read_text())["mixup"] == 0.8  # the recipe was read


@pytest.mark.slow
def test_the_library_trains_without_the_scripts_extra_and_the_command_names_the_extra(tmp_path):
    program = HIDE_EXTRA + f"""
import importlib, pkgutil
sys.path.insert(0, {str(ROOT / "tests")!r})
import torch
from helpers import ListDataset, image_items, tiny_vit, training_args
import masksub_hf
from masksub_hf import MaskSubTrainer

for module in pkgutil.walk_packages(masksub_hf.__path__, "masksub_hf."):
    if not module.name.startswith("masksub_hf.scripts."):
        importlib.import_module(module.name)
trainer = MaskSubTrainer(model=tiny_vit(), args=training_args({str(tmp_path)!r}, max_steps=2, logging_steps=1,
                                                               per_device_train_batch_size=4, masksub_ratio=0.5),
                         train_dataset=ListDataset(image_items(8, torch.arange(8) % 3, num_keep=8)))
trainer.train()
assert trainer.state.log_history[0]["sub_loss"] > 0
assert not [name for name in sys.modules if name.split(".")[0] in HIDDEN]
from masksub_hf.scripts.command import main
sys.exit(main(["text-classification", "--help"]))
"""
    completed = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert completed.stderr.strip().splitlines()[-1] == (
        "error: masksub-hf text-classification needs the scripts extra (missing: evaluate, sklearn, scipy, "
        "matplotlib): pip install 'masksub-hf[scripts]'.")


def test_the_command_lists_its_commands_and_refuses_an_unknown_one(capsys):
    from masksub_hf.scripts.command import COMMANDS, main

    assert main([]) == 2
    usage = capsys.readouterr().err
    assert all(name in usage for name in COMMANDS)
    assert main(["--help"]) == 0 and capsys.readouterr().out == usage
    assert main(["glue"]) == 2
    assert capsys.readouterr().err.startswith("error: masksub-hf: unknown command 'glue'; pick one of")
