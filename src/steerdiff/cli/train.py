"""``steerdiff train``, ``steerdiff train-classifier`` and ``steerdiff export``."""

from __future__ import annotations

from ..core.errors import check


def cmd_train(a) -> int:
    from ..train.training import TrainConfig, command_line, train

    cfg = TrainConfig(
        dataset=a.dataset,
        objective=a.objective,
        net=a.net,
        steps=a.steps,
        batch_size=a.batch_size,
        lr=a.lr,
        ema_decay=a.ema_decay,
        dropout=a.dropout,
        class_conditional=a.class_conditional,
        p_uncond=a.p_uncond,
        seed=a.seed,
        checkpoint_every=a.checkpoint_every,
        idx_dir=a.idx_dir,
        cond_frames=a.cond_frames,
        n_directions=a.n_directions,
        p_first=a.p_first,
        p_right=a.p_right,
    )
    res = train(
        cfg,
        a.out,
        progress=not a.quiet,
        command=command_line(),
        force=a.force,
        device=a.device,
        time_limit=None if a.time_limit is None else 60 * a.time_limit,
    )
    stopped = " (time limit reached; run the same command to continue)" if res["step"] < cfg.steps else ""
    print(f"trained to step {res['step']}{stopped}; checkpoint in {a.out}")
    return 0


def cmd_train_classifier(a) -> int:
    # the kind routes: digit classifiers are train.classifier's, joint ones (for compose) compose.joint's
    from ..compose.joint import JOINT_KINDS, train_joint_classifier
    from ..train.classifier import train_classifier
    from ..train.training import command_line

    check(a.arch == "cnn" or a.kind == "label", f"--arch {a.arch} is for --kind label")
    joint = a.kind in JOINT_KINDS
    check(not joint or a.bases is not None, f"--kind {a.kind} needs --bases DATASET1 DATASET2 ...")
    check(joint or a.bases is None, f"--bases is for --kind joint/joint3, not {a.kind}")
    opts = {k: v for k, v in (("batch_size", a.batch_size), ("lr", a.lr)) if v is not None}
    opts.update(epochs=a.epochs, seed=a.seed, progress=not a.quiet, command=command_line(), force=a.force)
    if joint:
        conf = train_joint_classifier(a.out, a.bases, num_labels=JOINT_KINDS[a.kind], **opts)
        print(f"held-out accuracy of y1 by sigma {conf['heldout_accuracy_y1']}; classifier in {a.out}")
    else:
        conf = train_classifier(a.out, kind=a.kind, dataset=a.dataset, arch=a.arch, **opts)
        print(f"held-out accuracy {conf['heldout_accuracy']:.4f}; classifier in {a.out}")
    return 0


def cmd_export(a) -> int:
    from ..checkpoint import read_preset
    from ..models import export

    preset = read_preset(a.preset) if a.preset else None
    export(a.src, a.out, fp16=not a.fp32, preset=preset, force=a.force)
    print(f"exported {a.src} to {a.out}")
    return 0
