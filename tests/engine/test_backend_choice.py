"""--backend auto: OpenVINO f32 on CPUs when installed (printed with its reason), PyTorch when asked for PyTorch-only
execution; --precision auto: f32 for eval, the fastest native precision for predict."""

import argparse
from pathlib import Path

import pytest
import torch

from pspnet.cli import backend_options
from pspnet.cli.backend_options import choose_backend, openvino_precision
from pspnet.errors import PSPNetError

CPU = torch.device("cpu")


def args(checkpoint: str = "m.safetensors", **options) -> argparse.Namespace:
    base = {"backend": "auto", "checkpoint": Path(checkpoint), "fast": False, "compile": None, "channels_last": None,
            "fold_bn": None, "compile_mode": None, "matmul_upsample": None, "precision": None,
            "pyramid_at_bins": None}
    return argparse.Namespace(**(base | options))


def test_files_pick_their_engine_and_checkpoints_pick_openvino_on_a_cpu() -> None:
    assert choose_backend(args("m.onnx"), CPU)[0] == "onnxruntime"
    assert choose_backend(args("m.xml"), CPU)[0] == "openvino"
    assert choose_backend(args(), torch.device("cuda"))[0] == "torch"
    backend, why = choose_backend(args(), CPU)
    expected = "openvino" if backend_options.importlib.util.find_spec("openvino") else "torch"
    assert backend == expected and why


@pytest.mark.parametrize("option", [{"compile": True}, {"channels_last": True}, {"fold_bn": False},
                                    {"matmul_upsample": True}, {"pyramid_at_bins": False}, {"precision": "fp16"},
                                    {"backend": "torch"}, {"backend": "torch", "fast": True}])
def test_pytorch_execution_options_keep_pytorch(option) -> None:
    backend, why = choose_backend(args(**option), CPU)
    assert backend == "torch", why


def test_fast_on_a_cpu_keeps_openvino_the_fastest_engine_there(monkeypatch) -> None:
    """--fast asks for the fastest execution measured: on CPUs OpenVINO's (it moved eval and predict to PyTorch,
    slower: BENCHMARKS.md); on a GPU PyTorch's fast recipe."""
    monkeypatch.setattr(backend_options.importlib.util, "find_spec", lambda name: object())
    backend, why = choose_backend(args(fast=True), CPU)
    assert backend == "openvino" and why.endswith("; --fast: the fastest engine measured on CPUs")
    assert backend_options.torch_options(args(fast=True, backend="openvino")) == []
    assert backend_options.torch_options(args(fast=True, backend="onnxruntime")) == ["--fast"]
    assert choose_backend(args(fast=True), torch.device("cuda"))[0] == "torch"


@pytest.fixture(scope="module")
def onnx_and_image(tmp_path_factory) -> tuple[Path, Path]:
    """An exported .onnx and a folder of one image (exported once: the four cases below read it)."""
    pytest.importorskip("onnxruntime")
    import pspnet
    from pspnet.export.onnx import export_onnx

    tmp = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    onnx = export_onnx(pspnet.PSPNet(3, backbone="resnet18", output_stride=16).eval(), tmp / "m.onnx")
    (tmp / "img").mkdir()
    from PIL import Image

    Image.new("RGB", (20, 16)).save(tmp / "img" / "a.png")
    return onnx, tmp / "img"


@pytest.mark.parametrize("option", [["--compile"], ["--no-fold-bn"], ["--matmul-upsample"], ["--fast"]])
def test_pytorch_options_on_another_engine_are_a_one_line_error_not_ignored(onnx_and_image, tmp_path, capsys,
                                                                              option) -> None:
    """An exported graph runs in ONNX Runtime (or OpenVINO) its own way: a PyTorch execution option given with it
    would do nothing, so it is refused, naming the option and the backend."""
    from pspnet.cli.main import main

    onnx, images = onnx_and_image
    code = main(["predict", str(onnx), str(images), "--out", str(tmp_path / "o"), *option])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert option[0] in err and "onnxruntime backend (an .onnx file)" in err and "--backend torch" in err
    assert not (tmp_path / "o").exists()


