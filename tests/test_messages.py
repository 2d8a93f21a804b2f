"""Config mistakes name the key and where its value came from; warnings for settings that cannot pay off."""

import sys
from pathlib import Path

import pytest
import torch
import yaml

from pspnet.device import bf16_warning
from pspnet.errors import PSPNetError
from pspnet.train.config import load_train_config
from pspnet.train.runlog import RunLog

CONFIG = {"model": {"backbone": "resnet18"}, "data": {"dataset": "folders", "root": "d", "num_classes": 3},
          "train": {"lr": 0.01, "batch_size": 2}}


def write(tmp_path, **changes) -> str:
    data = yaml.safe_load(yaml.safe_dump(CONFIG))
    for key, value in changes.items():
        section, name = key.split("__")
        data[section][name] = value
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def line_of(path: str, text: str) -> int:
    return next(n for n, line in enumerate(open(path), 1) if text in line)


def test_a_bad_value_in_the_file_names_the_file_and_line(tmp_path) -> None:
    path = write(tmp_path, train__lr=-0.5)
    with pytest.raises(PSPNetError, match=rf"^{path}:{line_of(path, 'lr:')}: train.lr = -0.5; expected a positive"):
        load_train_config(path)


def test_a_bad_override_names_the_override(tmp_path) -> None:
    path = write(tmp_path)
    with pytest.raises(PSPNetError, match=r"^command line train.batch_size=many: train.batch_size = 'many'"):
        load_train_config(path, ["train.batch_size=many"])
    with pytest.raises(PSPNetError, match=r"^command line model.backbone=resnet7: model.backbone: unknown backbone"):
        load_train_config(path, ["model.backbone=resnet7"])


def test_a_bad_override_of_one_of_two_related_settings_names_that_one_where_it_was_set(tmp_path) -> None:
    path = write(tmp_path, train__epochs=20)  # in the file; the override is the bad one
    with pytest.raises(PSPNetError, match=r"^command line train.iterations=-5: train.iterations = -5; expected 0 or "
                                          "more$"):
        load_train_config(path, ["train.iterations=-5"])


def test_a_bad_protocol_override_names_the_override_not_the_files_val_section(tmp_path) -> None:
    """InferenceSettings says "crop size (0, 0)", not the key: the error was put on the file's `val:` line."""
    path = write(tmp_path)
    with pytest.raises(PSPNetError, match=r"^command line val.crop_size=0: val.crop_size: crop size \(0, 0\): "):
        load_train_config(path, ["val.crop_size=0"])
    with pytest.raises(PSPNetError, match=r"^command line val.base_size=-3: val.base_size: base size -3: "):
        load_train_config(path, ["val.base_size=-3"])


@pytest.mark.parametrize("override, expected", [
    ("train.weight_decay=-1", "train.weight_decay = -1.0; expected 0 or more"),  # torch's SGD: a traceback
    ("train.momentum=-1", "train.momentum = -1.0; expected 0 ≤ momentum < 1"),
    ("train.momentum=2", "train.momentum = 2.0; expected 0 ≤ momentum < 1"),  # diverged silently
    ("train.power=-1", "train.power = -1.0; expected 0 or more (0: a constant lr)"),  # the lr grew
    ("train.head_lr_mult=-10", "train.head_lr_mult = -10.0; expected a positive multiplier of the lr"),
    ("train.aux_weight=-0.4", "train.aux_weight = -0.4; expected 0 or more"),
    ("train.lr=nan", "train.lr = nan; expected a positive learning rate"),
    ("train.val_every=-5", "train.val_every = -5; expected iterations between validations, 0 (only at the end) or "
                           "-1 (never)"),
    ("train.val_images=-3", "train.val_images = -3; expected 0 (all) or a number of val images"),  # NaN scores
])
def test_a_training_setting_out_of_its_range_names_the_override(tmp_path, override, expected) -> None:
    path = write(tmp_path)
    with pytest.raises(PSPNetError) as e:
        load_train_config(path, [override])
    assert str(e.value) == f"command line {override}: {expected}"


