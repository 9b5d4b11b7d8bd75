"""Training on a device and under a time limit: where steps ran is recorded, a time-limited run resumes exactly."""

import json

import pytest
import torch

from steerdiff import checkpoint as ckpt
from steerdiff.cli import main
from steerdiff.training import TrainConfig, train


def cfg(**kw):
    base = dict(dataset="digits8", net="tiny", steps=6, batch_size=16, checkpoint_every=3, warmup=2, dropout=0.1)
    base.update(kw)
    return TrainConfig(**base)


def devices(path):
    return json.loads((path / "state.json").read_text())["devices"]


def test_time_limited_run_stops_with_a_checkpoint_and_resumes_exactly(tmp_path):
    full = train(cfg(), tmp_path / "full", progress=False)
    cut = train(cfg(), tmp_path / "cut", progress=False, time_limit=1e-9)  # over the limit after one step
    assert cut["step"] == 1 and ckpt.read_checkpoint(tmp_path / "cut", with_state=True)[4]["step"] == 1
    rest = train(cfg(), tmp_path / "cut", progress=False)
    assert rest["losses"] == full["losses"]
    a = ckpt.read_checkpoint(tmp_path / "full", with_state=True)
    b = ckpt.read_checkpoint(tmp_path / "cut", with_state=True)
    for k in a[3]:
        torch.testing.assert_close(a[3][k], b[3][k], rtol=0, atol=0)
    assert devices(tmp_path / "cut") == devices(tmp_path / "full") == [{"device": "cpu", "steps": [0, 6]}]


def test_state_records_which_steps_ran_on_which_device(tmp_path):
    run = tmp_path / "run"
    train(cfg(steps=3), run, progress=False)
    meta = json.loads((run / "state.json").read_text())
    meta["devices"] = [{"device": "cuda", "steps": [0, 3]}]  # as if the first part ran on a GPU
    (run / "state.json").write_text(json.dumps(meta))
    train(cfg(steps=6), run, progress=False)
    assert devices(run) == [{"device": "cuda", "steps": [0, 3]}, {"device": "cpu", "steps": [3, 6]}]


def test_checkpoint_written_before_device_segments_existed_reads_as_cpu(tmp_path):
    run = tmp_path / "run"
    train(cfg(steps=3), run, progress=False)
    meta = json.loads((run / "state.json").read_text())
    del meta["devices"]
    (run / "state.json").write_text(json.dumps(meta))
    train(cfg(steps=6), run, progress=False)
    assert devices(run) == [{"device": "cpu", "steps": [0, 6]}]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--time-limit", "0"], "--time-limit must be a positive number of minutes"),
        (["--time-limit", "inf"], "--time-limit must be a positive number of minutes"),
        (["--device", "cuda:99"], "--device cuda:99"),
        (["--device", "tpu"], "--device 'tpu'"),
    ],
)
def test_train_refuses_bad_device_and_time_limit(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    rc = main(["train", "--dataset", "digits8", "--net", "tiny", "--steps", "2", "--out", str(out), *flags])
    assert rc == 2 and message in capsys.readouterr().err
    assert not out.exists()


def test_cli_time_limit_says_how_to_continue(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--dataset", "digits8", "--net", "tiny", "--steps", "5", "--batch-size", "16", "--quiet"]
    assert main([*args, "--out", str(out), "--time-limit", "1e-9"]) == 0
    assert "trained to step 1 (time limit reached; run the same command to continue)" in capsys.readouterr().out
    assert main([*args, "--out", str(out)]) == 0
    assert "trained to step 5; checkpoint" in capsys.readouterr().out
