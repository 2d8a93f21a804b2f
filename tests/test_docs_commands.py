"""Every `pspnet` command that README.md and docs/ show takes the options and `key=value` settings they give it: a
renamed option or setting fails here, not in a reader's terminal."""

import argparse
import ast
import dataclasses
import re
import shlex
import typing
from pathlib import Path

import pytest

from pspnet.cli.main import COMMANDS as COMMAND_MODULES
from pspnet.cli.main import build_parser
from pspnet.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMANDS = [name for name, _, _ in COMMAND_MODULES]
LAUNCHERS = ("pspnet ", "-m pspnet.cli.main ", "-m pspnet ")


def shown_commands(text: str) -> list[str]:
    """The commands of a page: lines of its code blocks (comments dropped, continued lines joined) and code spans
    that start with `pspnet`, or with a command and an option (`predict --legend`); a span may wrap across lines."""
    commands = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s#\s.*$", "", line.strip()).removeprefix("$ ")
            if start := next((line.index(launcher) for launcher in LAUNCHERS if launcher in line), None):
                commands.append(line[start:])
            elif line.startswith("pspnet "):
                commands.append(line)
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    commands += re.findall(r"`(pspnet [^`]+)`", prose)
    commands += [f"pspnet {span}" for span in re.findall(rf"`((?:{'|'.join(COMMANDS)}) --[^`]+)`", prose)]
    commands = [" ".join(c.split()) for c in commands]
    return [c for c in commands if not re.match(r"pspnet [a-z ]+: ", c)]  # what a command prints ("pspnet eval: note")


def arguments(command: str) -> list[str]:
    """The words after the launcher, optional parts' brackets and a table's escaped bars taken out."""
    for launcher in LAUNCHERS:
        if launcher in command:
            command = command[command.index(launcher) + len(launcher):]
            break
    command = command.replace("\\|", "|").replace("[", " ").replace("]", " ")
    words = shlex.split(command.split(" > ")[0].split(" | ")[0])
    return [w for w in words if w != "..."]


def settings_key_known(key: str) -> bool:
    """Whether `key` (e.g. `train.lr`) names a field of the training config, as `key=value` overrides do."""
    node: typing.Any = TrainConfig
    for part in key.split("."):
        if not dataclasses.is_dataclass(node):
            return False
        hints = typing.get_type_hints(node)
        if part not in hints:
            return False
        node = next((a for a in typing.get_args(hints[part]) if dataclasses.is_dataclass(a)), hints[part])
    return True


def problems(words: list[str]) -> list[str]:
    """What the command's parser does not take: an unknown command, option or setting."""
    parser: argparse.ArgumentParser = build_parser(words[0] if not words[0].startswith("-") else None)
    found, rest = [], words
    if words[0].startswith("-"):  # `pspnet --help`: the program's own options
        return [] if words[0] in {o for a in parser._actions for o in a.option_strings} else [f"unknown {words[0]}"]
    while True:  # into `pspnet data prepare`: a command's own commands
        commands = next((a.choices for a in parser._actions if isinstance(a.choices, dict)), None)  # noqa: SLF001
        if commands is None:
            break
        name = next((w for w in rest if not w.startswith("-")), None)
        if name not in commands:
            return [f"unknown command {name!r}"]
        parser, rest = commands[name], rest[rest.index(name) + 1:]
    options = {o for action in parser._actions for o in action.option_strings}  # noqa: SLF001
    for word in rest:
        if word.startswith("--") and word.split("=")[0] not in options:
            found.append(f"unknown option {word.split('=')[0]}")
        elif re.fullmatch(r"[a-z_]+(\.[a-z_]+)+=.*", word) and not settings_key_known(word.split("=")[0]):
            found.append(f"unknown setting {word.split('=')[0]}")
    return found


SHOWN = [(page.name, command) for page in PAGES for command in shown_commands(page.read_text())]


def test_the_pages_show_commands_of_every_kind() -> None:
    """The extraction finds what the pages hold (a broken pattern would check nothing)."""
    assert len(SHOWN) > 40
    assert {arguments(c)[0] for _, c in SHOWN} >= {"train", "eval", "predict", "score", "export", "data", "info"}
    assert any("-m pspnet.cli.main" in c for _, c in SHOWN)  # torchrun's


@pytest.mark.parametrize(("page", "command"), SHOWN)
def test_a_shown_command_takes_what_it_is_given(page: str, command: str) -> None:
    assert not problems(arguments(command)), f"{page}: `{command}`"


def test_a_renamed_option_or_setting_would_be_caught() -> None:
    assert problems(arguments("pspnet predict CKPT IMG --out DIR --legends")) == ["unknown option --legends"]
    assert problems(arguments("pspnet train --config F train.learning_rate=0.1")) == [
        "unknown setting train.learning_rate"]
    assert problems(arguments("pspnet data prepare camvid --root D --sauce S")) == ["unknown option --sauce"]
    assert problems(arguments("pspnet data prepair camvid")) == ["unknown command 'prepair'"]
    assert problems(arguments("pspnet --helps")) == ["unknown --helps"]
    assert not problems(arguments("torchrun --nproc-per-node 2 -m pspnet.cli.main eval B --config F val.flip=false"))


TORCHRUN_OPTIONS = {"--nproc-per-node", "--nnodes", "--node-rank", "--master-addr", "--master-port", "--standalone",
                    "--rdzv-endpoint", "--rdzv-backend", "--rdzv-id"}


def test_the_options_that_messages_and_help_name_exist() -> None:
    """A hint such as "use --overwrite" names an option of some command (or torchrun's): the strings of the code,
    not its comments and docstrings."""
    parser, options = build_parser(), set(TORCHRUN_OPTIONS)
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:  # noqa: SLF001
            options.update(action.option_strings)
            if isinstance(action.choices, dict):
                stack.extend(action.choices.values())
    unknown = []
    for source in sorted((ROOT / "src" / "pspnet").rglob("*.py")):
        tree = ast.parse(source.read_text())
        docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                unknown += [f"{source.name}:{node.lineno}: {o}"
                            for o in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", node.value) if o not in options]
    assert not unknown
