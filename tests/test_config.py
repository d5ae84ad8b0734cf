"""Run configuration: validation messages, dotted overrides, JSON round trip, command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mural_jax import config as config_lib
from mural_jax.config import ConfigError, TrainConfig
from mural_jax.envs import make_env
from mural_jax.train import parse_args

# A valid base: the defaults.
BASE = TrainConfig()


def check_error(cfg: TrainConfig, *fragments: str) -> str:
    """Validation fails with a ConfigError whose message contains every fragment."""
    with pytest.raises(ConfigError) as info:
        cfg.validate()
    msg = str(info.value)
    for frag in fragments:
        assert frag in msg, (frag, msg)
    return msg


def with_overrides(**kw) -> TrainConfig:
    return config_lib.replace(BASE, kw)


# -- Validation ------------------------------------------------------------------------------


def test_valid_config_validates_and_returns_itself():
    assert BASE.validate() is BASE
    cfg = config_lib.replace(BASE, {"num_envs": 8, "eval_every": 5000, "method": "vice"})
    assert cfg.validate() is cfg
    assert issubclass(ConfigError, ValueError)


def test_default_config_validates():
    cfg = TrainConfig()
    assert cfg.validate() is cfg
    assert parse_args([]) == cfg


def test_experiment_configs_validate():
    names = config_lib.list_experiments()
    assert names  # shipped with the repository
    for name in names:
        cfg = config_lib.load_experiment(name)
        assert isinstance(cfg, TrainConfig)
        assert cfg.validate() is cfg
        assert cfg.steps % cfg.eval_every == 0, name


def test_example_configs_validate_and_their_tasks_build(monkeypatch):
    """The worked example's config files (experiments/examples) stay loadable with their maze."""
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)  # the configs name the layout file relative to the repository
    paths = sorted((root / "experiments" / "examples").glob("*_cpu*.json"))
    assert len(paths) >= 2, paths
    for path in paths:
        cfg = config_lib.load_experiment(str(path))
        assert cfg.steps % cfg.eval_every == 0, path.name
        assert make_env(cfg.env).observation_size == 2, path.name


def test_unknown_experiment_lists_known_ones():
    with pytest.raises(ConfigError) as info:
        config_lib.load_experiment("no_such_experiment")
    assert "no_such_experiment" in str(info.value)
    assert "quickstart" in str(info.value)


def test_bad_method_lists_methods():
    check_error(with_overrides(method="foo"), "method", "'foo'", "sparse", "dense", "vice", "mural")


def test_bad_env_lists_envs():
    check_error(with_overrides(env="nope"), "env", "'nope'", "zigzag_maze", "spiral_maze")


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("num_envs", 0, ">= 1"),
        ("num_envs", -4, ">= 1"),
        ("steps", 0, ">= 1"),
        ("eval_episodes", 0, ">= 1"),
        ("seed", -1, "0..2**32 - 1"),
        ("seed", 2**32, "0..2**32 - 1"),  # PRNGKey(2**32) would alias PRNGKey(0)
        ("steps", 2**31, "< 2**31 - num_envs"),
        ("random_steps", -1, ">= 0"),
        ("updates_per_step", 0.0, "> 0"),
        ("episode_length", 0, ">= 1"),
        ("num_success_examples", 0, ">= 1"),
        ("replay_capacity", 100, ">= max(num_envs, sac.batch_size) = 256"),
    ],
)
def test_top_level_ranges(field, value, allowed):
    check_error(with_overrides(**{field: value}), f"{field}={value!r}", allowed)


def test_sac_gamma_and_tau():
    check_error(config_lib.replace(BASE, {"sac.gamma": 1.5}), "sac.gamma", "1.5", "[0, 1)")
    check_error(config_lib.replace(BASE, {"sac.gamma": 1.0}), "sac.gamma", "1.0", "[0, 1)")
    check_error(config_lib.replace(BASE, {"sac.tau": 0}), "sac.tau", "0", "(0, 1]")
    # The edges that are allowed.
    config_lib.replace(BASE, {"sac.gamma": 0.0, "sac.tau": 1.0}).validate()


