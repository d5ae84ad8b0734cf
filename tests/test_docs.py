"""The commands the docs print are valid: every `mural_jax.train` and `make train` line in the
README parses and validates, and every `experiments.reproduce --config` line in the README
and docs/results.md names a config whose settings validate for each of its methods.

Nothing is trained: this catches a flag, config name or step count that drifted from the code.
"""

import os
import re
import shlex
import subprocess

import pytest

from mural_jax import config as config_lib
from mural_jax.train import _parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _commands(doc: str) -> list[str]:
    """Shell lines of the doc's ```bash blocks, continuation lines joined."""
    text = open(os.path.join(ROOT, doc)).read()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        block = re.sub(r"\\\n\s*", " ", block)
        lines += [line.strip() for line in block.splitlines() if line.strip()]
    return lines


def _args_after(line: str, program: str) -> list[str] | None:
    """The arguments given to `program` on this line (looking inside quoted commands too)."""
    tokens = shlex.split(line, comments=True)
    for i, token in enumerate(tokens):
        if token == program:
            return tokens[i + 1 :]
        if " " in token and program in token:
            return _args_after(token, program)
    return None


TRAIN_LINES = [
    line
    for line in _commands("README.md")
    if "mural_jax.train" in line and "--resume" not in line and "--help" not in line
]
MAKE_LINES = [line for line in _commands("README.md") if line.startswith("make train")]
REPRODUCE_LINES = [
    (doc, line)
    for doc in ("README.md", "docs/results.md")
    for line in _commands(doc)
    if "experiments.reproduce" in line and "--config" in line
]


def test_the_docs_have_commands_to_check():
    assert len(TRAIN_LINES) >= 5 and len(MAKE_LINES) >= 3 and len(REPRODUCE_LINES) >= 20
    assert all(_args_after(line, "mural_jax.train") for line in TRAIN_LINES)
    assert all("--config" in _args_after(line, "experiments.reproduce") for _, line in
               REPRODUCE_LINES)  # fmt: skip
    assert _args_after("a 'b -m p --x 1' # --y", "p") == ["--x", "1"]


@pytest.mark.parametrize("line", TRAIN_LINES)
def test_readme_train_command_validates(line, tmp_path):
    args = [
        str(tmp_path / "run") if a == "DIR" else a for a in _args_after(line, "mural_jax.train")
    ]
    _parse(args)  # raises ConfigError naming the bad value


@pytest.mark.parametrize("line", MAKE_LINES)
def test_readme_make_train_command_validates(line, tmp_path):
    variables = [
        v.replace("=DIR", f"={tmp_path / 'run'}") for v in shlex.split(line, comments=True)[2:]
    ]
    dry = subprocess.run(
        ["make", "-n", "-s", "train", *variables], cwd=ROOT, capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stderr
    _parse(_args_after(dry.stdout.replace("\\\n", " "), "mural_jax.train"))


def test_make_train_ignores_the_shells_env_variable():
    """ENV is also sh's startup-file variable: only `make train ENV=...` names a task."""
    env = {**os.environ, "ENV": "/etc/shrc"}
    dry = subprocess.run(
        ["make", "-n", "-s", "train"], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert dry.returncode == 0, dry.stderr
    args = _args_after(dry.stdout.replace("\\\n", " "), "mural_jax.train")
    assert "--env" not in args and args[:2] == ["--config", "quickstart"], args
    dry = subprocess.run(
        ["make", "-n", "-s", "train", "ENV=spiral_maze"], cwd=ROOT, capture_output=True, text=True
    )
    args = _args_after(dry.stdout.replace("\\\n", " "), "mural_jax.train")
    assert args[args.index("--env") + 1] == "spiral_maze", args


@pytest.mark.parametrize(("doc", "line"), REPRODUCE_LINES)
def test_documented_reproduction_config_validates(doc, line):
    args = _args_after(line, "experiments.reproduce")
    value = lambda flag: args[args.index(flag) + 1] if flag in args else None  # noqa: E731
    base = config_lib.load_experiment(value("--config"))
    if value("--steps"):
        base = config_lib.replace(base, {"steps": int(value("--steps"))})
    methods = []
    if "--methods" in args:
        for a in args[args.index("--methods") + 1 :]:
            if a.startswith("--"):
                break
            methods.append(a)
    for method in methods or ["mural"]:
        config_lib.replace(base, {"method": method}).validate()
