"""`pspnet <command>`: dispatch to the subcommand modules; user mistakes print one line, not a traceback."""

from __future__ import annotations

import argparse
import difflib
import importlib
import io
import os
import re
import signal
import sys
import threading
import typing
from pathlib import Path

from pspnet.environment import environment_int
from pspnet.errors import PSPNetError

# (command, module under pspnet.cli, one-line help). Modules are imported only when their command runs.
COMMANDS: list[tuple[str, str, str]] = [
    ("train", "train", "train PSPNet by the paper's recipe (one process, or many under torchrun)"),
    ("convert", "convert", "convert an official checkpoint into a pspnet checkpoint"),
    ("export", "export", "export a checkpoint to ONNX, TorchScript or OpenVINO"),
    ("quantize", "quantize", "int8 OpenVINO model calibrated on your images, with its agreement with f32"),
    ("eval", "eval", "evaluate a checkpoint by the paper's test protocol (mIoU, mAcc, allAcc)"),
    ("predict", "predict", "segment images, folders, globs, lists and videos"),
    ("score", "score", "score saved label PNGs against ground truth"),
    ("data", "data", "prepare and check datasets"),
    ("bench", "bench", "measure speed and memory: reference vs fast, side by side"),
    ("models", "models", "the named published weights (pspnet.load(NAME) and every command take a name)"),
    ("info", "info", "what a checkpoint holds: architecture, classes, normalisation, training provenance"),
]