@pytest.mark.parametrize(
    "key, value, fragments",
    [
        ("sac.learning_rate", 0.0, ("sac.learning_rate", "(0, 1)")),
        ("sac.batch_size", 0, ("sac.batch_size", ">= 1")),
        ("sac.init_alpha", 0.0, ("sac.init_alpha", "> 0")),
        ("sac.reward_scale", -1.0, ("sac.reward_scale", "> 0")),
        ("sac.fourier_features", -1, ("sac.fourier_features", "integer >= 0")),
        ("sac.fourier_scale", 0.0, ("sac.fourier_scale", "> 0")),
        ("sac.n_step", 0, ("sac.n_step=0", "integer >= 1")),
        ("sac.hidden", (), ("sac.hidden", "()")),
        ("sac.hidden", (64, 0), ("sac.hidden", "(64, 0)", ">= 1")),
        ("classifier.reference_size", 7, ("classifier.reference_size", "7", "even")),
        ("classifier.update_every", 0, ("classifier.update_every=0", "num_envs")),
        ("meta_nml.support_size", 1, ("meta_nml.support_size", ">= 2")),
        ("meta_nml.inner_lr", 0.0, ("meta_nml.inner_lr", "> 0")),
        ("meta_nml.reinit_every", -1, ("meta_nml.reinit_every", "-1", ">= 0")),
    ],
)
def test_section_ranges(key, value, fragments):
    check_error(config_lib.replace(BASE, {key: value}), *fragments)


def test_novel_queries_must_fit_in_the_replay_half_when_balanced():
    over = {"meta_nml.balanced_queries": True, "meta_nml.num_query_points": 128}
    config_lib.replace(BASE, {**over, "meta_nml.novel_query_fraction": 0.5}).validate()
    bad = config_lib.replace(BASE, {**over, "meta_nml.novel_query_fraction": 0.7})
    check_error(bad, "meta_nml.novel_query_fraction=0.7", "0.5 with balanced_queries")
    # Without balancing every query comes from the replay buffer.
    config_lib.replace(BASE, {"meta_nml.novel_query_fraction": 0.7}).validate()


def test_updates_per_step_must_give_whole_updates():
    msg = check_error(with_overrides(updates_per_step=0.3), "updates_per_step", "0.3")
    assert "num_envs=16" in msg and "whole number" in msg
    # 16 * 0.25 = 4 updates per iteration: fine.
    cfg = with_overrides(updates_per_step=0.25).validate()
    assert cfg.updates_per_iteration == 4
    assert with_overrides(updates_per_step=2.0).updates_per_iteration == 32


def test_eval_every_must_be_a_multiple_of_num_envs():
    check_error(with_overrides(eval_every=100), "eval_every=100", "multiple of num_envs=16")
    check_error(TrainConfig(num_envs=16, eval_every=5000), "eval_every=5000", "num_envs=16")
    with_overrides(eval_every=96, steps=9600, checkpoint_every=0).validate()


def test_steps_must_be_a_multiple_of_eval_every():
    check_error(with_overrides(steps=100_500), "steps=100500", "multiple of eval_every=4000")


def test_support_cannot_exceed_the_reference_set():
    big = config_lib.replace(BASE, {"meta_nml.support_size": 2050})
    check_error(big, "meta_nml.support_size=2050", "reference_size + 1 = 2049")
    config_lib.replace(BASE, {"meta_nml.support_size": 2049}).validate()


def test_out_must_be_a_path_not_a_url():
    check_error(with_overrides(out="gs://bucket/run"), "out='gs://bucket/run'", "gcsfuse")
    with_overrides(out="/mnt/bucket/run").validate()


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", float("inf")])
def test_replace_rejects_non_finite_floats(value):
    with pytest.raises(ConfigError, match=r"meta_nml\.inner_lr=.*\(finite\)"):
        config_lib.replace(BASE, {"meta_nml.inner_lr": value})
    with pytest.raises(ConfigError, match="updates_per_step="):
        config_lib.replace(BASE, {"updates_per_step": value})


def test_classifier_reward_type():
    check_error(
        config_lib.replace(BASE, {"classifier.reward_type": "x"}),
        "classifier.reward_type",
        "'x'",
        "prob",
        "log_prob",
    )
    config_lib.replace(BASE, {"classifier.reward_type": "log_prob"}).validate()


