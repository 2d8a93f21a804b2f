"""Weights from elsewhere: the official hszhao/semseg checkpoints and ImageNet backbones."""
