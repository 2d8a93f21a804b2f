"""`python signal_at.py ITERATION SIGNAL TARGET ARGS...`: `pspnet ARGS...` whose training sends SIGNAL when its
process of rank 0 starts step ITERATION (counted from 0) — to `group`, its process group (the run and its data
loader's workers: what a scheduler stopping a job, or a Ctrl-C in a terminal, reaches), or to `parent` (torchrun,
which passes it on to every worker)."""

import os
import signal
import sys

from pspnet.cli.main import main
from pspnet.train.step import TrainingStep

at, signum, target = int(sys.argv[1]), signal.Signals[sys.argv[2]], sys.argv[3]
step = TrainingStep.__call__


def signalling_step(self, stream, iteration):
    if iteration == at and os.environ.get("RANK", "0") == "0":
        if target == "group":
            os.killpg(0, signum)
        else:
            os.kill(os.getppid(), signum)
    return step(self, stream, iteration)


TrainingStep.__call__ = signalling_step
sys.exit(main(sys.argv[4:]))
