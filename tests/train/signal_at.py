"""`python signal_at.py ITERATION SIGNALS TARGET ARGS...`: `pspnet ARGS...` whose training sends SIGNALS (e.g.
`SIGTERM`, or `SIGINT,SIGINT`: one after the other) when its process of rank 0 starts step ITERATION (counted from
0), or, with ITERATION `valN`, when it starts scoring the first images of the validation at iteration N — to
`group`, its process group (the run and its data loader's workers: what a scheduler stopping a job, or a Ctrl-C in a
terminal, reaches), to `parent` (torchrun, which passes it on to every worker) or to `self`.
`REPEAT_WINDOW_S` in the environment replaces `pspnet.train.stop.REPEAT_WINDOW_S`."""

import os
import signal
import sys
import time

from pspnet.cli.main import main
from pspnet.engine import evaluate
from pspnet.train import stop
from pspnet.train.step import TrainingStep
from pspnet.train.trainer import Trainer

when, target = sys.argv[1], sys.argv[3]
at = int(when.removeprefix("val"))
signums = [signal.Signals[name] for name in sys.argv[2].split(",")]
if "REPEAT_WINDOW_S" in os.environ:
    stop.REPEAT_WINDOW_S = float(os.environ["REPEAT_WINDOW_S"])
step, validate, segment = TrainingStep.__call__, Trainer.validate, evaluate.segment_and_confidence
validating: list = [-1, None]  # the iteration whose validation runs (-1 once signalled), its StopRequests


def send() -> None:
    if os.environ.get("RANK", "0") != "0":
        return
    for signum in signums:
        if target == "group":
            os.killpg(0, signum)
        elif target == "parent":
            os.kill(os.getppid(), signum)
        else:
            os.kill(os.getpid(), signum)


def signalling_step(self, stream, iteration):
    if not when.startswith("val") and iteration == at:
        send()
    return step(self, stream, iteration)


def signalling_validate(self, iteration, log, stops):
    validating[:] = [iteration, stops]
    return validate(self, iteration, log, stops)


def signalling_segment(*args, **kwargs):
    if when.startswith("val") and validating[0] == at:
        stops = validating[1]
        validating[0] = -1
        send()
        waited = time.monotonic()  # until this process has it (torchrun passes it on when it can): the images in
        while not stops.received and time.monotonic() - waited < 60:  # flight are then cut short, whatever their count
            time.sleep(0.01)
    return segment(*args, **kwargs)


TrainingStep.__call__ = signalling_step
Trainer.validate = signalling_validate
evaluate.segment_and_confidence = signalling_segment
sys.exit(main(sys.argv[4:]))
