"""Training-free h-space directions (issue #16): PCA of h, saved as edits, ``steerdiff edit --discover K``."""

import json

import pytest
import torch

from steerdiff.cli import main
from steerdiff.edit import HSpace, apply_edit, asymmetric_sample, conf_sigmas, find_unet, invert, load_edit
from steerdiff.edit import discover as disc
from steerdiff.edit import workflow as wf
from steerdiff.models import load

SHORT = 8  # editing levels: keeps the tests fast


@pytest.fixture(autouse=True)
def short_schedule(monkeypatch):
    monkeypatch.setattr(disc, "EDIT_STEPS", SHORT)


@pytest.fixture(scope="module")
def tiny(tiny_colormnist_checkpoint):
    return tiny_colormnist_checkpoint


def _tree(d):
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_directions_are_orthonormal_components_scaled_by_the_data_spread(tiny):
    model = load(tiny)
    images, _ = wf.heldout_images(model, 12, seed=0)
    found = disc.discover_directions(model, images, 3)
    assert [c["attribute"] for _, c in found] == ["pc1", "pc2", "pc3"]
    shares = [c["discovered"]["explained_variance"] for _, c in found]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-9
    sig = conf_sigmas(model, found[0][1])
    ref = int((sig[:-1] - found[0][1]["discovered"]["sigma_ref"]).abs().argmin())
    rows = torch.stack([d.table[ref].flatten() for d, _ in found]).double()
    units = rows / rows.norm(dim=1, keepdim=True)
    torch.testing.assert_close(units @ units.T, torch.eye(3, dtype=torch.float64), atol=1e-5, rtol=0)
    # each direction's length at the reference level is the spread of the images' h along it there
    hs = HSpace(model)
    _, path = invert(model, images, sig, return_path=True)
    with hs.capture():
        model(path[ref], float(sig[ref]))
    h = hs.h.flatten(1).double()
    spread = ((h - h.mean(0)) @ units.T).std(0)
    torch.testing.assert_close(rows.norm(dim=1), spread, rtol=1e-4, atol=1e-6)


def test_a_direction_at_strength_zero_is_the_plain_reconstruction_and_moves_the_image_otherwise(tiny):
    model = load(tiny)
    images, _ = wf.heldout_images(model, 10, seed=1)
    (delta, conf), *_ = disc.discover_directions(model, images, 1)
    sig = conf_sigmas(model, conf)
    start = invert(model, images[:3], sig)
    plain = asymmetric_sample(model, start, sig, None, sigma_boost=conf["intervals"]["sigma_boost"]).clamp(-1, 1)
    assert torch.equal(apply_edit(model, start, sig, delta, conf, strength=0.0), plain)
    moved = apply_edit(model, start, sig, delta, conf, strength=1.0)
    assert float((moved - plain).abs().max()) > 1e-3