def test_without_openvino_auto_falls_back_to_pytorch_and_says_how_to_get_it(monkeypatch) -> None:
    monkeypatch.setattr(backend_options.importlib.util, "find_spec", lambda name: None)
    backend, why = choose_backend(args(), CPU)
    assert backend == "torch" and "pip install 'pspnet[openvino]'" in why


def test_auto_precision_is_f32_for_eval_and_bf16_for_predict_where_it_outruns_f32(fake_cpu) -> None:
    fake_cpu("AuthenticAMD", "avx2", "avx512_vnni", "avx512_bf16")
    assert openvino_precision(None, "eval")[0] == "f32"
    precision, why = openvino_precision("auto", "predict")
    assert precision == "bf16" and "fast bf16 on this CPU (avx512_bf16 on AuthenticAMD)" in why
    fake_cpu("GenuineIntel", "avx2", "amx_bf16")
    assert openvino_precision("auto", "predict")[0] == "bf16"
    # AVX-512 BF16 without AMX on an Intel Xeon: OpenVINO bf16 measured slower than its f32 (BENCHMARKS.md)
    fake_cpu("GenuineIntel", "avx2", "avx512_vnni", "avx512_bf16")
    precision, why = openvino_precision("auto", "predict")
    assert precision == "f32" and "avx512_bf16 without AMX on GenuineIntel" in why and "slower than fp32" in why
    fake_cpu("GenuineIntel", "avx2")
    precision, why = openvino_precision(None, "predict")
    assert precision == "f32" and "no native bf16" in why and "avx2" in why
    assert openvino_precision("fp32", "predict")[0] == "f32"
    with pytest.raises(PSPNetError, match="f32, bf16 or int8"):
        openvino_precision("fp16", "eval")


def test_int8_on_a_checkpoint_or_on_pytorch_is_a_one_line_error(tmp_path, capsys) -> None:
    pytest.importorskip("openvino")
    import pspnet
    from pspnet.cli.main import main

    torch.manual_seed(0)
    ckpt = pspnet.save(pspnet.PSPNet(3, backbone="resnet18", output_stride=16), tmp_path / "m.safetensors")
    (tmp_path / "img").mkdir()
    from PIL import Image

    Image.new("RGB", (20, 16)).save(tmp_path / "img" / "a.png")
    assert main(["predict", str(ckpt), str(tmp_path / "img"), "--out", str(tmp_path / "o"), "--precision",
                 "int8"]) == 2
    assert "pspnet quantize" in capsys.readouterr().err
    assert main(["predict", str(ckpt), str(tmp_path / "img"), "--out", str(tmp_path / "o"), "--precision", "int8",
                 "--backend", "torch"]) == 2
    err = capsys.readouterr().err.strip()
    assert "OpenVINO's" in err and len(err.splitlines()) == 1


def test_eval_by_default_runs_openvino_f32_on_a_cpu_and_says_so(tmp_path, capsys) -> None:
    pytest.importorskip("openvino")
    import json

    import numpy as np
    from PIL import Image

    import pspnet
    from pspnet.cli.main import main

    torch.manual_seed(0)
    ckpt = pspnet.save(pspnet.PSPNet(3, backbone="resnet18", output_stride=16), tmp_path / "m.safetensors")
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(tmp_path / "img" / "a.png")
    Image.fromarray(rng.integers(0, 3, (24, 32), dtype=np.uint8)).save(tmp_path / "lab" / "a.png")
    docs = []
    for backend in ("auto", "torch"):
        out = tmp_path / f"{backend}.json"
        assert main(["eval", str(ckpt), "--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"),
                     "--workers", "0", "--quiet", "--base-size", "0", "--crop-size", "24", "--json", str(out),
                     "--backend", backend]) == 0
        docs.append(json.loads(out.read_text()))
    err = capsys.readouterr().err
    assert "network: OpenVINO f32 (a CPU with OpenVINO installed" in err and "precision auto: f32" in err
    # The result file says how each ran: the engine and its precision, or the PyTorch recipe's settings.
    assert docs[0]["recipe"] == {"backend": "openvino", "description": "OpenVINO f32", "precision": "f32"}
    assert docs[1]["recipe"]["backend"] == "torch" and docs[1]["recipe"]["fold_bn"] is True
    assert docs[0]["confusion_matrix"] == docs[1]["confusion_matrix"]


