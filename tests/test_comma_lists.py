"""Options that take several values read them comma-separated too, as configs and other tools write lists."""

import pytest

from pspnet.cli.comma_lists import split_comma_lists
from pspnet.cli.main import build_parser, main


def parsed(*argv: str):  # noqa: ANN201
    parser = build_parser(argv[0])
    return parser.parse_args(split_comma_lists(parser, list(argv)))


def test_list_options_take_comma_separated_values_as_separate_words() -> None:
    spaced = parsed("predict", "m.safetensors", "a,b.png", "--out", "o", "--scales", "0.5", "1", "--crop-size", "5",
                    "7", "--outputs", "labels", "color")
    commas = parsed("predict", "m.safetensors", "a,b.png", "--out", "o", "--scales", "0.5,1", "--crop-size=5,7",
                    "--outputs", "labels,color")
    assert commas.scales == spaced.scales == [0.5, 1.0]
    assert commas.crop_size == spaced.crop_size == [5, 7]
    assert commas.outputs == spaced.outputs == ["labels", "color"]
    assert commas.inputs == ["a,b.png"]  # a file name with a comma stays one input
    assert parsed("bench", "--sizes", "473,713").sizes == [473, 713]
    assert parsed("export", "m", "--format", "onnx", "--out", "m.onnx", "--static-size", "473,473").static_size == [
        473, 473]


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--scales", "0.5,x", "argument --scales: invalid float value: '0.5,x'"),
    ("--outputs", "labels,colour", "argument --outputs: invalid choice: 'labels,colour'"),
])
def test_a_list_with_a_bad_value_is_argparses_error_naming_it(capsys, option, value, expected) -> None:
    with pytest.raises(SystemExit):
        main(["predict", "m.safetensors", "x.png", "--out", "o", option, value])
    assert expected in capsys.readouterr().err
