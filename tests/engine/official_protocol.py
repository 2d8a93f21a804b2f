"""The authors' test protocol (hszhao/semseg `tool/test.py`), written from its description for the tests: numpy
arrays in H×W×C order, OpenCV for every resize and the padding, float64 accumulators, one window (and its flip)
per network call. Shares no code with `pspnet.engine.inference`; only the network call goes through torch."""

import math

import cv2
import numpy as np
import torch


def net_process(net, crop: np.ndarray, mean: np.ndarray, std: np.ndarray, flip: bool) -> np.ndarray:
    """Softmax of one float32 H×W×3 window (0..255 RGB), averaged with its mirror image's; H×W×C float32."""
    x = torch.from_numpy(((crop - mean) / std).astype(np.float32).transpose(2, 0, 1).copy())[None]
    if flip:
        x = torch.cat([x, x.flip(3)])
    with torch.no_grad():
        out = torch.softmax(net(x), dim=1)
    out = (out[0] + out[1].flip(2)) / 2 if flip else out[0]
    return out.numpy().transpose(1, 2, 0)


def scale_process(net, image: np.ndarray, classes: int, crop_h: int, crop_w: int, h: int, w: int,
                  mean: np.ndarray, std: np.ndarray, flip: bool, stride_rate: float = 2 / 3) -> np.ndarray:
    ori_h, ori_w = image.shape[:2]
    pad_h, pad_w = max(crop_h - ori_h, 0), max(crop_w - ori_w, 0)
    pad_h_half, pad_w_half = int(pad_h / 2), int(pad_w / 2)
    if pad_h > 0 or pad_w > 0:
        image = cv2.copyMakeBorder(image, pad_h_half, pad_h - pad_h_half, pad_w_half, pad_w - pad_w_half,
                                   cv2.BORDER_CONSTANT, value=mean.tolist())
    new_h, new_w = image.shape[:2]
    stride_h, stride_w = int(math.ceil(crop_h * stride_rate)), int(math.ceil(crop_w * stride_rate))
    grid_h = int(math.ceil(float(new_h - crop_h) / stride_h) + 1)
    grid_w = int(math.ceil(float(new_w - crop_w) / stride_w) + 1)
    prediction = np.zeros((new_h, new_w, classes), dtype=np.float64)
    count = np.zeros((new_h, new_w), dtype=np.float64)
    for index_h in range(grid_h):
        for index_w in range(grid_w):
            e_h = min(index_h * stride_h + crop_h, new_h)
            e_w = min(index_w * stride_w + crop_w, new_w)
            s_h, s_w = e_h - crop_h, e_w - crop_w
            count[s_h:e_h, s_w:e_w] += 1
            prediction[s_h:e_h, s_w:e_w] += net_process(net, image[s_h:e_h, s_w:e_w].copy(), mean, std, flip)
    prediction /= count[:, :, None]
    prediction = prediction[pad_h_half:pad_h_half + ori_h, pad_w_half:pad_w_half + ori_w]
    return cv2.resize(prediction, (w, h), interpolation=cv2.INTER_LINEAR)


def official_probabilities(net, image_rgb: np.ndarray, classes: int, base_size: int, crop: tuple[int, int],
                           scales: tuple[float, ...], mean01: tuple[float, ...], std01: tuple[float, ...],
                           flip: bool = True) -> np.ndarray:
    """Class probabilities H×W×C of a uint8 H×W×3 RGB image: the image becomes float32 before any resize."""
    image = np.float32(image_rgb)
    mean, std = np.array(mean01) * 255, np.array(std01) * 255
    h, w = image.shape[:2]
    prediction = np.zeros((h, w, classes), dtype=np.float64)
    for scale in scales:
        long_size = round(scale * base_size)
        new_h = new_w = long_size
        if h > w:
            new_w = round(long_size / float(h) * w)
        else:
            new_h = round(long_size / float(w) * h)
        image_scale = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        prediction += scale_process(net, image_scale, classes, crop[0], crop[1], h, w, mean, std, flip)
    return prediction / len(scales)
