"""`python signal_at.py ITERATION SIGNALS TARGET ARGS...`: `pspnet ARGS...` whose training sends SIGNALS (e.g.
`SIGTERM`, or `SIGINT,SIGINT`: one after the other) when its process of rank 0 starts step ITERATION (counted from
0) — to `group`, its process group (the run and its data loader's workers: what a scheduler stopping a job, or a
Ctrl-C in a terminal, reaches), to `parent` (torchrun, which passes it on to every worker) or to `self`.
`REPEAT_WINDOW_S` in the environment replaces `pspnet.train.stop.REPEAT_WINDOW_S`."""

import os
import signal
import sys

from pspnet.cli.main import main
from pspnet.train import stop
from pspnet.train.step import TrainingStep

at, target = int(sys.argv[1]), sys.argv[3]
signums = [signal.Signals[name] for name in sys.argv[2].split(",")]
if "REPEAT_WINDOW_S" in os.environ:
    stop.REPEAT_WINDOW_S = float(os.environ["REPEAT_WINDOW_S"])
step = TrainingStep.__call__


def signalling_step(self, stream, iteration):
    if iteration == at and os.environ.get("RANK", "0") == "0":
        for signum in signums:
            if target == "group":
                os.killpg(0, signum)
            elif target == "parent":
                os.kill(os.getppid(), signum)
            else:
                os.kill(os.getpid(), signum)
    return step(self, stream, iteration)


TrainingStep.__call__ = signalling_step
sys.exit(main(sys.argv[4:]))