class OneLineParser(argparse.ArgumentParser):
    """argparse's errors in one line, with where to look, rather than the command's whole usage above them."""

    def error(self, message: str) -> typing.NoReturn:
        taken = re.match(r"argument (--[\w-]+): invalid choice: '(.+?)'", message)
        if taken and Path(taken[2]).exists():  # `--outputs labels img.png`: the input taken as one more value
            self.exit(2, f"{self.prog}: error: {message}; {taken[2]} is an input, taken as one more value of "
                         f"{taken[1]}: put {taken[1]} and its values after the inputs\n")
        self.exit(2, f"{self.prog}: error: {message}; `{self.prog} --help` lists what it takes\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with `command`, only that command's options are built (its module imported): the others
    keep their name and help, which is all that `pspnet --help` or a mistyped command prints."""
    from pspnet import __version__

    parser = OneLineParser(prog="pspnet", description="PSPNet: train, evaluate, predict, export.")
    parser.add_argument("--version", action="version", version=f"pspnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module, help_text in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(module=module)
        if command is None or command == name:
            importlib.import_module(f"pspnet.cli.{module}").add_arguments(p)
    return parser


# The commands whose work torchrun's processes share out (each its part, the first writing); the others run once.
SHARED_WORK = ("train", "eval", "predict")


def other_process_of_torchrun(command: str) -> bool:
    """Under torchrun (WORLD_SIZE > 1) a command that does not share its work out runs in the first process only:
    the others stop at once (exit 0), rather than all doing the same work at the same time (writing the same
    files, downloading the same dataset, timing against each other). The first says so, once."""
    world_size = environment_int("WORLD_SIZE", 1)
    if command in SHARED_WORK or world_size <= 1:
        return False
    if environment_int("RANK", 0) != 0:
        return True
    print(f"pspnet {command}: note: under torchrun ({world_size} processes) the first process runs it and the others "
          "stop at once; only train, eval and predict share their work out", file=sys.stderr)
    return False


OUT_OF_MEMORY_HINTS = {
    "eval": "; a smaller --batch-size holds less at once, and --mode slide less for large images",
    "predict": "; a smaller --batch-size holds less at once, and --mode slide less for large images",
    "bench": "; a smaller --batch-size or --sizes holds less",
    "train": "; train.accumulate, train.activation_checkpointing or a smaller data.crop_size hold less per forward",
}


def unrecognized(parser: argparse.ArgumentParser, argv: list[str], extra: list[str]) -> str:
    """One line for an argument the command does not take, naming the command (`pspnet data check`) and the option
    meant where one is close (`--overwite`: `--overwrite`), rather than argparse's top-level usage."""
    words, rest = [parser.prog], argv
    while True:
        options = [o for action in parser._actions for o in action.option_strings]  # noqa: SLF001  (argparse's own)
        commands = next((a.choices for a in parser._actions if isinstance(a.choices, dict)), {})  # noqa: SLF001
        name = next((a for a in rest if not a.startswith("-")), None)
        if name not in commands:
            break
        parser, rest = commands[name], rest[rest.index(name) + 1:]
        words.append(name)
    command = " ".join(words)
    word = next((a for a in extra if not ("=" in a and not a.startswith("-"))), extra[0])  # key=value: no overrides
    # Compared without their dashes, which every option shares (`--bogus` is not close to `--out`).
    names = {o.lstrip("-"): o for o in options}
    close: list[str] = []
    if word.startswith("-"):
        close = difflib.get_close_matches(word.split("=")[0].lstrip("-"), names, n=1, cutoff=0.7)
    hint = f"did you mean {names[close[0]]}?" if close else f"`{command} --help` lists what it takes"
    return f"{command}: error: unrecognized argument {word}; {hint}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    usable_streams()
    command = next((a for a in argv if not a.startswith("-")), "")  # the top-level parser has no valued options
    parser = build_parser(command)
    from pspnet.cli.comma_lists import split_comma_lists

    argv = split_comma_lists(parser, argv)  # `--scales 0.5,1` as `--scales 0.5 1`
    args, extra = parser.parse_known_args(argv)
    if extra and isinstance(getattr(args, "overrides", None), list) and all(
            "=" in a and not a.startswith("-") for a in extra):
        args.overrides = [*args.overrides, *extra]  # key=value on both sides of an option: `--config F a=1 --fast b=2`
    elif extra:
        print(unrecognized(parser, argv, extra), file=sys.stderr)
        return 2
    # `train --print-config` stops before training: a command of one process, whose YAML goes out once.
    try:
        if other_process_of_torchrun("train --print-config" if getattr(args, "print_config", False) else args.command):
            return 0
    except PSPNetError as e:  # a torchrun variable left over with no number in it
        return error(args.command, str(e))
    terminated = Terminated()
    try:
        with terminated:
            return int(importlib.import_module(f"pspnet.cli.{args.module}").run(args) or 0)
    except PSPNetError as e:
        return error(args.command, str(e))
    except KeyboardInterrupt:
        return interrupted(args.command, terminated.received)
    except RuntimeError as e:  # out of memory where the command had no better answer (e.g. `pspnet bench`'s batch)
        from pspnet.device import is_out_of_memory
        from pspnet.distributed import is_peer_lost

        text = str(e)
        if isinstance(e.__context__, KeyboardInterrupt) or any(f"{WORKER_KILLED}{s}" in text for s in STOPS):
            # a stop, as torch's loader says it when the stop reached its workers too (a signal to the process group)
            return interrupted(args.command, terminated.received or f"{WORKER_KILLED}Terminated" in text)
        if WORKER_KILLED in text:  # SIGKILL: most often the kernel's out-of-memory killer
            return error(args.command, f"{text.splitlines()[0].strip()} (by the system when memory runs out, most "
                                       "often); fewer data-loading workers (--workers; data.workers in training) "
                                       "hold less")

        if is_peer_lost(e):  # under torchrun, another process died (killed, out of memory): not 30 lines of gloo's
            first = next((line.strip() for line in text.splitlines() if line.strip()), "")
            again = "; `--resume` continues from the last checkpoint" if args.command == "train" else ""
            return error(args.command, f"another process of the job has stopped ({first[:200]}); this one stops "
                                       f"too{again}")
        if not is_out_of_memory(e):
            raise
        hint = OUT_OF_MEMORY_HINTS.get(args.command, "")
        return error(args.command, f"out of memory ({str(e).splitlines()[0]}){hint}")
    except BrokenPipeError:  # `pspnet models | head`: the reader has gone; stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # what the machine said to a read or write (a full disk, a quota, a read-only folder)
        where = f"{e.filename}: " if e.filename else ""
        return error(args.command, f"{where}{e.strerror or e}")


# torch's DataLoader, when a worker process died of a signal: "DataLoader worker (pid 123) is killed by signal:
# Terminated." (strsignal's name of it)
WORKER_KILLED = ") is killed by signal: "
STOPS = ("Terminated", "Interrupt")  # SIGTERM, SIGINT


class Terminated:
    """While a command runs: SIGTERM (a job scheduler's stop, torchrun stopping its workers) stops it as Ctrl-C does,
    so that what it was writing is cleaned up (temporary files, staged folders) rather than left by a sudden death.
    The trainer installs its own handler over it (a checkpoint first). The earlier handler comes back at the end."""

    def __init__(self) -> None:
        self.received = False
        self.previous: typing.Any = None

    def __enter__(self) -> Terminated:
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (
                signal.SIG_DFL, None):  # a caller's own handler stays
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        return self

    def _raise(self, signum: int, frame: typing.Any) -> None:
        self.received = True
        raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def interrupted(command: str, by_sigterm: bool) -> int:
    """The line of a command stopped by Ctrl-C or SIGTERM, and its exit status (128 + the signal's number)."""
    print(f"pspnet {command}: interrupted{' (SIGTERM)' if by_sigterm else ''}", file=sys.stderr)
    return 143 if by_sigterm else 130


def usable_streams() -> None:
    """Streams a command can always write to: a closed stderr or stdout (`2>&-`, some daemons and cron jobs; Python
    makes it None) goes to the null device, where every write crashed the command; an ASCII one (`PYTHONIOENCODING=
    ascii`) escapes what it cannot encode (the × of a size, a class's name) as stderr does, not raise."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 (the process's own stream, open to its end)
        elif isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")


def error(command: str, message: str) -> int:
    """`pspnet COMMAND: error: MESSAGE` on stderr in one write (print writes the line's end apart: under torchrun,
    where the processes share one stderr, another's line could land in between); the exit code 2."""
    sys.stderr.write(f"pspnet {command}: error: {message}\n")
    sys.stderr.flush()
    return 2


if __name__ == "__main__":
    sys.exit(main())
