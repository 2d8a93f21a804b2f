"""List files (`image label` per line, the official format) and folder pairs: where each sample's files are."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pspnet.errors import PSPNetError
from pspnet.files import IMAGE_SUFFIXES, near_miss


@dataclass(frozen=True)
class Pair:
    image: Path
    label: Path
    tree_name: str | None = None  # its path in a folders dataset's tree, without the suffix (`seq1/0001`)

    @property
    def name(self) -> str:
        """What its predictions and per-image rows are named: the image's stem, or its path in the tree."""
        return self.tree_name or self.image.stem


def read_list(path: Path, root: Path, malformed: list[str] | None = None) -> list[Pair]:
    """Pairs from a list file; relative paths are taken relative to `root`. A malformed line raises PSPNetError
    (with `malformed`: is reported there and skipped, see `read_list_lines`)."""
    return [Pair(root / image, root / label) for image, label in read_list_lines(path, malformed)]


SPACES_HINT = "; for paths with spaces, separate the two with a tab or put each in double quotes"


def line_paths(line: str) -> list[str]:
    """The paths on a list line: separated by tabs where the line has one (paths may then hold spaces), else by
    spaces, a path in double quotes kept whole ("my data/a b.jpg"). Backslashes and apostrophes are kept as
    written."""
    if "\t" in line:
        return [part.strip() for part in line.split("\t") if part.strip()]
    if '"' in line:
        return [quoted or bare for quoted, bare in re.findall(r'"([^"]*)"|(\S+)', line)]
    return line.split()


def windows_separators(path: Path) -> str:
    """For a missing file named with backslashes (a list written on Windows), a hint when the `/` path exists."""
    text = str(path)
    posix = text.replace("\\", "/")
    if posix == text or not Path(posix).exists():
        return ""
    return f"; {posix} exists: the list separates folders with \\ (Windows); write / instead"


def list_line(*paths: str) -> str:
    """A list line as `line_paths` reads it back: paths separated by a space, one holding spaces in double quotes."""
    return " ".join(f'"{p}"' if any(c.isspace() for c in p) else p for p in paths)


def list_lines(path: Path) -> list[str]:
    """The lines of a list file; a missing, unreadable or binary file is an error naming it."""
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()  # a Windows editor's BOM is not a path
    except FileNotFoundError:
        raise PSPNetError(f"{path}: no such list file") from None
    except UnicodeDecodeError:
        raise PSPNetError(f"{path}: not a text list file (paths, one entry per line)") from None
    except OSError as e:
        raise PSPNetError(f"{path}: cannot read the list file ({e.strerror})") from None


def read_list_lines(path: str | Path, malformed: list[str] | None = None) -> list[tuple[str, str]]:
    """The (image, label) path strings of a list file's 'IMAGE LABEL' lines, blank lines skipped; a missing file or
    a malformed line raises PSPNetError naming the file and line. With `malformed`, each malformed line's message is
    appended to it and the line skipped instead (to report every one)."""
    lines = list_lines(Path(path))
    entries = []
    for n, line in enumerate(lines, 1):
        parts = line_paths(line)
        if not parts:
            continue
        if len(parts) != 2:
            spaces = SPACES_HINT if len(parts) > 2 and not any(c in line for c in '\t"') else ""
            message = f"{path}:{n}: expected 'IMAGE LABEL' (two paths), got {line.strip()!r}{spaces}"
            if malformed is None:
                raise PSPNetError(message)
            malformed.append(message)
            continue
        entries.append((parts[0], parts[1]))
    return entries


LIST_SUFFIXES = (".txt", ".lst")  # list files among inputs (`pspnet predict`, `pspnet quantize --calib`)


def read_image_list(path: Path, missing: list[str] | None = None) -> list[Path]:
    """The images a list file names: the first path of each line (an `IMAGE LABEL` list such as `val.txt`, or one
    image per line), relative paths taken from the list's folder; blank lines and `#` comments skipped. A path that
    is no file is an error naming the line; with `missing`, its message is added there and the list read on (one
    error still when no line names a file: a wrong folder)."""
    lines = list_lines(path)
    files = []
    problems: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        given = Path(line_paths(line)[0])
        if not any(c in line for c in '\t"') and (whole := Path(line.strip())) != given:
            # One image per line, its path holding spaces: the whole line is the path where that file exists.
            if (whole if whole.is_absolute() else path.parent / whole).is_file():
                given = whole
        image = given if given.is_absolute() else path.parent / given
        if not image.is_file():
            where = "" if given.is_absolute() else f" (a relative path is read from the list's folder, {path.parent})"
            spaces = SPACES_HINT if len(line.split()) > 2 else ""
            problems.append(f"{path}:{number}: {image}: no such image{where}{spaces}{windows_separators(image)}")
            if missing is None:
                break
            continue
        files.append(image)
    if problems and (missing is None or not files):
        more = f" (and {len(problems) - 1} more line(s) naming no file)" if len(problems) > 1 else ""
        raise PSPNetError(problems[0] + more)
    if not files:
        raise PSPNetError(f"{path}: the list names no images")
    if missing is not None:
        missing.extend(problems)
    return files


def write_list(path: Path, pairs: list[Pair], root: Path) -> None:
    """Write pairs with paths relative to `root`, atomically (a crash never leaves half a list)."""
    text = "".join(list_line(p.image.relative_to(root).as_posix(), p.label.relative_to(root).as_posix()) + "\n"
                   for p in pairs)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def tree_files(folder: Path, suffixes: Sequence[str] | None = None) -> list[Path]:
    """The files in `folder`'s tree (subfolders at any depth, as mmsegmentation's datasets read theirs), hidden files
    and folders left out, with one of `suffixes` (any case) if given; sorted by their path in the tree."""
    found = []
    seen: set[str] = set()  # the real folders walked: a symlinked folder is followed (Path.rglob left it out), once
    for top, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:  # a link back up the tree
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            p = Path(top) / name
            if name.startswith(".") or not p.is_file():
                continue
            if suffixes is None or p.suffix.lower() in suffixes:
                found.append((p.relative_to(folder).as_posix(), p))
    return [p for _, p in sorted(found)]


