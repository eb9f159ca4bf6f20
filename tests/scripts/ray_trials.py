"""A Ray Tune hyperparameter search as a user runs it, in a fresh interpreter: ``ray_trials.py ARM OUTPUT_DIR``.

ARM ``trainer`` (plain ``Trainer``, learning rates) or ``on`` (``MaskSubTrainer``, MaskSub ratios), two grid trials in
Ray worker processes; each trial appends its ratio and the token counts of its training forwards to
``OUTPUT_DIR/trials.jsonl`` (tests/test_drop_in.py).
"""

import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))  # Ray workers

from helpers import tiny_vit  # noqa: E402
from ray import tune  # noqa: E402
from test_drop_in import TrialLog, images, make_trainer  # noqa: E402

arm, output = sys.argv[1], Path(sys.argv[2])
trainer = make_trainer(arm, output / "out", None, max_steps=1, trainer_kwargs=dict(
    model_init=lambda trial=None: tiny_vit(), train_dataset=images(), eval_dataset=images(8, seed=1),
    callbacks=[TrialLog(str(output / "trials.jsonl"))]))
name = "masksub_ratio" if arm == "on" else "learning_rate"
values = [0.25, 0.75] if arm == "on" else [1e-3, 1e-2]
best = trainer.hyperparameter_search(hp_space=lambda _: {name: tune.grid_search(values)}, backend="ray", n_trials=1,
                                     direction="minimize", resources_per_trial={"cpu": 1},
                                     storage_path=str(output / "ray"))
print("best objective", best.objective)
