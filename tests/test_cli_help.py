"""Every CLI flag says what it does, and a default is shown once."""

from __future__ import annotations

import importlib
import re

import pytest

CLIS = ["detect.val", "detect.predict", "detect.train.__main__", "analysis.__main__", "prune.__main__",
        "deploy.export", "deploy.bench", "deploy.trt", "detect.data.__main__", "detect.model", "detect.data.synthetic",
        "detect.tune.__main__", "detect.kfold.__main__", "detect.pseudo.__main__"]


@pytest.mark.parametrize("module", CLIS)
def test_every_flag_has_help_and_one_default(module, capsys):
    with pytest.raises(SystemExit) as e:
        importlib.import_module(module).main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    options = re.split(r"\n  (?=-)", text.split("options:", 1)[1])[1:]
    assert options, text
    for option in options:
        head, *rest = option.split("\n")
        described = len(re.split(r"\s{2,}", head.strip(), maxsplit=1)) == 2 or any(line.strip() for line in rest)
        assert described, f"{module}: {head.strip()} has no help text"
        assert option.count("(default") <= 1, f"{module}: {head.strip()} shows its default twice"