def test_openvino_bf16_on_a_cpu_without_bf16_units_warns(tmp_path, capsys, fake_cpu) -> None:
    pytest.importorskip("openvino")
    import pspnet
    from pspnet.cli.main import main

    fake_cpu("AuthenticAMD", "avx2")
    torch.manual_seed(0)
    ckpt = pspnet.save(pspnet.PSPNet(3, backbone="resnet18", output_stride=16), tmp_path / "m.safetensors")
    (tmp_path / "img").mkdir()
    from PIL import Image

    Image.new("RGB", (20, 16)).save(tmp_path / "img" / "a.png")
    assert main(["predict", str(ckpt), str(tmp_path / "img"), "--out", str(tmp_path / "o"), "--precision", "bf16",
                 "--quiet", "--crop-size", "16", "--base-size", "0"]) == 0
    err = capsys.readouterr().err
    assert "warning: bf16 on this CPU is emulated" in err and "avx2" in err and "OpenVINO bf16" in err


def test_a_onednn_isa_cap_hides_the_features_above_it(monkeypatch, tmp_path) -> None:
    """ONEDNN_MAX_CPU_ISA=AVX2 makes PyTorch's and OpenVINO's kernels those of an AVX2-only CPU: `auto` choices and the
    bench's machine line follow the cap, not /proc/cpuinfo alone."""
    from pspnet import device
    from pspnet.bench.report import machine

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Test CPU\nflags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16 amx_bf16\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: real_open(cpuinfo if path == "/proc/cpuinfo" else path,
                                                                           *a, **k))
    for name in device.ISA_CAP_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert device.cpu_features() == {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16"}
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    assert device.cpu_features() == {"avx2"} and device.isa_cap() == "AVX2"
    assert openvino_precision("auto", "predict")[0] == "f32"
    assert "oneDNN capped at AVX2" in machine(CPU)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")
    assert device.cpu_features() == {"avx2", "avx512f", "avx512_vnni"}
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")  # no cap on what we track
    assert "amx_bf16" in device.cpu_features()


@pytest.mark.parametrize(("given", "backend", "expected"), [
    ("m.onnx", "torch", "m.onnx: an ONNX graph, which --backend torch does not run; --backend onnxruntime or "
                        "--backend openvino (or auto) runs it"),
    ("m.xml", "onnxruntime", "m.xml: an OpenVINO IR, which --backend onnxruntime does not run; --backend openvino "
                             "(or auto) runs it, or export an ONNX graph of the checkpoint it was made from (`pspnet "
                             "export CKPT --format onnx`)"),  # not "give it the checkpoint", which it refuses

    ("m.safetensors", "onnxruntime", "m.safetensors: a checkpoint, and --backend onnxruntime runs an ONNX graph "
                                     "(.onnx); export one with `pspnet export"),
    ("m.bin", "onnxruntime", "m.bin: a checkpoint, and --backend onnxruntime"),  # told by its content
    ("pspnet_r50-d8_4xb4-80k_ade20k-512x512", "onnxruntime", "a published model, and --backend onnxruntime runs"),
])
def test_a_file_the_chosen_engine_does_not_run_names_the_engine_that_does(tmp_path, monkeypatch, capsys, given,
                                                                          backend, expected) -> None:
    """Before loading anything (ONNX Runtime would say 'Protobuf parsing failed' of a checkpoint)."""
    import pspnet
    from pspnet.cli.main import main

    monkeypatch.chdir(tmp_path)
    for name in ("m.safetensors", "m.bin"):
        pspnet.save(pspnet.PSPNet(3, backbone="resnet18", output_stride=16), tmp_path / name)
    for name in ("m.onnx", "m.xml"):
        (tmp_path / name).write_text("not read")
    from PIL import Image

    Image.new("RGB", (20, 16)).save(tmp_path / "a.png")
    assert main(["predict", given, "a.png", "--out", "o", "--backend", backend]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "o").exists()
