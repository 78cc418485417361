"""Every ```bash block of README.md: its first command works as typed, from the repository root, in
a fresh process with the environment `make setup` creates (that environment's bin folder first on
PATH, `python` replaced by its interpreter).

The README's commands run benchmarks, download checkpoints or read datasets, so each is made cheap
by the program it starts (`cheap_form` below; parsing is generic, so a rewritten README needs no
change here unless it starts a new kind of program):

- Hydra entry points (a module with `@hydra.main`, started as `python -m ...` or as its console
  script): `--cfg job --resolve` composes the whole config with the command's overrides and prints
  it without running the job, so every config group, key and interpolation is checked, and each
  scalar override must show in the printed config. Hydra refuses `--cfg` together with `-m`, so a
  multirun is checked without `-m` at the first and at the last value of its sweeps.
- `avggt_bench.bench`: its arguments are overrides that reach every sweep; checked as above on
  `avggt_bench.run experiment=bench_cpu`.
- other Python entry points (argparse): `--help`, and each relative path argument must exist.
- `make <target> ...`: `make -n <target> ...` (the target exists and its recipe expands).
- `torchrun [options] -m module args`: checked as `python -m module args`.
- Lines that set up the shell (`export`, `cd`) run before the command; `source .venv/bin/activate`
  is dropped, PATH already starts with the environment's bin folder.
- Other programs (git, pip, wandb, ...) are skipped with the reason; one not found on PATH fails.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO_DIR = Path(__file__).resolve().parents[1]
README = REPO_DIR / "README.md"
CONF_DIR = REPO_DIR / "conf"
FENCE = re.compile(r"^(?P<indent>[ \t]*)```bash[ \t]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S)
SHELL_SETUP = {"export", "cd"}
ACTIVATE = re.compile(r"^(source|\.)\s+\S*bin/activate\s*(#.*)?$")
# programs with no cheap form, and why
NOT_RUN = {
    "git": "talks to a remote",
    "pip": "installs packages (make setup does)",
    "wandb": "needs a wandb account and the network",
    "sudo": "needs root",
    "apt-get": "installs system packages",
    "nvidia-smi": "needs a GPU driver",
}
# modules whose arguments are overrides forwarded to a Hydra entry point
FORWARDS = {"avggt_bench.bench": ("avggt_bench.run", ["experiment=bench_cpu"])}
PYTHONS = {"python", "python3"}
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")  # VAR=value before a program
MAKE_VARS = {"MAKEFLAGS", "MAKELEVEL", "MFLAGS"}  # this test runs under `make test`


@dataclass
class Block:
    line: int  # of the fence in README.md
    setup: list[str] = field(default_factory=list)  # shell lines run first
    command: list[str] = field(default_factory=list)  # the block's first command, tokenized

    @property
    def id(self) -> str:
        words = "-".join(t for t in self.command[:4] if not t.startswith("-"))[:40]
        return f"L{self.line}-{re.sub(r'[^A-Za-z0-9_.=-]', '_', words)}"


def logical_lines(body: str) -> list[str]:
    """The block's lines with backslash continuations joined."""
    return re.sub(r"\\\n\s*", " ", textwrap.dedent(body)).splitlines()


def readme_blocks(text: str) -> list[Block]:
    blocks = []
    for match in FENCE.finditer(text):
        block = Block(line=text.count("\n", 0, match.start()) + 1)
        for line in logical_lines(match.group("body")):
            tokens = shlex.split(line, comments=True)
            if not tokens or ACTIVATE.match(line.strip()):
                continue
            if tokens[0] in SHELL_SETUP:
                block.setup.append(line.strip())
                continue
            block.command = tokens
            break
        blocks.append(block)
    return blocks


def console_scripts() -> dict[str, str]:
    """pyproject's [project.scripts]: command name -> module."""
    scripts = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["project"]["scripts"]
    return {name: target.split(":")[0] for name, target in scripts.items()}


def is_hydra(module: str) -> bool | None:
    """Whether the module is a Hydra entry point; None when it is not in this repository."""
    base = REPO_DIR.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__main__.py"):
        if path.is_file():
            return "@hydra.main" in path.read_text()
    return None


