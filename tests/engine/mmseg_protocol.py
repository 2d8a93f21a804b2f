"""An independent re-implementation of mmsegmentation's single-scale whole-image test, for the tests: NumPy and
OpenCV, written from mmseg's configs and `EncoderDecoder` (Resize keep_ratio to (long, short): factor
min(long / long side, short / short side), sizes int(x · factor + 0.5); normalise; the whole image through the
network; logits resized bilinearly back to the image size; argmax). The image is resized as float32 (mmcv resizes
the uint8 image; that rounding is the one difference, as for the official protocol)."""

import cv2
import numpy as np
import torch


def mmseg_labels(model: torch.nn.Module, image: np.ndarray, long: int, short: int, mean, std) -> np.ndarray:
    h, w = image.shape[:2]
    factor = min(long / max(h, w), short / min(h, w))
    new_w, new_h = int(w * factor + 0.5), int(h * factor + 0.5)
    resized = cv2.resize(image.astype(np.float32), (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    x = (resized - np.float32(mean) * 255) / (np.float32(std) * 255)
    with torch.no_grad():
        logits = model(torch.from_numpy(x).permute(2, 0, 1)[None].float())[0].numpy()
    back = np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in logits])
    return back.argmax(0)
