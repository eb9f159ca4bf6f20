"""Ray Tune hyperparameter searches as a user runs them, in a fresh interpreter: ``ray_trials.py OUTPUT_DIR``.

Plain ``Trainer`` over two learning rates, then ``MaskSubTrainer`` over two MaskSub ratios, each a grid of two trials
in Ray worker processes (one Ray session); each trial appends its arm, ratio and the token counts of its training
forwards to ``OUTPUT_DIR/trials.jsonl`` (tests/test_drop_in.py).
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

output = Path(sys.argv[1])
for arm, name, values in (("trainer", "learning_rate", [1e-3, 1e-2]), ("on", "masksub_ratio", [0.25, 0.75])):
    trainer = make_trainer(arm, output / arm, None, max_steps=1, trainer_kwargs=dict(
        model_init=lambda trial=None: tiny_vit(), train_dataset=images(), eval_dataset=images(8, seed=1),
        callbacks=[TrialLog(str(output / "trials.jsonl"), arm)]))
    best = trainer.hyperparameter_search(hp_space=lambda _, name=name, values=values: {name: tune.grid_search(values)},
                                         backend="ray", n_trials=1, direction="minimize",
                                         resources_per_trial={"cpu": 1}, storage_path=str(output / arm / "ray"))
    print(arm, "best objective", best.objective)
