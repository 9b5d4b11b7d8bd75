"""Fuzz of every subcommand's flags and of the Python entry points with bad values (issue #14).

Every flag of every subcommand (read from the parser itself, so a new flag is fuzzed too) gets the bad
values of its type: 0 / -1 / huge / non-numbers for counts, nan / inf / out-of-range for numbers, '' /
'bogus' / a missing path / an existing directory for names and paths. Each case runs in-process through
``steerdiff.cli.main`` on a cheap valid base command and must end in a clean error: exit status 2 with a
one-line message (a SteerdiffError, or argparse's usage error). A traceback (any other exception), exit
0, or a run still going after a few seconds (work started before the value was checked) fails.
A few values are legitimately valid for a flag (a new --out directory for train, ...); they are
listed in VALID with the reason and not asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import signal

import numpy as np
import pytest
import torch

import steerdiff as sd
from steerdiff.cli import build_parser, main
from steerdiff.errors import SteerdiffError

SECONDS = 10  # a bad value must be refused before any real work: well within this


class _Overrun(BaseException):
    pass


def run_cli(argv: list[str]) -> tuple[str, str]:
    """``(outcome, stderr)``; outcome: 'error' (exit 2), 'ok' (exit 0), 'exit N', 'timeout' or 'traceback ...'."""
    err = io.StringIO()

    def alarm(*_):
        raise _Overrun()

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(SECONDS)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main(argv)
    except SystemExit as e:
        rc = e.code
    except _Overrun:
        return "timeout", err.getvalue()
    except SteerdiffError as e:  # main turns these into exit 2; one escaping main is a bug too
        return f"traceback SteerdiffError: {e}", err.getvalue()
    except Exception as e:  # noqa: BLE001 - the point of the fuzz
        return f"traceback {type(e).__name__}: {e}", err.getvalue()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return {0: "ok", 2: "error"}.get(rc, f"exit {rc}"), err.getvalue()


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "dir").mkdir()
    (root / "file.txt").write_text("not an array\n")
    np.save(root / "empty.npy", np.zeros((0, 1, 28, 28), np.float32))
    from steerdiff.data import load_mnist

    np.save(root / "digits.npy", load_mnist("heldout").images[:12].numpy())
    return {
        "root": root,
        "missing": str(root / "missing" / "nothing.npy"),
        "dir": str(root / "dir"),
        "file": str(root / "file.txt"),
        "empty": str(root / "empty.npy"),
        "digits": str(root / "digits.npy"),
    }


def base_commands(p: dict) -> dict[str, list[str]]:
    """A cheap valid command per subcommand; each case adds one flag with a bad value to it."""
    r = p["root"]
    bases = {
        "train": ["train", "--net", "tiny", "--steps", "1", "--batch-size", "2", "--out", str(r / "t")],
        "train-classifier": ["train-classifier", "--epochs", "1", "--out", str(r / "c")],
        "sample": ["sample", "--n", "2", "--steps", "1", "--out", str(r / "s.npy")],
        "repulse": ["repulse", "--nparticles", "2", "--out", str(r / "r.npy")],
        "evaluate": ["evaluate", "--samples", p["digits"], "--out", str(r / "e.json")],
        "report": [
            "report",
            "--n",
            "2",
            "--batches",
            "1",
            "--steps",
            "1",
            "--strengths",
            "0,1",
            "--out",
            str(r / "rep"),
        ],
        "reference": ["reference", "--n", "10", "--out", str(r / "ref.npy")],
        "quality": ["quality", "--model", "mnist", "--n", "2", "--out", str(r / "q.json")],
        "export": ["export", str(sd.models.weights_dir() / "mnist"), "--out", str(r / "x")],
        "compose": [
            "compose",
            "--base",
            "M1",
            "M2",
            "--y",
            "1",
            "2",
            "--n",
            "2",
            "--steps",
            "1",
            "--out",
            str(r / "c.npy"),
        ],
        "train-edit": ["train-edit", "--attribute", "thick", "--steps", "1", "--images", "2", "--out", str(r / "te")],
        "edit": ["edit", "--attribute", "thick", "--n", "2", "--out", str(r / "ed.npz")],
    }
    return {k: v + ([] if k == "export" else ["--quiet"]) for k, v in bases.items()}


# flags whose bad values need the particle method on (under iid every particle flag is refused outright,
# which the fuzz checks too): the value itself is then checked
PARTICLE = {
    "embedding",
    "kernel",
    "strength",
    "window",
    "on",
    "bandwidth",
    "bandwidth_scale",
    "weight",
    "project",
    "normalize",
    "archive",
    "prior_samples",
}
NONNEGATIVE_INT = {"cond_frames", "prior_samples"}
ANY_INT = {"seed"}
SIGNED_FLOAT = {"strength", "cfg_scale", "guidance_scale"}  # any finite value has a meaning
POSITIVE_FLOAT = {"lr", "snr", "bandwidth_scale", "sigma_top", "sigma_edit"}
UNIT = {"ema_decay", "dropout", "p_uncond", "p_first", "p_right"}
HUGE = {"n", "k", "images"}  # a count with a limit the command checks (memory, data size)


def bad_values(dest: str, action: argparse.Action, p: dict) -> list[str]:
    if action.choices is not None:
        return ["bogus", ""]
    if action.type is int:
        vals = ["nan", "1.5", "", "x"]
        if dest not in ANY_INT:
            vals += ["-1"] + ([] if dest in NONNEGATIVE_INT else ["0"])
        if dest in HUGE:
            vals.append(str(10**9))
        if dest == "n_directions":
            vals.append("3")
        return vals
    if action.type is float:
        vals = ["nan", "inf", "-inf", "", "x"]
        if dest not in SIGNED_FLOAT:
            vals.append("-1")
        if dest in POSITIVE_FLOAT:
            vals.append("0")
        if dest in UNIT:
            vals.append("1.5")
        return vals
    # names and paths
    return ["", "bogus", p["missing"], p["dir"]]


# (command, flag, value) combinations that are legitimately valid, and why; they are not run
def valid(command: str, dest: str, value: str, p: dict) -> bool:
    directory_out = command in ("train", "train-classifier", "train-edit", "report", "export")
    return (
        (dest == "out" and directory_out and value in ("bogus", p["missing"], p["dir"]))  # a directory to (re)write
        or (dest == "out" and value == p["missing"] and command in ("sample", "repulse", "reference", "compose"))
        or (dest == "archive" and value == p["missing"])  # a new .npy file to write
        # evaluate --samples: --n cuts the file into batches; one larger than the file is one batch
        or (command == "evaluate" and dest == "n" and value == str(10**9))
    )


def cases(p: dict):
    bases = base_commands(p)
    for command, sub in subcommands().items():
        assert command in bases, f"no base command for subcommand {command}: add one to the fuzz"
        for action in sub._actions:
            if not action.option_strings or action.nargs == 0 or action.dest in ("help", "quiet"):
                continue
            if isinstance(action, argparse.BooleanOptionalAction):
                continue
            flag = action.option_strings[0]
            for value in bad_values(action.dest, action, p):
                if valid(command, action.dest, value, p):
                    continue
                yield command, flag, action.dest, value


def _argv(bases, command, flag, dest, value, particle_on: bool):
    argv = list(bases[command])
    if dest == "out":
        i = argv.index("--out")
        argv[i + 1] = value
        return argv
    extra = [flag, value]
    if particle_on and dest in PARTICLE and command in ("sample", "evaluate", "compose"):
        extra = (
            ["--method", "repulsive" if dest in ("archive",) else "pg", "--kernel", "rbf"] + extra
            if dest != "kernel"
            else ["--method", "pg"] + extra
        )
    if command == "evaluate" and dest not in (
        "samples",
        "features",
        "feature_input",
        "classifier",
        "real",
        "k",
        "reference",
        "batch_size",
        "n",
        "seed",
        "out",
    ):
        # the other flags describe sampling: drop --samples so they take part
        i = argv.index("--samples")
        del argv[i : i + 2]
        argv += ["--n", "6", "--batches", "1", "--steps", "1"]
    return argv + extra


def test_every_bad_flag_value_is_a_clean_error(paths):
    bases = base_commands(paths)
    tally: dict[str, int] = {}
    failures = []
    for command, flag, dest, value in cases(paths):
        for particle_on in (False, True) if dest in PARTICLE else (False,):
            argv = _argv(bases, command, flag, dest, value, particle_on)
            outcome, err = run_cli(argv)
            lines = [line for line in err.strip().splitlines() if "error" in line or "usage" in line]
            tally[outcome.split(" ")[0]] = tally.get(outcome.split(" ")[0], 0) + 1
            if outcome != "error":
                failures.append(f"{' '.join(argv)} -> {outcome}")
            elif not err.strip().splitlines()[-1].startswith(("steerdiff", "usage")) or not lines:
                failures.append(f"{' '.join(argv)} -> exit 2 without a one-line message: {err!r}")
    assert tally.get("error", 0) > 300, tally
    assert not failures, f"{len(failures)} of {sum(tally.values())} cases:\n" + "\n".join(failures)


def test_fuzz_covers_every_subcommand(paths):
    seen = {c for c, *_ in cases(paths)}
    assert seen == set(subcommands()), set(subcommands()) - seen


def test_base_commands_run(paths):
    """The base commands are valid (so the fuzz's errors come from the bad values): the cheap ones run."""
    bases = base_commands(paths)
    for command in ("sample", "export", "reference", "evaluate"):
        outcome, err = run_cli(bases[command])
        assert outcome == "ok", (command, outcome, err)


@pytest.mark.parametrize(
    "argv",
    [
        ["sample", "--n", "1e9"],
        ["sample", "--steps", "0"],
        ["sample", "--device", "bogus"],
        ["sample", "--strength", "3"],
        ["sample", "--size", "64"],
        ["sample", "--pg_factor", "nan"],
        ["sample", "--prompt", "a"],
        ["sample", "--negative-prompt", "a"],
        ["sample", "--eta", "0.5"],
        ["sample", "--method", "pg", "--window", "5,1"],
        ["sample", "--method", "pg", "--kernel", "rbf", "--bandwidth", "-1"],
        ["sample", "--cond", "MISSING"],
        ["sample", "--class-label", "bogus", "--model", "mnist-cond"],
        ["sample", "--model", "circle"],
        ["sample", "--model", "FILE"],
        ["sample", "--corrector-plan", "langevin:1-2"],
        ["sample", "--out", "FILE/x.npy"],
        ["compose", "--base", "M1"],
        ["compose", "--y", "1", "3"],
        ["compose", "--y", "1"],
        ["compose", "--classifier", "MISSING"],
        ["compose", "--set-guidance", "-1"],
        ["evaluate", "--samples", "EMPTY"],
        ["evaluate", "--samples", "FILE"],
        ["evaluate", "--samples", "DIR"],
        ["evaluate", "--k", "100000"],
        ["evaluate", "--k", "-3"],
        ["evaluate", "--dataset", "circle"],
        ["evaluate", "--task", "conditional", "--dataset", "free"],
        ["evaluate", "--pipeline", "MISSING", "--prompt", "a"],
        ["evaluate", "--real", "EMPTY"],
        ["evaluate", "--features", "FILE"],
        ["report", "--vs", "bogus:1,2"],
        ["report", "--vs", "steps:0,1"],
        ["report", "--vs", "kernel:rbf,bogus"],
        ["report", "--strengths", "0,nan"],
        ["report", "--strengths", "x"],
        ["report", "--model", "circle"],
        ["reference", "--n", "5"],
        ["reference", "--model", "mnist-cond"],
        ["reference", "--n", "2000"],
        ["repulse", "--method", "iid", "--strength", "5"],
        ["repulse", "--prompt", "a", "--prompt", "b"],
        ["repulse", "--model", "vgg_noise", "--diffusion-model", "M1"],
        ["train", "--dataset", "circle"],
        ["train", "--idx-dir", "DIR"],
        ["train", "--out", "FILE"],
        ["train-classifier", "--kind", "joint"],
        ["train-classifier", "--bases", "M1", "M2"],
        ["train-edit", "--sigma-edit", "20"],
        ["train-edit", "--images", "100000000"],
        ["edit", "--attribute", "thick", "--edit", "DIR"],
        ["edit", "--n", "100000"],
        ["edit", "--out", "x.npy"],
        ["export", "--preset", "FILE"],
        ["export", "--preset", "MISSING"],
    ],
)
def test_combinations_are_clean_errors(paths, argv):
    """Bad combinations and values the per-flag table cannot express."""
    bases = base_commands(paths)
    subst = {"MISSING": paths["missing"], "DIR": paths["dir"], "FILE": paths["file"], "EMPTY": paths["empty"]}
    argv = [subst.get(v, v.replace("FILE", paths["file"])) for v in argv]
    full = list(bases[argv[0]])
    if "--out" in argv:
        i = full.index("--out")
        del full[i : i + 2]
    if argv[0] == "evaluate" and any(f in argv for f in ("--samples", "--pipeline", "--task")):
        i = full.index("--samples")
        del full[i : i + 2]
        full += ["--n", "6", "--batches", "1", "--steps", "1"]
    if argv[0] == "compose" and any(f in argv for f in ("--base", "--y")):
        i = full.index("--base")
        del full[i : i + 5]
    outcome, err = run_cli(full + argv[1:])
    assert outcome == "error", (full + argv[1:], outcome, err)
    assert err.strip().splitlines()[-1].startswith(("steerdiff", "usage")), err


# ---------------------------------------------------------------------------------- Python entry points
def _api_cases(tmp):
    m = sd.load("mnist")
    ring = sd.ring()
    nan = float("nan")
    bad_ckpt = tmp / "no_shape"
    w = sd.models.weights_dir() / "mnist"
    (bad_ckpt / "unet").mkdir(parents=True)
    for f in ("unet/config.json", "unet/diffusion_pytorch_model.safetensors"):
        (bad_ckpt / f).write_bytes((w / f).read_bytes())
    conf = json.loads((w / "config.json").read_text())
    del conf["sample_shape"]
    (bad_ckpt / "config.json").write_text(json.dumps(conf))
    yield "load bogus", lambda: sd.load("bogus")
    yield "load ''", lambda: sd.load("")
    yield "load missing", lambda: sd.load(tmp / "missing")
    yield "load empty dir", lambda: sd.load(tmp)
    yield "load config without sample_shape", lambda: sd.load(bad_ckpt)
    yield "load device bogus", lambda: sd.load("mnist", device="bogus")
    yield "load dtype str", lambda: sd.load("mnist", dtype="float16")
    yield "load set_guidance nan", lambda: sd.load("M1", set_guidance=nan)
    yield "load set_guidance on mnist", lambda: sd.load("mnist", set_guidance=1.0)
    for n in (0, -1, nan, float("inf"), 2.5, "3", None, True):
        yield f"sample n={n!r}", lambda n=n: sd.sample(m, n, steps=1)
    for kw in (
        dict(steps=0),
        dict(steps=-1),
        dict(steps=2.5),
        dict(steps="3"),
        dict(seed=1.5),
        dict(seed="x"),
        dict(seed=nan),
        dict(sigmas=torch.ones(2, 3)),
        dict(sigmas=torch.tensor([1.0])),
        dict(sigmas=torch.tensor([nan, 0.0])),
        dict(sigmas=torch.tensor([0.0, 1.0])),
        dict(cond={"bogus": 1}),
        dict(cond="bogus"),
        dict(cond={"class_labels": torch.tensor([1.5, 2.5])}),
        dict(cond={"class_labels": 11}),
        dict(cond={"class_labels": [1, 2, 3]}),
        dict(cond={"frames": torch.zeros(1, 1, 32, 32)}),
        dict(batch_size=0),
        dict(batch_size=1.5),
        dict(sampler="bogus"),
        dict(sampler=3),
        dict(guidance=["bogus"]),
        dict(guidance=[3]),
        dict(bogus_kw=1),
        dict(eta=0.5),
        dict(start_index=-1),
    ):
        yield f"sample {kw}", lambda kw=kw: sd.sample(m, 2, **{"steps": 1, **kw})
    yield "sample None", lambda: sd.sample(None, 2)
    yield "sample 'mnist'", lambda: sd.sample("mnist", 2)
    for term in (
        "bogus",
        3,
        None,
        sd.ParticleGuidance(strength=nan),
        sd.ParticleGuidance(kernel="bogus"),
        sd.ParticleGuidance(window=(5, 1)),
        sd.ParticleGuidance(on="bogus"),
        sd.ParticleGuidance(embedding="bogus"),
        sd.ParticleGuidance(kernel="rbf", bandwidth="bogus"),
        sd.ParticleGuidance(weight="bogus"),
        sd.Repulsion(strength=float("inf")),
        sd.ParticleGuidance(kernel="label"),
    ):
        yield f"guided {term!r:.50}", lambda term=term: sd.sample(sd.guided(ring, term), 4, steps=2, seed=0)
    yield "guided None", lambda: sd.guided(None, sd.ParticleGuidance())
    from steerdiff.joint import shipped_joint_classifier

    clf = shipped_joint_classifier(["M1", "M2"])
    bases = [sd.load("M1"), sd.load("M2")]
    for kw in (
        dict(y=(1, 5)),
        dict(y=()),
        dict(y=(1.5, 2)),
        dict(y="12"),
        dict(y=(0, 1)),
        dict(guidance_scale=nan),
        dict(guidance_scale="x"),
    ):
        yield f"compose {kw}", lambda kw=kw: sd.sample(sd.compose(bases, clf, **kw), 2, steps=1)
    yield "compose one base", lambda: sd.compose(bases[:1], clf)
    yield "compose no classifier", lambda: sd.compose(bases, None)
    yield "compose shapes differ", lambda: sd.compose([bases[0], m], clf)


def test_python_entry_points_raise_steerdiff_errors(tmp_path):
    failures, count = [], 0
    for name, call in _api_cases(tmp_path):
        count += 1
        try:
            call()
            failures.append(f"{name}: accepted")
        except SteerdiffError:
            pass
        except Exception as e:  # noqa: BLE001
            failures.append(f"{name}: {type(e).__name__}: {e}")
    assert count > 60
    assert not failures, "\n".join(failures)