def test_meta_nml_tasks_per_step_must_divide_tasks_per_epoch():
    bad = config_lib.replace(BASE, {"meta_nml.tasks_per_step": 3})
    check_error(bad, "meta_nml.tasks_per_step", "3", "divisor of tasks_per_epoch=16")
    ok = config_lib.replace(BASE, {"meta_nml.tasks_per_step": 4, "meta_nml.tasks_per_epoch": 12})
    ok.validate()


# -- Dotted overrides ------------------------------------------------------------------------


def test_replace_coerces_cli_strings():
    cfg = config_lib.replace(
        BASE,
        {
            "sac.learning_rate": "1e-3",
            "sac.hidden": "64,64",
            "classifier.hidden": "32x16",
            "num_envs": "8",
            "updates_per_step": "0.5",
            "reward_at_collection": "true",
            "episode_length": "200",
            "sac.target_entropy": "-1.5",
        },
    )
    assert cfg.sac.learning_rate == 1e-3 and isinstance(cfg.sac.learning_rate, float)
    assert cfg.sac.hidden == (64, 64)
    assert cfg.classifier.hidden == (32, 16)
    assert cfg.num_envs == 8 and isinstance(cfg.num_envs, int)
    assert cfg.updates_per_step == 0.5
    assert cfg.reward_at_collection is True
    assert cfg.episode_length == 200
    assert cfg.sac.target_entropy == -1.5
    # Other fields of the same section keep their values.
    assert cfg.sac.gamma == BASE.sac.gamma and cfg.sac.tau == BASE.sac.tau
    assert cfg.classifier.reward_type == BASE.classifier.reward_type
    # Optional fields accept "none"; the original config is untouched (frozen, copied).
    assert config_lib.replace(cfg, {"episode_length": "none"}).episode_length is None
    assert BASE.sac.hidden == (256, 256)


def test_replace_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as info:
        config_lib.replace(BASE, {"sac.nope": 1})
    msg = str(info.value)
    assert "sac.nope" in msg
    assert "sac.learning_rate" in msg and "sac.gamma" in msg
    with pytest.raises(ConfigError) as info:
        config_lib.replace(BASE, {"nope": 1})
    msg = str(info.value)
    assert "nope" in msg and "method" in msg and "num_envs" in msg
    with pytest.raises(ConfigError, match="nosection"):
        config_lib.replace(BASE, {"nosection.x": 1})


@pytest.mark.parametrize(
    "key, value, bad",
    [
        ("num_envs", "abc", "'abc'"),
        ("sac.learning_rate", "fast", "'fast'"),
        ("reward_at_collection", "maybe", "'maybe'"),
        ("sac.hidden", "64,wide", "'wide'"),
        ("num_envs", 2.5, "2.5"),
    ],
)
def test_replace_bad_types_name_the_field(key, value, bad):
    with pytest.raises(ConfigError) as info:
        config_lib.replace(BASE, {key: value})
    assert key in str(info.value) and bad in str(info.value)


@pytest.mark.parametrize(
    "data, fragments",
    [
        ({"sac": {"hidden": 256}}, ("sac.hidden=256", "a list of int")),
        ({"sac": 5}, ("sac=5", "an object of SACConfig fields", "learning_rate")),
        ({"meta_nml": [1, 2]}, ("meta_nml=[1, 2]", "MetaNMLConfig")),
    ],
)
def test_json_of_the_wrong_shape_names_the_field(data, fragments):
    with pytest.raises(ConfigError) as info:
        config_lib.from_dict(TrainConfig, data)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize("value", ["1000.5", "inf"])
def test_replace_rejects_non_integer_strings_for_int_fields(value):
    with pytest.raises(ConfigError, match="steps"):
        config_lib.replace(BASE, {"steps": value})


# -- JSON ------------------------------------------------------------------------------------


def test_json_round_trip(tmp_path):
    cfg = config_lib.replace(
        BASE,
        {
            "env": "spiral_maze",
            "method": "vice",
            "episode_length": 50,
            "out": "runs/x",
            "reward_at_collection": True,
            "sac.hidden": (32, 32, 16),
            "sac.target_entropy": -1.5,
            "classifier.reward_type": "log_prob",
            "meta_nml.second_order": False,
        },
    )
    for c in (BASE, cfg):
        path = tmp_path / "config.json"
        config_lib.save_json(c, path)
        loaded = config_lib.load_json(TrainConfig, path)
        assert loaded == c
        assert isinstance(loaded.sac.hidden, tuple)
    data = json.loads(path.read_text())
    assert data["sac"]["hidden"] == [32, 32, 16] and data["episode_length"] == 50