def test_an_image_given_as_train_init_says_what_train_init_takes(tmp_path) -> None:
    """Not predict's hint about the order of its arguments."""
    path = write(tmp_path)
    image = tmp_path / "photo.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(PSPNetError) as e:
        load_train_config(path, [f"train.init={image}"])
    assert str(e.value) == (f"command line train.init={image}: train.init: {image}: an image, not a model's weights (a "
                            ".safetensors or .pth file, a training run's folder or a published model's name)")


def test_a_class_count_other_than_the_datas_is_named_before_training(tmp_path) -> None:
    path = write(tmp_path)  # folders data of 3 classes
    with pytest.raises(PSPNetError, match=r"^command line model.num_classes=5: model.num_classes = 5, but the data "
                                          r"\(folders\) has 3 classes \(class_0, class_1, class_2\); leave "
                                          "model.num_classes out to take the data's$"):
        load_train_config(path, ["model.num_classes=5"])
    assert load_train_config(path, ["model.num_classes=3"]).model.num_classes == 3


def test_list_settings_take_comma_separated_numbers_as_the_command_line_options_do(tmp_path) -> None:
    cfg = load_train_config(write(tmp_path), ["val.scales=0.5,1", "data.crop_size=100,120", "model.bins=1,2,4"])
    assert (list(cfg.val.scales), list(cfg.data.crop_size), list(cfg.model.bins)) == ([0.5, 1], [100, 120], [1, 2, 4])
    with pytest.raises(PSPNetError, match=r"^command line val.scales=0.5,x: val.scales = '0.5,x'; expected a number"):
        load_train_config(write(tmp_path), ["val.scales=0.5,x"])


def test_a_setting_that_may_be_left_out_says_null_is_none(tmp_path) -> None:
    path = write(tmp_path, train__imagenet=False)  # meant as "no ImageNet weights"
    with pytest.raises(PSPNetError, match=rf"^{path}:\d+: train.imagenet = False; expected a string, or null for "
                                          "none$"):
        load_train_config(path)


def test_an_unknown_key_in_the_file_names_its_line(tmp_path) -> None:
    path = write(tmp_path, train__learning_rate=0.1)
    line = line_of(path, "learning_rate")
    with pytest.raises(PSPNetError, match=rf"^{path}:{line}: unknown key train.learning_rate"):
        load_train_config(path)


def test_a_mistyped_key_or_config_name_says_what_was_meant(tmp_path) -> None:
    path = Path(write(tmp_path))
    with pytest.raises(PSPNetError, match=r"^command line train.iter=2: unknown key train.iter \(did you mean "
                                          r"train.iterations\?\); expected one of"):
        load_train_config(path, ["train.iter=2"])  # the start of one key
    with pytest.raises(PSPNetError, match=r"unknown key data.crop_szie \(did you mean data.crop_size\?\)"):
        load_train_config(path, ["data.crop_szie=9"])  # a typo
    with pytest.raises(PSPNetError, match=r"unknown key train.learning_rate; expected one of"):
        load_train_config(path, ["train.learning_rate=0.1"])  # nothing close: no guess
    with pytest.raises(PSPNetError, match=r"^command line trian.lr=0.1: unknown key trian \(did you mean train\?\)"):
        load_train_config(path, ["trian.lr=0.1"])  # a mistyped group: the override, not the file, is named
    with pytest.raises(PSPNetError, match=rf"^{path.with_suffix('.yml')}: cannot read config \(No such file or "
                                          rf"directory\); {path} exists$"):
        load_train_config(path.with_suffix(".yml"))


