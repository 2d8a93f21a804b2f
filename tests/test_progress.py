"""Progress in a log file is plain lines: no carriage returns, no escape codes."""

import pspnet.progress as progress_module
from pspnet.progress import LineProgress, progress_bar


def test_off_a_terminal_progress_is_plain_lines(capsys, monkeypatch) -> None:
    monkeypatch.setattr(progress_module, "LINE_INTERVAL", 0.0)  # a line per update
    bar = progress_bar(total=3, desc="train", unit="it")
    assert isinstance(bar, LineProgress)  # pytest's captured stderr is not a terminal
    for _ in range(3):
        bar.update(1)
        bar.set_postfix(loss="0.5")
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    assert err.splitlines()[-1].startswith("train: 3/3 it (100%)") and "loss=0.5" in err


def test_an_iterable_is_passed_through_and_reported_at_the_end(capsys) -> None:
    assert list(progress_bar(range(4), desc="check", unit="pair")) == [0, 1, 2, 3]
    assert capsys.readouterr().err.strip().startswith("check: 4/4 pair (100%)")