def test_load_json_unknown_key(tmp_path):
    data = config_lib.to_dict(BASE)
    data["sac"]["bogus_key"] = 1
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="sac.bogus_key"):
        config_lib.load_json(TrainConfig, path)


def test_save_json_replaces_whole_and_load_json_names_a_damaged_file(tmp_path):
    path = tmp_path / "config.json"
    config_lib.save_json(BASE, path)
    config_lib.save_json(with_overrides(seed=3), path)
    assert config_lib.load_json(TrainConfig, path).seed == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]  # no temp file left
    path.write_text('{"seed": ')  # as a kill mid-write would have left it before
    with pytest.raises(ConfigError, match="config.json is not valid JSON"):
        config_lib.load_json(TrainConfig, path)


# -- Command line ----------------------------------------------------------------------------


def test_parse_args_sets_fields():
    cfg = parse_args(
        [
            "--env", "spiral_maze",
            "--method", "dense",
            "--steps", "1000",
            "--num-envs", "4",
            "--eval-every", "500",
            "--sac.hidden", "32,32",
            "--sac.learning-rate", "1e-3",
            "--classifier.reward-type", "log_prob",
            "--reward-at-collection",
        ]
    )  # fmt: skip
    assert isinstance(cfg, TrainConfig)
    assert cfg.env == "spiral_maze" and cfg.method == "dense"
    assert cfg.steps == 1000 and cfg.eval_every == 500 and cfg.num_envs == 4
    assert cfg.sac.hidden == (32, 32)
    assert cfg.sac.learning_rate == 1e-3
    assert cfg.classifier.reward_type == "log_prob"
    assert cfg.reward_at_collection is True
    # Everything not given keeps its default.
    assert cfg.seed == 0 and cfg.sac.gamma == 0.99 and cfg.meta_nml == TrainConfig().meta_nml
    assert (
        parse_args(["--num-envs", "4", "--no-reward-at-collection"]).reward_at_collection is False
    )


def test_parse_args_validates():
    # eval_every=500 is not a multiple of the default num_envs=16.
    argv = ["--env", "spiral_maze", "--method", "dense", "--steps", "1000", "--eval-every", "500"]
    with pytest.raises(ConfigError, match="eval_every=500"):
        parse_args(argv)
    with pytest.raises(ConfigError) as info:
        parse_args(["--method", "bogus"])
    assert "bogus" in str(info.value) and "mural" in str(info.value)
    with pytest.raises(ConfigError, match="sac.gamma"):
        parse_args(["--num-envs", "8", "--sac.gamma", "2"])


def test_parse_args_unknown_flag_exits(capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(["--no-such-flag", "1"])
    assert info.value.code == 2
    assert "--no-such-flag" in capsys.readouterr().err


@pytest.mark.parametrize(
    "over, fragments",
    [
        ({"relabel_rewards": True}, ("relabel_rewards=True", "reward_at_collection=True")),
        (
            {"relabel_rewards": True, "reward_at_collection": True, "method": "sparse"},
            ("method='sparse'", "vice | mural"),
        ),
        ({"relabel_chunk": 0}, ("relabel_chunk=0", ">= 1")),
        ({"relabel_draws": 0}, ("relabel_draws=0", ">= 1")),
        ({"relabel_draws": 2}, ("relabel_draws=2", "relabel_rewards=True")),
        (
            {
                "relabel_draws": 2,
                "relabel_rewards": True,
                "reward_at_collection": True,
                "method": "vice",
            },
            ("relabel_draws=2", "method=mural"),
        ),
    ],
)
def test_relabel_rewards_needs_stored_learned_rewards(over, fragments):
    with pytest.raises(ConfigError) as info:
        config_lib.replace(BASE, over).validate()
    assert all(f in str(info.value) for f in fragments)
    ok = config_lib.replace(
        BASE, {"relabel_rewards": True, "reward_at_collection": True, "method": "vice"}
    )
    assert ok.validate().relabel_rewards
    cli = parse_args(["--method", "vice", "--relabel-rewards", "--reward-at-collection"])
    assert cli.relabel_rewards is True and cli.reward_at_collection is True