def test_discover_writes_usable_edits_and_is_reproducible(tiny, tmp_path, capsys):
    args = ["edit", "--model", tiny, "--discover", "2", "--n", "8", "--seed", "3", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert "pc1:" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert a == b and {"directions.json", "pc1/grid.png", "pc2/config.json", "pc2/delta.safetensors"} <= set(a)
    assert main([*args, "--out", str(tmp_path / "a")]) == 0  # an earlier --discover output is replaced
    assert _tree(tmp_path / "a") == a
    summary = json.loads((tmp_path / "a" / "directions.json").read_text())
    assert [d["name"] for d in summary["directions"]] == ["pc1", "pc2"] and summary["images"] == 8
    delta, conf = load_edit(tmp_path / "a" / "pc1")
    assert delta.kind == "free" and conf["model"] == tiny
    # a discovered direction is an edit like a trained one: --edit DIR edits held-out digits with it
    out = tmp_path / "e.npz"
    assert main(["edit", "--model", tiny, "--edit", str(tmp_path / "a" / "pc1"), "--n", "2", "--out", str(out)]) == 0
    assert out.is_file()


def test_discover_jacobian_through_the_cli(tiny, tmp_path, capsys):
    out = tmp_path / "j"
    args = ["edit", "--model", tiny, "--discover", "2", "--discover-method", "jacobian", "--n", "6", "--quiet"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "jac1:" in printed and "prediction gain" in printed and f"--edit {out}/jac1" in printed
    summary = json.loads((out / "directions.json").read_text())
    assert summary["method"] == "jacobian" and [d["name"] for d in summary["directions"]] == ["jac1", "jac2"]
    assert all(d["method"] == "jacobian" and d["gain"] > 0 for d in summary["directions"])
    assert main(["edit", "--model", tiny, "--edit", str(out), "--out", str(tmp_path / "e.png")]) == 2
    assert f"e.g. --edit {out / 'jac1'}" in capsys.readouterr().err
    edited = tmp_path / "e.npz"
    assert main(["edit", "--model", tiny, "--edit", str(out / "jac2"), "--n", "2", "--out", str(edited)]) == 0


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--discover", "0", "--out", "d"], "--discover must be at least 1"),
        (["--attribute", "thick", "--discover-method", "jacobian", "--out", "e.png"], "add --discover K"),
        (
            ["--discover", "2", "--attribute", "thick", "--out", "d"],
            "--discover finds its own directions: drop --attribute",
        ),
        (["--discover", "2", "--out", "d.png"], "--discover writes a directory"),
        (["--discover", "4", "--n", "4", "--out", "d"], "4 directions need more than 4 images"),
        (["--discover", "2", "--strength", "1", "--out", "d"], "drop --strength"),
        (["--attribute", "thick", "--force", "--out", "e.npz"], "--force is for --discover"),
        (["--discover", "1", "--model", "circle", "--out", "d"], "model circle predicts the next frame"),
    ],
)
def test_discover_refuses_bad_input(tiny, tmp_path, monkeypatch, capsys, flags, message):
    monkeypatch.chdir(tmp_path)
    assert main(["edit", "--model", tiny, *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_discover_never_overwrites_a_users_directory(tiny, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["edit", "--model", tiny, "--discover", "1", "--n", "4", "--out", str(out)]) == 2
    assert "--out" in capsys.readouterr().err
    assert _tree(out) == {"notes.txt": b"keep me"}


def test_an_edit_is_refused_on_another_model_and_a_directions_folder_points_to_its_members(tiny, tmp_path, capsys):
    assert main(["edit", "--model", tiny, "--discover", "1", "--n", "4", "--out", str(tmp_path / "d")]) == 0
    capsys.readouterr()
    out = str(tmp_path / "e.png")
    assert main(["edit", "--model", "colormnist", "--edit", str(tmp_path / "d" / "pc1"), "--out", out]) == 2
    assert f"this edit was made for model {tiny}" in capsys.readouterr().err
    assert main(["edit", "--model", tiny, "--edit", str(tmp_path / "d"), "--out", out]) == 2
    assert "holds discovered directions" in capsys.readouterr().err


def test_jacobian_directions_are_the_top_eigenvectors_of_the_dense_pullback_metric(tiny):
    """The matrix-free subspace iteration against G = mean_i J_i^T J_i built from dense Jacobians."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    model = load(tiny)
    images, _ = wf.heldout_images(model, 3, seed=2)
    found = disc.discover_directions(model, images, 2, method="jacobian", iterations=40)
    assert [c["attribute"] for _, c in found] == ["jac1", "jac2"]
    conf = found[0][1]
    sig = conf_sigmas(model, conf)
    ref = int((sig[:-1] - conf["discovered"]["sigma_ref"]).abs().argmin())
    _, path = invert(model, images, sig, return_path=True)
    x, s = path[ref], float(sig[ref])
    hs = HSpace(model)
    shape = HSpace(model).shape(x, s)

    def pred(i):
        def f(p):
            with hs.capture(lambda h: p.reshape(shape)):
                return model(x[i : i + 1], s).flatten()

        return f

    zero = torch.zeros(int(torch.tensor(shape).prod()))
    a = (
        torch.cat([torch.autograd.functional.jacobian(pred(i), zero, vectorize=True) for i in range(len(x))])
        .double()
        .numpy()
    )
    # G = A^T A / N from the dense Jacobians A, its top two eigenpairs by ARPACK's Lanczos (not subspace iteration)
    g = LinearOperator((a.shape[1], a.shape[1]), matvec=lambda v: a.T @ (a @ v) / len(x), dtype=a.dtype)
    lam, vec = eigsh(g, k=2, which="LA", tol=1e-10)
    lam, top = torch.from_numpy(lam[::-1].copy()), torch.from_numpy(vec[:, ::-1].T.copy())  # largest first
    rows = torch.stack([d.table[ref].flatten() for d, _ in found]).double()
    units = rows / rows.norm(dim=1, keepdim=True)
    # the same directions up to sign, and gains from the same eigenvalues
    torch.testing.assert_close((units * top).sum(1).abs(), torch.ones(2, dtype=torch.float64), atol=1e-4, rtol=0)
    gains = torch.tensor([c["discovered"]["gain"] for _, c in found], dtype=torch.float64)
    torch.testing.assert_close(gains, (lam / x[0].numel()).sqrt(), rtol=1e-4, atol=0)
    assert found[0][1]["discovered"]["method"] == "jacobian" and gains[0] >= gains[1] > 0


def test_discover_method_must_be_known(tiny):
    model = load(tiny)
    images, _ = wf.heldout_images(model, 4, seed=0)
    with pytest.raises(Exception, match="--discover-method 'svd': use one of pca, jacobian"):
        disc.discover_directions(model, images, 1, method="svd")


def test_jacobian_directions_through_a_mid_block_with_attention(tmp_path):
    """Second derivatives through self-attention (the shipped models have it; the fused CPU kernel has none)."""
    from conftest import save_tiny_colormnist

    model = load(save_tiny_colormnist(tmp_path / "attn", attention=True))
    assert any("attention" in type(m).__name__.lower() for m in find_unet(model).up_blocks.modules())
    images, _ = wf.heldout_images(model, 3, seed=0)
    (_, conf), *_ = disc.discover_directions(model, images, 1, method="jacobian", iterations=2)
    assert conf["discovered"]["gain"] > 0