def tree_name(path: Path, folder: Path) -> str:
    """A file's name in `folder`'s tree: its path there without the suffix (`seq1/0001`; at the top, its stem). What
    a folder tree's outputs are named by (`predict --recursive`, a folders dataset's nested pairs) and how `score
    --recursive` pairs them."""
    return path.relative_to(folder).with_suffix("").as_posix()


def spread_evenly(count: int, k: int) -> list[int]:
    """`k` positions of 0..count-1 spread evenly from the first to the last, sorted (all of them when k ≥ count):
    a sample of a sorted set that sees all of it (a dataset sorted by sequence, say), not its first sequence only."""
    if k >= count:
        return list(range(count))
    return sorted(set(np.linspace(0, count - 1, k).round().astype(int).tolist()))  # distinct: the step exceeds 1


def fold_suffix(name: str, suffix: str) -> str:
    """`name` with its ending `suffix` in the case written in `suffix` (A.PNG → A.png for ".png"); the rest kept."""
    if len(name) > len(suffix) and name.lower().endswith(suffix.lower()):
        return name[: -len(suffix)] + suffix
    return name


def pair_folders(image_dir: Path, label_dir: Path, label_suffix: str = ".png") -> list[Pair]:
    """Images `PATH/NAME.<image suffix>` anywhere in `image_dir`'s tree matched with labels
    `label_dir/PATH/NAME<label_suffix>` (e.g. `NAME_mask.png`), sorted by path. An image without its label is still
    listed (the check reports the missing file); labels without an image are left out (see `unpaired_labels`)."""
    if not image_dir.is_dir():
        raise PSPNetError(f"{image_dir}: no such image folder{near_miss(image_dir)}")
    if not label_dir.is_dir():
        raise PSPNetError(f"{label_dir}: no such label folder{near_miss(label_dir)}")
    pairs = []
    listed: dict[Path, dict[str, Path]] = {}  # a label folder's files by name, suffix case folded; read if needed
    paired: dict[Path, Path] = {}  # label → its image: a.png and a.jpg beside one a.png label counted it twice
    for p in tree_files(image_dir, IMAGE_SUFFIXES):
        relative = p.relative_to(image_dir)
        nested = tree_name(p, image_dir) if len(relative.parts) > 1 else None
        label = label_dir / relative.parent / f"{p.stem}{label_suffix}"
        if not label.exists() and label.parent.is_dir():  # NAME.PNG (a Windows habit) is the label NAME.png too
            if label.parent not in listed:
                listed[label.parent] = {fold_suffix(q.name, label_suffix): q for q in label.parent.iterdir()}
            label = listed[label.parent].get(fold_suffix(label.name, label_suffix), label)
        if (other := paired.setdefault(label, p)) != p:
            raise PSPNetError(f"{other} and {p} both pair with the label {label}; keep one image of each name (the "
                              "other one a copy in another format?)")
        pairs.append(Pair(p, label, nested))
    return pairs


def unpaired_note(image_dir: Path, label_dir: Path, label_suffix: str, suffix_setting: str) -> str | None:
    """The note for the labels of `label_dir` with no image (left out of the evaluation or training), naming the
    first few; None when every label has its image. `suffix_setting` is how the caller sets the label suffix
    (`data.label_suffix:`, `--label-suffix`), named when another suffix pairs them all."""
    unpaired, suffix = unpaired_labels(image_dir, label_dir, label_suffix)
    if not unpaired:
        return None
    shown = ", ".join(p.relative_to(label_dir).as_posix() for p in unpaired[:3]) + (" ..." if len(unpaired) > 3 else "")
    hint = f"; these labels are named NAME{suffix}: set {suffix_setting} {suffix}" if suffix else ""
    return (f"{label_dir}: {len(unpaired)} label(s) without an image of the same name, left out ({shown}); an image "
            f"NAME.* is paired with the label NAME{label_suffix}{hint}")


def unpaired_labels(image_dir: Path, label_dir: Path, label_suffix: str = ".png") -> tuple[list[Path], str | None]:
    """The label files of `label_dir`'s tree (named `*<label_suffix>`) with no image of their path and name in
    `image_dir`'s: what `pair_folders` leaves out; and, when they all pair with the images under another suffix such
    as `_mask.png`, that suffix."""
    if not image_dir.is_dir() or not label_dir.is_dir():
        return [], None
    stems = {tree_name(p, image_dir) for p in tree_files(image_dir, IMAGE_SUFFIXES)}
    labels = {fold_suffix(p.relative_to(label_dir).as_posix(), label_suffix): p for p in tree_files(label_dir)
              if p.name.lower().endswith(label_suffix.lower())}
    unpaired = sorted((name, p) for name, p in labels.items() if name[: -len(label_suffix)] not in stems)
    # Another suffix pairs a label with an image when a prefix of its path is an image's: each label's prefixes
    # are looked up in the set of image paths (not each image's path tried against each label).
    suffixes = {name[k:] for name, _ in unpaired for k in range(1, len(name))
                if name[:k] in stems and name[k:].endswith(".png")}
    suffix = next(iter(suffixes)) if len(suffixes) == 1 and len(unpaired) == len(labels) else None
    return [p for _, p in unpaired], suffix
