"""PSPNet (Zhao et al., CVPR 2017) exactly as published.

    import pspnet
    model = pspnet.PSPNet(num_classes=150, backbone="resnet50")
    model = pspnet.load("pspnet50_ade20k.safetensors")   # settings, classes and mean/std come with the file
    labels = pspnet.predict(model, "street.jpg")           # H×W class indices by the dataset's test protocol
    maps = pspnet.predict(model, ["a.jpg", "b.jpg"])       # a list of images: a list of label maps
    probs = pspnet.probabilities(model, "street.jpg")      # C×H×W: what predict takes the argmax of
    result = pspnet.evaluate(model, "val/images", "val/labels")   # result.scores.miou, by the test protocol
"""

from pspnet.checkpoint import load, save
from pspnet.classes import DatasetInfo
from pspnet.engine.evaluate import evaluate_folders as evaluate
from pspnet.engine.inference import InferenceSettings
from pspnet.engine.predict import predict, probabilities
from pspnet.errors import PSPNetError
from pspnet.model.config import ModelConfig
from pspnet.model.pspnet import PSPNet

__version__ = "0.1.0"
__all__ = ["PSPNet", "ModelConfig", "DatasetInfo", "InferenceSettings", "PSPNetError", "load", "save", "predict",
           "probabilities", "evaluate", "__version__"]
