"""Particle sets across processes: torchrun (gloo, CPU) gives the one-process particles."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from steerdiff import distributed
from steerdiff.cli import main
from steerdiff.errors import SteerdiffError


def torchrun(nproc: int, args: list[str], tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "steerdiff",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path, check=False)


@pytest.mark.parametrize(
    "method,extra,atol",
    [
        ("pg", ["--strength", "4"], 1e-5),
        ("repulsive", ["--strength", "40"], 1e-5),
        ("pg", ["--strength", "4", "--prior-samples", "6"], 2e-4),
        ("iid", ["--init-noise", "simplex"], 1e-5),  # the coupled initial noise: every rank the same
    ],
)
def test_torchrun_equals_one_process(tmp_path, method, extra, atol):
    """7 particles on the ring under PG / SVGD repulsion / PG with a pilot: 2 processes (an uneven
    3 + 4 split) give the one-process particles to 1e-5. With a pilot, to 2e-4: the pilot is
    identical (checked bit for bit), but its early denoised estimates all sit near the mixture mean,
    so the RBF bandwidth is ~1e-4 and the 1e-8 round-off of batched float32 sums (3 + 4 rows against
    7) is amplified along the trajectory (measured 7.6e-5)."""
    args = ["sample", "--model", "ring", "--particles", "7", "--method", method, *extra, "--seed", "3", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "one.npy")]) == 0
    run = torchrun(2, [*args, "--out", str(tmp_path / "two.npy")], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    one, two = np.load(tmp_path / "one.npy"), np.load(tmp_path / "two.npy")
    assert one.shape == two.shape == (7, 2)
    np.testing.assert_allclose(two, one, atol=atol, rtol=0)
    iid = tmp_path / "iid.npy"
    assert main(["sample", "--model", "ring", "--n", "7", "--seed", "3", "--quiet", "--out", str(iid)]) == 0
    assert np.abs(np.load(iid) - one).max() > 1e-2  # the particle term (or the coupled noise) did act


def test_more_processes_than_particles_is_a_clear_error():
    with pytest.raises(SteerdiffError, match="3 processes for 2 particles"):
        distributed.share(2, rank=0, size=3)
    assert [distributed.share(7, r, 2) for r in range(2)] == [(0, 3), (3, 7)]


def test_single_process_helpers_are_identities():
    t = torch.randn(3, 2)
    assert distributed.world() == (0, 1) and distributed.all_gather(t) is t and distributed.offset(3) == 0


def test_ddp_training_under_torchrun_matches_one_process(tmp_path):
    """Without dropout, DDP over 2 ranks (each computing half of every batch, noise drawn for the
    whole batch) follows the one-process run: same losses and weights to float tolerance."""
    from steerdiff import checkpoint as ckpt

    args = [
        "train",
        "--dataset",
        "digits8",
        "--net",
        "tiny",
        "--steps",
        "4",
        "--batch-size",
        "16",
        "--dropout",
        "0",
        "--checkpoint-every",
        "2",
        "--seed",
        "0",
        "--quiet",
    ]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    run = torchrun(2, [*args, "--out", str(tmp_path / "two")], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    (_, _, w1, _, m1), (_, _, w2, _, m2) = (ckpt.read_checkpoint(tmp_path / d, with_state=True) for d in ("one", "two"))
    np.testing.assert_allclose(m2["losses"], m1["losses"], rtol=1e-4)
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], atol=1e-5, rtol=1e-4)
