import pytest
import torch

from pspnet import PSPNet, PSPNetError
from pspnet.convert.imagenet import load_imagenet_backbone
from pspnet.model.resnet import DilatedResNet


def imagenet_file(tmp_path, deep_stem: bool, name: str) -> tuple[dict, str]:
    """A ResNet-18 ImageNet state dict in torchvision's layout (7×7 stem) or the resnet*_v2.pth one (deep stem)."""
    source = DilatedResNet("resnet18", deep_stem=deep_stem)
    state = {k.removeprefix("stem."): v for k, v in source.state_dict().items()}
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    path = tmp_path / name
    torch.save(state, path)
    return source.state_dict(), str(path)


def test_torchvision_weights_initialise_a_classic_stem_backbone(tmp_path):
    expected, path = imagenet_file(tmp_path, deep_stem=False, name="resnet18-f37072fd.pth")
    model = PSPNet(3, backbone="resnet18", deep_stem=False)
    load_imagenet_backbone(model.backbone, path)
    assert all(torch.equal(v, expected[k]) for k, v in model.backbone.state_dict().items())


def test_the_model_itself_is_taken_as_readme_writes_it(tmp_path):
    """README: `load_imagenet_backbone(model, source)`; the model was an AttributeError traceback ('depth')."""
    expected, path = imagenet_file(tmp_path, deep_stem=True, name="resnet18_v2.pth")
    model = PSPNet(3, backbone="resnet18")
    load_imagenet_backbone(model, path)
    assert all(torch.equal(v, expected[k]) for k, v in model.backbone.state_dict().items())
    with pytest.raises(PSPNetError, match=r"^load_imagenet_backbone: got Linear; expected a PSPNet or its \.backbone$"):
        load_imagenet_backbone(torch.nn.Linear(2, 2), path)


def test_deep_stem_v2_weights_initialise_the_official_backbone(tmp_path):
    expected, path = imagenet_file(tmp_path, deep_stem=True, name="resnet18_v2.pth")
    model = PSPNet(3, backbone="resnet18")
    load_imagenet_backbone(model.backbone, path)
    assert torch.equal(model.backbone.stem.conv3.weight, expected["stem.conv3.weight"])


def test_torchvision_weights_on_a_deep_stem_model_say_which_setting_to_change(tmp_path):
    _, path = imagenet_file(tmp_path, deep_stem=False, name="resnet18.pth")
    with pytest.raises(PSPNetError, match="torchvision's 7×7 stem; set deep_stem: false"):
        load_imagenet_backbone(PSPNet(3, backbone="resnet18").backbone, path)


def test_weights_of_another_depth_list_the_mismatched_keys(tmp_path):
    _, path = imagenet_file(tmp_path, deep_stem=True, name="resnet18_v2.pth")
    with pytest.raises(PSPNetError, match="weights do not match the model"):
        load_imagenet_backbone(PSPNet(3, backbone="resnet34").backbone, path)


def test_a_missing_local_file_is_named(tmp_path):
    with pytest.raises(PSPNetError, match="no such ImageNet weights file"):
        load_imagenet_backbone(PSPNet(3, backbone="resnet18").backbone, str(tmp_path / "resnet50_v2.pth"))


@pytest.fixture
def http_server(tmp_path):
    """A file server on 127.0.0.1 for `tmp_path/www`, stopped after the test."""
    import functools
    import http.server
    import threading

    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_weights_given_by_url_are_downloaded_once_and_hash_checked(tmp_path, http_server, monkeypatch):
    import hashlib
    import shutil

    www, base = http_server
    expected, local = imagenet_file(tmp_path, deep_stem=False, name="r18.pth")
    digest = hashlib.sha256(open(local, "rb").read()).hexdigest()
    shutil.copy(local, www / f"resnet18-{digest[:8]}.pth")
    monkeypatch.setenv("PSPNET_CACHE", str(tmp_path / "cache"))
    model = PSPNet(3, backbone="resnet18", deep_stem=False)
    path = load_imagenet_backbone(model.backbone, f"{base}/resnet18-{digest[:8]}.pth")
    assert path.parent == tmp_path / "cache" / "imagenet"
    assert torch.equal(model.backbone.layer4[1].conv2.weight, expected["layer4.1.conv2.weight"])


def test_a_download_whose_hash_does_not_match_its_name_is_removed(tmp_path, http_server, monkeypatch):
    import shutil

    www, base = http_server
    _, local = imagenet_file(tmp_path, deep_stem=False, name="r18.pth")
    shutil.copy(local, www / "resnet18-00000000.pth")
    monkeypatch.setenv("PSPNET_CACHE", str(tmp_path / "cache"))
    with pytest.raises(PSPNetError, match="expected 00000000…; deleted it"):
        load_imagenet_backbone(PSPNet(3, backbone="resnet18", deep_stem=False).backbone,
                               f"{base}/resnet18-00000000.pth")
    assert not (tmp_path / "cache" / "imagenet" / "resnet18-00000000.pth").exists()
