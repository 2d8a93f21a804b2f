"""Options that take several values accept them comma-separated too: `--scales 0.5,0.75,1` as `--scales 0.5 0.75 1`,
`--crop-size 512,1024`, `--outputs labels,color` (as configs and other tools write lists)."""

from __future__ import annotations

import argparse

from pspnet.configfile import comma_numbers


def _listed(action: argparse.Action) -> bool:
    """Whether the option takes several values of a type or from a set of choices."""
    several = action.nargs in ("+", "*") or (isinstance(action.nargs, int) and action.nargs > 1)
    return bool(action.option_strings) and several and (action.type in (int, float) or action.choices is not None)


def _parts(action: argparse.Action, word: str) -> list[str] | None:
    """`word`'s comma-separated values where each is one the option takes, else None (argparse then says why)."""
    if "," not in word:
        return None
    if action.choices is not None:
        parts = word.split(",")
        return parts if all(part in action.choices for part in parts) else None
    parts = comma_numbers(word)  # the same reading as a config's list settings (`val.scales=0.5,1`)
    return parts if isinstance(parts, list) else None


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The options of `parser` and of the commands under it (`pspnet data check`), by option string."""
    found: dict[str, argparse.Action] = {}
    for action in parser._actions:  # noqa: SLF001  (argparse's own)
        if isinstance(action.choices, dict):
            for sub in action.choices.values():
                found.update(_actions(sub))
        elif _listed(action):
            found.update(dict.fromkeys(action.option_strings, action))
    return found


def split_comma_lists(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`argv` with the comma-separated values of list options split into words, for `parser` to read."""
    actions, out, current = _actions(parser), [], None
    for word in argv:
        name, eq, value = word.partition("=")
        if word.startswith("-") and eq and name in actions and (parts := _parts(actions[name], value)):
            out += [name, *parts]
            current = actions[name]
            continue
        if word.startswith("-") and not _is_number(word):
            current = actions.get(word)
        elif current is not None and (parts := _parts(current, word)):
            out += parts
            continue
        out.append(word)
    return out


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True
