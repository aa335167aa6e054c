"""Training configuration: presets, overrides, and errors that name the field and the fix."""

from pathlib import Path

import pytest

from delta_rlvr.core import DeltaConfig
from delta_rlvr.train.config import ConfigError, TrainConfig, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_the_embedded_default_is_delta_with_the_papers_coefficient_settings():
    cfg = load_config()
    assert cfg == TrainConfig()
    assert cfg.algorithm.method == "delta"
    assert cfg.algorithm.coefficients == DeltaConfig()
    assert (cfg.algorithm.loss.clip_low, cfg.algorithm.loss.clip_high, cfg.algorithm.loss.dual_clip) == (0.2, 0.28, 10.0)


@pytest.mark.parametrize("preset", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_preset_loads(preset):
    load_config(CONFIGS / preset)


def test_the_default_preset_equals_the_built_in_default():
    assert load_config(CONFIGS / "default.yaml") == TrainConfig()


def test_overrides_are_parsed_as_yaml_values():
    cfg = load_config(None, ["optim.lr=3e-5", "algorithm.coefficients.refine_steps=2", "run.tensorboard=false", "algorithm.method=dapo"])
    assert cfg.optim.lr == 3e-5 and cfg.algorithm.coefficients.refine_steps == 2
    assert cfg.run.tensorboard is False and cfg.algorithm.method == "dapo"


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("optim.lrr=1", "unknown config field 'optim.lrr'"),
        ("algorithm.method=ppo", "algorithm.method = 'ppo' is invalid: choose one of"),
        ("rollout.samples_per_prompt=1", "rollout.samples_per_prompt = 1 is invalid"),
        ("algorithm.coefficients.coef_min=2", "coef_min"),
        ("optim.lr=fast", "optim.lr = 'fast' is invalid: use a number"),
        ("run.max_steps=1.5", "run.max_steps = 1.5 is invalid: use an integer"),
        ("optim.mini_batches=3", "must divide the rollout batch of 128"),
    ],
)
def test_bad_values_fail_at_start_naming_the_field(override, fragment):
    with pytest.raises(ConfigError, match=None) as err:
        load_config(None, [override])
    assert fragment in str(err.value)


def test_a_missing_or_malformed_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_every_config_field_says_what_it_is():
    """Each field of every settings dataclass of the package (*Config, *Settings) has a docstring;
    DeltaGRPOConfig documents its fields the Hugging Face way, in `field(metadata={"help": ...})`."""
    import ast

    package = Path(__file__).resolve().parents[2] / "src" / "delta_rlvr"
    missing = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if not (isinstance(node, ast.ClassDef) and node.name.endswith(("Config", "Settings"))) or node.name == "DeltaGRPOConfig":
                continue
            for i, statement in enumerate(node.body):
                if isinstance(statement, ast.AnnAssign):
                    following = node.body[i + 1] if i + 1 < len(node.body) else None
                    if not (isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)):
                        missing.append(f"{path.name}: {node.name}.{statement.target.id}")
    assert not missing, f"fields without a docstring: {missing}"


def test_the_method_names_the_config_accepts_are_the_method_table():
    import typing

    from delta_rlvr.train.config import Method
    from delta_rlvr.train.methods import METHODS

    assert set(typing.get_args(Method)) == set(METHODS)
