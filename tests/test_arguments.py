import math

import pytest
from transformers import HfArgumentParser

from masksub_hf import MaskSubTrainingArguments


@pytest.mark.parametrize(
    "name, value",
    [
        ("masksub_ratio", -0.1),
        ("masksub_ratio", 1.0),
        ("masksub_ratio", math.nan),
        ("masksub_ratio", "0.5"),
        ("masksub_mode", "pixels_and_more"),
        ("masksub_loss", "kl"),
        ("masksub_main_weight", -1.0),
        ("masksub_sub_weight", math.inf),
        ("masksub_backward", "three"),
    ],
)
def test_invalid_values_fail_at_construction_naming_the_argument(tmp_path, name, value):
    with pytest.raises(ValueError, match=name):
        MaskSubTrainingArguments(output_dir=str(tmp_path), **{name: value})


def test_branch_gradient_norms_need_two_backward_passes(tmp_path):
    with pytest.raises(ValueError, match="masksub_log_grad_norm .* masksub_backward 'two'"):
        MaskSubTrainingArguments(output_dir=str(tmp_path), masksub_log_grad_norm=True, masksub_backward="one")


def test_defaults_follow_the_paper(tmp_path):
    args = MaskSubTrainingArguments(output_dir=str(tmp_path))
    assert (args.masksub_ratio, args.masksub_mode, args.masksub_loss) == (0.5, "auto", "auto")
    assert (args.masksub_main_weight, args.masksub_sub_weight) == (0.5, 0.5)


def test_command_line_flags(tmp_path):
    parser = HfArgumentParser(MaskSubTrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--masksub_ratio", "0.25", "--masksub_mode", "tokens",
         "--masksub_loss", "bce", "--learning_rate", "3e-4", "--gradient_accumulation_steps", "2",
         "--masksub_backward", "one"]
    )
    assert (args.masksub_ratio, args.masksub_mode, args.masksub_loss) == (0.25, "tokens", "bce")
    assert args.masksub_backward == "one"
    assert (args.learning_rate, args.gradient_accumulation_steps) == (3e-4, 2)


def test_command_line_rejects_an_unknown_mode(tmp_path, capsys):
    parser = HfArgumentParser(MaskSubTrainingArguments)
    with pytest.raises(SystemExit):
        parser.parse_args_into_dataclasses(["--output_dir", str(tmp_path), "--masksub_mode", "nope"])
    assert "masksub_mode" in capsys.readouterr().err
