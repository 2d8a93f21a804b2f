"""The training engine: the paper's recipe (SGD, poly lr, aux loss), DDP under torchrun, checkpoints that survive."""
