import pytest
import yaml

from pspnet.configfile import from_dict
from pspnet.data.config import DataConfig
from pspnet.data.datasets import build_dataset
from pspnet.errors import PSPNetError


def test_data_config_loads_from_yaml_with_types_coerced():
    text = """
dataset: camvid
root: /data/camvid
crop_size: [360, 480]
scale_range: [0.5, 2]
workers: 2
"""
    cfg = from_dict(DataConfig, yaml.safe_load(text), "test.yaml")
    assert cfg.crop_size == (360, 480) and cfg.scale_range == (0.5, 2.0) and str(cfg.root) == "/data/camvid"


@pytest.mark.parametrize("bad,message", [
    ({"dataset": "imagenet"}, "expected one of camvid"),
    ({"dataset": "lists"}, "set data.num_classes"),
    ({"dataset": "camvid", "num_classes": 12}, "camvid has 11 classes"),
    ({"dataset": "camvid", "blur": 2}, "data.blur = 2.0; expected a probability"),
    ({"dataset": "camvid", "scale_range": [2, 1]}, "expected 0 < min <= max"),
])
def test_bad_settings_name_the_setting(bad, message):
    with pytest.raises(PSPNetError, match=message):
        from_dict(DataConfig, bad, "test.yaml")


def test_known_dataset_without_prepared_lists_says_to_run_prepare(tmp_path):
    with pytest.raises(PSPNetError, match="run `pspnet data prepare camvid"):
        build_dataset(DataConfig(dataset="camvid", root=tmp_path), "train")


def test_a_relative_root_beside_the_config_run_from_elsewhere_names_both_places(tmp_path, monkeypatch, capsys):
    """data.root is read from the current folder (as mmsegmentation's data_root): a config kept next to its data
    and run from another folder gets one line saying where the data is and the two ways to reach it."""
    from synthetic_data import save_image, save_label

    from pspnet.cli.main import main
    from pspnet.train.config import load_train_config

    project = tmp_path / "project"
    for split in ("train", "val"):
        save_image(project / "mydata" / "images" / split / "a.png", 4, 4)
        save_label(project / "mydata" / "labels" / split / "a.png", [[0, 1, 1, 0]] * 4)
    config = project / "my.yaml"
    config.write_text("data:\n  dataset: folders\n  root: mydata\n  num_classes: 2\n")
    monkeypatch.chdir(tmp_path)
    expected = (f"{config}: data.root = mydata: no such folder in the current folder ({tmp_path}), which relative "
                f"paths start from; {project / 'mydata'} is beside the config: run from {project}, or give "
                f"data.root={project / 'mydata'}")
    assert main(["data", "check", "--config", str(config), "--no-progress"]) == 2
    assert capsys.readouterr().err == f"pspnet data: error: {expected}\n"
    with pytest.raises(PSPNetError) as e:
        load_train_config(config)
    assert str(e.value) == expected
    assert main(["data", "check", "--config", str(config), "--no-progress", f"data.root={project / 'mydata'}"]) == 0
    monkeypatch.chdir(project)
    assert main(["data", "check", "--config", "my.yaml", "--no-progress"]) == 0
    assert str(load_train_config("my.yaml").data.root) == "mydata"


def test_a_runs_config_used_from_another_folder_names_where_the_run_was_started(tmp_path, monkeypatch, capsys):
    """`pspnet eval RUN` reads the run's config.yaml, whose relative data.root is that of the folder the run was
    started in (train.out_dir: runs/x): from elsewhere, one line says where; `--resume` is told to run from there, as
    its relative out_dir is read from there too."""
    import yaml
    from synthetic_data import save_image, save_label

    import pspnet
    from pspnet.cli.main import main
    from pspnet.train.config import load_train_config

    project = tmp_path / "project"
    for split in ("train", "val"):
        save_image(project / "mydata" / "images" / split / "a.png", 4, 4)
        save_label(project / "mydata" / "labels" / split / "a.png", [[0, 1, 1, 0]] * 4)
    run = project / "runs" / "x"
    run.mkdir(parents=True)
    settings = {"model": {"backbone": "resnet18", "num_classes": 2}, "train": {"out_dir": "runs/x"},
                "data": {"dataset": "folders", "root": "mydata", "num_classes": 2}}
    (run / "config.yaml").write_text(yaml.safe_dump(settings))
    pspnet.save(pspnet.PSPNet(2, backbone="resnet18", output_stride=16).eval(), run / "best.safetensors")
    (run / "metrics.jsonl").write_text("")  # what makes it a run's folder, with config.yaml
    monkeypatch.chdir(tmp_path)
    where = (f"{run / 'config.yaml'}: data.root = mydata: no such folder in the current folder ({tmp_path}), which "
             f"relative paths start from; {project / 'mydata'} is where the run was started: run from {project}")
    assert main(["eval", str(run), "--backend", "torch", "--quiet"]) == 2
    assert capsys.readouterr().err.endswith(f"pspnet eval: error: {where}, or give data.root={project / 'mydata'}\n")
    with pytest.raises(PSPNetError) as e:
        load_train_config(run / "config.yaml")
    assert str(e.value) == f"{where} (train.out_dir runs/x is read from there too)"
    assert main(["eval", str(run), "--backend", "torch", "--quiet", f"data.root={project / 'mydata'}"]) == 0