def sweep_variants(overrides: list[str]) -> list[list[str]]:
    """A multirun's overrides at the first and at the last value of each sweep."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    first, last = [], []
    for text in overrides:
        override = parser.parse_override(text)
        if not override.is_sweep_override():
            first.append(text)
            last.append(text)
            continue
        values = list(override.sweep_string_iterator())
        key = override.get_key_element()
        first.append(f"{key}={values[0]}")
        last.append(f"{key}={values[-1]}")
    return [first] if first == last else [first, last]


@dataclass
class Step:
    command: list[str]
    kind: str  # hydra | help | make
    overrides: list[str] = field(default_factory=list)  # for the Hydra check


def cheap_form(command: list[str]) -> list[Step] | str:
    """How to run `command` in seconds (steps run one after another), or why it is not run."""
    env_prefix = []
    while command and ENV_ASSIGNMENT.match(command[0]):
        env_prefix.append(command.pop(0))  # VAR=value before the program
    prog, args = command[0], command[1:]
    name, scripts = Path(prog).name, console_scripts()
    if name == "torchrun" and "-m" in args:  # the module it starts, checked in one process
        prog, args = sys.executable, args[args.index("-m") :]
        name = "python"
    if name == "make":
        return [Step([*env_prefix, prog, "-n", *args], "make")]
    if name in PYTHONS:  # `python`, `.venv/bin/python`: the environment's interpreter
        if len(args) >= 2 and args[0] == "-m":
            launcher, module, args = [sys.executable, "-m", args[1]], args[1], args[2:]
        elif args and args[0].endswith(".py"):
            return [Step([*env_prefix, sys.executable, *args, "--help"], "help")]
        else:
            return f"`{shlex.join(command)}` starts no program of this repository"
    elif name in scripts:  # `avggt-run` or `.venv/bin/avggt-run`
        launcher, module = [prog], scripts[name]
    elif name in NOT_RUN:
        return f"`{name}` {NOT_RUN[name]}"
    else:
        return f"no cheap form known for `{prog}`: add one to cheap_form in {Path(__file__).name}"
    if module in FORWARDS:
        target, extra = FORWARDS[module]
        launcher, module, args = [sys.executable, "-m", target], target, [*extra, *args]
    hydra = is_hydra(module)
    if hydra is None:
        return f"`{module}` is not a module of this repository"
    if not hydra:
        return [Step([*env_prefix, *launcher, *args, "--help"], "help")]
    multirun = [a for a in args if a not in ("-m", "--multirun")]
    variants = sweep_variants(multirun) if len(multirun) < len(args) else [args]
    return [
        Step([*env_prefix, *launcher, *v, "--cfg", "job", "--resolve"], "hydra", v)
        for v in variants
    ]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in MAKE_VARS}
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    return env


def check_overrides_applied(printed: str, overrides: list[str]) -> None:
    """Each plain `key=value` override (not a config group choice) shows in the printed config."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(printed)
    for text in overrides:
        key, sep, value = text.partition("=")
        if not sep or key.startswith(("hydra", "+", "~", "-")) or "/" in key:
            continue
        if (CONF_DIR / key.replace(".", "/")).is_dir():
            continue  # a config group choice (experiment=bench_cpu): composed above
        node = OmegaConf.select(cfg, key, default="<missing>")
        if OmegaConf.is_config(node):
            continue  # a group choice whose config sits under its key (model=vggt)
        wanted = yaml.safe_load(value)
        assert node == wanted or str(node) == value, f"{text}: config has {key}={node!r}"


BLOCKS = readme_blocks(README.read_text())


def test_blocks_are_parsed_generically():
    text = textwrap.dedent(
        """
        ```bash
        export AVGGT_DATA=/data   # set-up line, kept
        source .venv/bin/activate
        # a comment
        avggt-run -m num_views=8,16 \\
            attention=dense   # the first command
        avggt-report results
        ```
        - a list item:

          ```bash
          make bench
          ```
        """
    )
    first, second = readme_blocks(text)
    assert first.setup == ["export AVGGT_DATA=/data   # set-up line, kept"]
    assert first.command == ["avggt-run", "-m", "num_views=8,16", "attention=dense"]
    assert (
        second.command == ["make", "bench"] and second.line == 12
    )  # of its fence, counting from 1