def test_a_yaml_syntax_error_names_the_line_and_a_tab_says_so(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  backbone: resnet18\n  bins: [1, 2\ndata:\n  dataset: folders\n")
    with pytest.raises(PSPNetError, match=rf"^{path}:4: not valid YAML \(while parsing a flow sequence, expected "):
        load_train_config(str(path))
    path.write_text("model:\n\tbackbone: resnet18\n")
    with pytest.raises(PSPNetError, match=rf"^{path}:2: not valid YAML .*; YAML indents with spaces, not tabs$"):
        load_train_config(str(path))


def test_a_gpu_asked_for_on_a_machine_without_one_names_the_setting_to_change(tmp_path, monkeypatch) -> None:
    import pspnet
    from pspnet.distributed import setup

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PSPNetError, match=r"^device 'cuda' asked for, .*; use --device cpu$"):
        setup("cuda")  # eval, predict
    with pytest.raises(PSPNetError, match=r"^device 'cuda:1' asked for, .*; use train.device=cpu$"):
        pspnet.fit(write(tmp_path, train__device="cuda:1", train__out_dir=str(tmp_path / "run")), progress=False)


def test_a_folder_given_as_the_config_names_the_configs_in_it(tmp_path) -> None:
    (tmp_path / "configs").mkdir()
    with pytest.raises(PSPNetError, match=rf"^{tmp_path / 'configs'}: a folder, not a config file$"):
        load_train_config(tmp_path / "configs")
    for name in ("b.yaml", "a.yml", "notes.txt"):
        (tmp_path / "configs" / name).write_text("model: {}\n")
    with pytest.raises(PSPNetError, match=rf"^{tmp_path / 'configs'}: a folder, not a config file; it holds a.yml, "
                                          rf"b.yaml: e.g. {tmp_path / 'configs' / 'a.yml'}$"):
        load_train_config(tmp_path / "configs")
    (tmp_path / "run").mkdir()  # a training run's folder
    (tmp_path / "run" / "config.yaml").write_text("model: {}\n")
    with pytest.raises(PSPNetError, match=rf"^{tmp_path / 'run'}: a folder, not a config file; the config in it is "
                                          rf"{tmp_path / 'run' / 'config.yaml'}$"):
        load_train_config(tmp_path / "run")


def test_a_key_set_twice_is_an_error_naming_both_lines(tmp_path) -> None:
    path = tmp_path / "run.yaml"  # YAML itself keeps the second value and says nothing
    path.write_text(yaml.safe_dump(CONFIG, sort_keys=False).replace("  lr: 0.01\n", "  lr: 0.01\n  lr: 0.1\n"))
    first = line_of(str(path), "lr: 0.01")
    with pytest.raises(PSPNetError, match=rf"^{path}:{first + 1}: train.lr is set twice \(lines {first} and "
                                          rf"{first + 1}\); keep one$"):
        load_train_config(str(path))


def test_a_crop_size_of_one_number_is_a_square_as_on_the_command_line(tmp_path) -> None:
    config = load_train_config(write(tmp_path, data__crop_size=97), ["val.crop_size=65"])
    assert config.data.crop_size == (97, 97) and config.val.crop_size == (65, 65)
    with pytest.raises(PSPNetError, match=r"data.scale_range = \[1\]; expected 2 values"):  # a range stays two
        load_train_config(write(tmp_path, data__scale_range=1))
    with pytest.raises(PSPNetError, match=r"data.crop_size = \[True\]; expected 2 values"):
        load_train_config(write(tmp_path, data__crop_size=True))


def test_bf16_on_a_cpu_where_it_is_slower_than_fp32_warns(fake_cpu) -> None:
    cpu = torch.device("cpu")
    fake_cpu("AuthenticAMD", "avx2")
    assert "emulated" in bf16_warning(cpu, "bf16")
    assert bf16_warning(cpu, "fp32") is None
    fake_cpu("AuthenticAMD", "avx2", "avx512_bf16")
    assert bf16_warning(cpu, "bf16") is None
    fake_cpu("GenuineIntel", "avx2", "avx512_bf16", "amx_bf16")
    assert bf16_warning(cpu, "bf16") is None
    fake_cpu("GenuineIntel", "avx2", "avx512_bf16")  # bf16 units no faster than fp32's: measured 0.70–0.87× fp32
    assert bf16_warning(cpu, "bf16") == (
        "this CPU (avx512_bf16 without AMX on GenuineIntel) runs bf16 slower than fp32 (one bf16 dot-product port "
        "against two fp32 FMA ports: measured 0.70–0.84× fp32 for inference, 0.75–0.87× for a training step, "
        "BENCHMARKS.md); use fp32 here")
    fake_cpu("")  # flags unreadable (not Linux): nothing said
    assert bf16_warning(cpu, "bf16") is None


def test_tensorboard_asked_for_but_missing_warns_once(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    log = RunLog(tmp_path, tensorboard=True)
    log.open()
    log.record(1, {"loss": 1.0})
    log.tensorboard_scalars(1, {"loss": 1.0})
    log.close()
    err = capsys.readouterr().err
    assert err.count("tensorboard is not installed") == 1 and "metrics.jsonl" in err
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import numpy as np
    from PIL import Image

    import pspnet

    tmp = tmp_path_factory.mktemp("mistakes")
    torch.manual_seed(0)
    pspnet.save(pspnet.PSPNet(3, backbone="resnet18", output_stride=16), tmp / "m.safetensors")
    for folder in ("img", "lab"):
        (tmp / folder).mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp / "img" / "a.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp / "lab" / "a.png")
    (tmp / "binary.yaml").write_bytes(bytes(range(256)))
    (tmp / "notes.txt").write_text("one path only\n")
    return tmp


MISTAKES = {
    "a binary config": ["train", "--config", "{t}/binary.yaml"],
    "a missing config": ["train", "--config", "{t}/none.yaml"],
    "a malformed list": ["eval", "{t}/m.safetensors", "--list", "{t}/notes.txt"],
    "a text file as checkpoint": ["eval", "{t}/notes.txt", "--images", "{t}/img", "--labels", "{t}/lab"],
    "a negative sample count": ["eval", "{t}/m.safetensors", "--images", "{t}/img", "--labels", "{t}/lab",
                                "--samples", "-1"],
    "negative workers": ["eval", "{t}/m.safetensors", "--images", "{t}/img", "--labels", "{t}/lab", "--workers", "-2"],
    "a zero batch size": ["predict", "{t}/m.safetensors", "{t}/img", "--out", "{t}/o", "--batch-size", "0"],
    "an unknown device": ["predict", "{t}/m.safetensors", "{t}/img", "--out", "{t}/o", "--device", "tpu"],
    "a text file for info": ["info", "{t}/notes.txt"],
    "an unsupported opset": ["export", "{t}/m.safetensors", "--format", "onnx", "--out", "{t}/m.onnx", "--opset", "3"],
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_user_mistake_is_one_line_without_a_traceback(tiny, capsys, mistake) -> None:
    from pspnet.cli.main import main

    code = main([arg.format(t=tiny) for arg in MISTAKES[mistake]])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err and "\x1b" not in err, err


@pytest.mark.parametrize(("argv", "expected"), [
    (["predict", "m.safetensors", "a.png", "--out", "o", "--overwite"],
     "pspnet predict: error: unrecognized argument --overwite; did you mean --overwrite?"),
    (["data", "check", "--dataset", "camvid", "--rot", "d"],
     "pspnet data check: error: unrecognized argument --rot; did you mean --root?"),
    (["eval", "m.safetensors", "--config", "c.yaml", "data.root=d", "camvid"],
     "pspnet eval: error: unrecognized argument camvid; `pspnet eval --help` lists what it takes"),
    (["quantize", "m.safetensors", "--calib", "d", "--out", "q", "--bogus"],  # not "did you mean --out?"
     "pspnet quantize: error: unrecognized argument --bogus; `pspnet quantize --help` lists what it takes"),
    (["train", "--config", "c.yaml", "--print-confg"],
     "pspnet train: error: unrecognized argument --print-confg; did you mean --print-config?"),
    (["models", "--json", "--bogus"],
     "pspnet models: error: unrecognized argument --bogus; `pspnet models --help` lists what it takes"),
    (["info", "m.safetensors", "a=1"],  # a command without key=value overrides
     "pspnet info: error: unrecognized argument a=1; `pspnet info --help` lists what it takes"),
])
def test_an_argument_the_command_does_not_take_is_one_line_naming_the_command(capsys, argv, expected) -> None:
    """Not argparse's usage of the top-level parser and 'pspnet: error: unrecognized arguments'."""
    from pspnet.cli.main import main

    assert main(argv) == 2
    assert capsys.readouterr().err == expected + "\n"


@pytest.mark.parametrize(("argv", "expected"), [
    (["predict", "m.safetensors", "x.png"], "pspnet predict: error: the following arguments are required: --out"),
    (["predict", "m", "x.png", "--out", "o", "--scales", "a"], "pspnet predict: error: argument --scales: invalid "
                                                               "float value: 'a'"),
    (["data", "prepare", "nope"], "pspnet data prepare: error: argument dataset: invalid choice: 'nope' (choose from "
                                  "'camvid', 'ade20k', 'cityscapes', 'voc2012')"),
    ([], "pspnet: error: the following arguments are required: COMMAND"),
])
def test_argparses_own_errors_are_one_line_without_the_usage(capsys, argv, expected) -> None:
    from pspnet.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    prog = expected.split(": error")[0]
    assert capsys.readouterr().err == f"{expected}; `{prog} --help` lists what it takes\n"


def test_an_input_taken_as_a_value_of_the_option_before_it_says_where_the_option_goes(tmp_path, capsys) -> None:
    from pspnet.cli.main import main

    image = tmp_path / "x.png"
    image.write_bytes(b"")
    with pytest.raises(SystemExit):
        main(["predict", "m.safetensors", "--outputs", "labels", str(image), "--out", "o"])
    assert capsys.readouterr().err == (
        f"pspnet predict: error: argument --outputs: invalid choice: '{image}' (choose from 'labels', 'color', "
        f"'overlay', 'confidence'); {image} is an input, taken as one more value of --outputs: put --outputs and its "
        "values after the inputs\n")


@pytest.mark.parametrize(("option", "expected"), [
    (["--crop-size", "0"], "--crop-size: crop size (0, 0): expected positive"),
    (["--scales", "-1"], "--scales: scales [-1.0]: expected one or more positive"),
    (["--batch-size", "0"], "--batch-size: batch size 0: expected at least 1")])
@pytest.mark.parametrize("command", ["predict", "eval"])
def test_a_bad_protocol_option_is_said_before_the_network_loads(tiny, capsys, command, option, expected) -> None:
    from pspnet.cli.main import main

    data = ["{t}/img", "--out", "{t}/o"] if command == "predict" else ["--images", "{t}/img", "--labels", "{t}/lab"]
    assert main([command, f"{tiny}/m.safetensors", *(a.format(t=tiny) for a in data), *option]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pspnet {command}: error: {expected}") and len(err.splitlines()) == 1, err  # no network:


def test_eval_options_that_would_change_nothing_are_refused(tiny, capsys) -> None:
    from pspnet.cli.main import main

    assert main(["eval", f"{tiny}/m.safetensors", "--images", f"{tiny}/img", "--labels", f"{tiny}/lab",
                 "--ignore-index", "300"]) == 2  # scored with nothing ignored, without a word
    assert capsys.readouterr().err == "pspnet eval: error: --ignore-index 300: expected 0..255 (labels are 8-bit)\n"
    assert main(["eval", f"{tiny}/m.safetensors", "--images", f"{tiny}/lab", "--labels", f"{tiny}/lab"]) == 2
    assert ("--labels " + f"{tiny}/lab: {tiny}/lab/") in (err := capsys.readouterr().err) and (
        "would be scored as its own label" in err)  # label PNGs were scored as photos, without a word
    assert main(["eval", f"{tiny}/m.safetensors", "--list", f"{tiny}/val.txt", "--label-suffix", ".jpg"]) == 2
    assert capsys.readouterr().err == ("pspnet eval: error: --label-suffix .jpg: pairs --images with --labels; a "
                                       "--list names each label itself, and a --config's folders take "
                                       "data.label_suffix\n")


def test_converting_a_training_checkpoint_says_it_needs_no_conversion(tmp_path, capsys) -> None:
    from pspnet.checkpoint import TRAINING_FORMAT
    from pspnet.cli.main import main

    saved = tmp_path / "iter_0000003.pt"
    torch.save({"format": TRAINING_FORMAT, "iteration": 3, "model": {}}, saved)
    assert main(["convert", "--from", "semseg", str(saved), str(tmp_path / "o.safetensors")]) == 2
    assert capsys.readouterr().err == (f"pspnet convert: error: {saved}: a checkpoint of `pspnet train` (iteration 3), "
                                       "which needs no conversion: every command and pspnet.load read it as it is "
                                       f"(`pspnet info {saved}`)\n")


@pytest.mark.parametrize(("option", "expected"), [
    (["--backbones", "resnet7"], "--backbones resnet7: unknown; expected some of resnet18, resnet34, resnet50"),
    (["--sizes", "0"], "--sizes 0: expected positive sizes"),
    (["--warmup", "-1"], "--warmup -1: expected 0 or more"),
    (["--threads", "0"], "--threads 0: expected at least 1"),  # was torch's RuntimeError, a traceback
    (["--whole", "0", "0"], "--whole 0 0: expected a positive height and width"),  # a traceback too
])
def test_a_bad_bench_option_is_one_line_before_anything_is_measured(capsys, option, expected) -> None:
    from pspnet.cli.main import main

    assert main(["bench", "--device", "cpu", *option]) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"pspnet bench: error: {expected}") and len(err.splitlines()) == 1 and not out, (out, err)


def test_out_of_memory_anywhere_else_is_one_line_with_what_holds_less(monkeypatch, capsys):
    """Where no step of a command answers it (the benchmark times the batch it is given), memory the system refuses
    is one line; another RuntimeError is a bug, with its traceback."""
    import pspnet.cli.bench as bench
    from pspnet.cli.main import main

    def refused(args) -> int:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 8589934592 bytes. Error code 12 (Cannot allocate memory)\nmore")

    monkeypatch.setattr(bench, "run", refused)
    assert main(["bench"]) == 2
    assert capsys.readouterr().err == (
        "pspnet bench: error: out of memory ([enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
        "allocate memory: you tried to allocate 8589934592 bytes. Error code 12 (Cannot allocate memory)); a smaller "
        "--batch-size or --sizes holds less\n")

    def bug(args) -> int:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(bench, "run", bug)
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        main(["bench"])


def test_a_process_of_the_job_that_died_is_one_line_in_the_others(monkeypatch, capsys):
    """A rank killed under torchrun left the other printing 30 lines of gloo's traceback ('GLHF')."""
    import pspnet.cli.train as train
    from pspnet.cli.main import main

    def lost(args) -> int:
        raise RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:29840: "
                           "Connection reset by peer\nException raised from ...")

    monkeypatch.setattr(train, "run", lost)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--config", "x.yaml"]) == 2
    assert capsys.readouterr().err == (
        "pspnet train: error: another process of the job has stopped ([../third_party/gloo/gloo/transport/tcp/pair.cc"
        ":537] Read error [127.0.0.1]:29840: Connection reset by peer); this one stops too; `--resume` continues from "
        "the last checkpoint\n")
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process: no peer to lose, a bug's traceback
    with pytest.raises(RuntimeError, match="Connection reset by peer"):
        main(["train", "--config", "x.yaml"])


def test_a_path_one_letter_off_names_the_one_that_exists(tmp_path, capsys, monkeypatch) -> None:
    from pspnet.cli.main import main
    from pspnet.files import near_miss

    (tmp_path / "runs" / "camvid").mkdir(parents=True)
    (tmp_path / "runs" / "camvid" / "best.safetensors").write_bytes(b"")
    (tmp_path / "images").mkdir()
    assert near_miss(tmp_path / "runs" / "camvid" / "best.safetensor") == (
        f"; did you mean {tmp_path / 'runs' / 'camvid' / 'best.safetensors'}?")
    assert near_miss(tmp_path / "runs" / "camvd" / "best.safetensors") == (  # a folder's name in the middle
        f"; did you mean {tmp_path / 'runs' / 'camvid' / 'best.safetensors'}?")
    assert near_miss(tmp_path / "runs" / "camvd" / "final.safetensors") == ""  # the mended path does not exist
    assert near_miss(tmp_path / "elsewhere" / "model.pt") == ""
    from pspnet.files import NEAR_MISS_NAMES

    for i in range(NEAR_MISS_NAMES + 1):  # a dataset's folder of images: not spelled against (it takes seconds)
        (tmp_path / "images" / f"frame_{i:05d}.png").write_bytes(b"")
    assert near_miss(tmp_path / "images" / "frame_00001.pn") == ""
    monkeypatch.chdir(tmp_path)  # relative paths, as users type them
    from PIL import Image

    Image.new("RGB", (9, 9)).save(tmp_path / "images" / "a.png")
    assert main(["predict", "runs/camvid/best.safetensor", "images", "--out", "o"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "runs/camvid/best.safetensor: no such checkpoint file; did you mean runs/camvid/best.safetensors?")
    assert main(["score", "--pred", "imagse", "--gt", "images", "--num-classes", "2"]) == 2
    assert capsys.readouterr().err.strip().endswith("imagse: no such prediction folder; did you mean images?")


def test_a_home_relative_path_in_a_config_is_the_home_folders(tmp_path, monkeypatch) -> None:
    """`data.root: ~/ds` and `train.out_dir: ~/runs/x` were taken literally: a folder named `~` was made in the
    working folder (which `rm -rf ~` then meant the home folder)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = write(tmp_path)
    cfg = load_train_config(path, ["data.root=~/ds", "train.out_dir=~/runs/x"])
    assert cfg.data.root == tmp_path / "home" / "ds" and cfg.train.out_dir == tmp_path / "home" / "runs" / "x"


@pytest.mark.parametrize("variable", ["WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"])
def test_a_torchrun_variable_with_no_number_is_one_line(variable, monkeypatch) -> None:
    """Left over in a shell or a pod's spec: int()'s ValueError traceback."""
    from pspnet.device import cores_shared
    from pspnet.distributed import launched_processes, setup

    monkeypatch.setenv(variable, "abc")
    message = rf"^{variable}=abc: expected a whole number \(torchrun sets it"
    with pytest.raises(PSPNetError, match=message):
        if variable == "LOCAL_WORLD_SIZE":
            cores_shared()
        elif variable == "LOCAL_RANK":
            setup("cpu")
        elif variable == "WORLD_SIZE":
            launched_processes()
        else:
            from pspnet.cli.main import other_process_of_torchrun

            monkeypatch.setenv("WORLD_SIZE", "2")
            other_process_of_torchrun("export")


def test_a_symbolic_link_to_nowhere_as_an_output_is_said_and_not_replaced(tmp_path) -> None:
    """A folder option given a dangling link said "File exists"; a file option replaced the link without --overwrite."""
    from pspnet.files import check_output_file, check_output_folder

    (tmp_path / "dang").symlink_to(tmp_path / "nowhere" / "deeper")
    with pytest.raises(PSPNetError, match=r"^--out .*dang: a symbolic link to .*nowhere/deeper, which does not exist"):
        check_output_folder(tmp_path / "dang", "--out")
    (tmp_path / "m.onnx").symlink_to(tmp_path / "gone.onnx")
    with pytest.raises(PSPNetError, match=r"^--out .*m\.onnx: exists; pass --overwrite"):
        check_output_file(tmp_path / "m.onnx", "--out", overwrite=False)
    check_output_file(tmp_path / "m.onnx", "--out", overwrite=True)