def test_cheap_forms_by_program():
    run = cheap_form(["avggt-run", "-m", "num_views=8,16,32", "attention=dense"])
    assert [(s.kind, s.command[0]) for s in run] == [("hydra", "avggt-run")] * 2
    assert [s.overrides for s in run] == [
        ["num_views=8", "attention=dense"],
        ["num_views=32", "attention=dense"],
    ]
    assert all(
        s.command[-3:] == ["--cfg", "job", "--resolve"] and "-m" not in s.command for s in run
    )
    (bench,) = cheap_form([".venv/bin/python", "-m", "avggt_bench.bench", "num_views=8"])
    forwarded = [sys.executable, "-m", "avggt_bench.run", "experiment=bench_cpu", "num_views=8"]
    assert bench.command == [*forwarded, "--cfg", "job", "--resolve"]
    (report,) = cheap_form(["python", "-m", "avggt_bench.report", "results"])
    assert report.kind == "help" and report.command[-2:] == ["results", "--help"]
    (make,) = cheap_form(["A=1", "make", "bench"])
    assert make.command == ["A=1", "make", "-n", "bench"] and make.kind == "make"
    assert "talks to a remote" in cheap_form(["git", "clone", "x"])
    assert "no cheap form known" in cheap_form(["frobnicate"])
    assert "not a module of this repository" in cheap_form(["python", "-m", "pytest"])


def test_every_console_script_is_installed():
    # pyproject's [project.scripts] as `make setup` installed them (stale: rerun make setup)
    bin_dir = Path(sys.executable).parent
    missing = [name for name in console_scripts() if not (bin_dir / name).exists()]
    assert not missing, f"not in {bin_dir}: {missing}; `make setup` installs them"
    assert {"avggt-run", "avggt-report", "avggt-bench"} <= set(console_scripts())


def test_readme_has_command_blocks_and_ci_runs_its_test_command():
    assert BLOCKS, "README.md has no ```bash blocks"
    commands = [
        shlex.split(line, comments=True)
        for match in FENCE.finditer(README.read_text())
        for line in logical_lines(match.group("body"))
    ]
    tests = [c for c in commands if c[:2] == ["make", "test"]]
    assert tests, "the README shows no `make test`"
    ci = [line.strip() for line in (REPO_DIR / ".ci" / "run").read_text().splitlines()]
    assert shlex.join(tests[0]) in ci, ".ci/run must run the README's test command"


def run_step(step: Step, block: Block) -> subprocess.CompletedProcess:
    script = "\n".join(["set -e", *block.setup, shlex.join(step.command)])
    proc = subprocess.run(
        ["bash", "-c", script],
        cwd=REPO_DIR,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        f"README.md line {block.line}: `{shlex.join(block.command)}` checked as "
        f"`{shlex.join(step.command)}` failed:\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}"
    )
    if step.kind == "hydra":
        check_overrides_applied(proc.stdout, step.overrides)
    elif step.kind == "help":
        assert "usage" in proc.stdout.lower(), proc.stdout[-1500:]
        for arg in step.command:
            if "/" in arg and not arg.startswith(("-", "/")) and "=" not in arg:
                assert (REPO_DIR / arg).exists(), f"README.md line {block.line}: no {arg}"
    return proc


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_command_runs_as_typed(block):
    if not block.command:
        pytest.skip(f"README.md line {block.line}: the block has no command")
    steps = cheap_form(list(block.command))
    if isinstance(steps, str):
        pytest.skip(f"README.md line {block.line}: {steps}")
    prog = next(t for t in steps[0].command if not ENV_ASSIGNMENT.match(t))
    found = subprocess.run(["bash", "-c", f"command -v {shlex.quote(prog)}"], env=environment())
    assert found.returncode == 0, f"`{prog}` (README.md line {block.line}) not found after setup"
    for step in steps:
        proc = run_step(step, block)
        if step.kind == "make":
            # the dry run's last line is what the target runs (`make run ARGS=...` -> the job's
            # command line): check that too when it starts a program of this repository
            last = proc.stdout.strip().splitlines()[-1:]
            more = cheap_form(shlex.split(last[0])) if last else "empty dry run"
            for sub in more if isinstance(more, list) and more[0].kind != "make" else []:
                run_step(sub, block)
