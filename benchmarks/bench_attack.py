"""Time per PGD step: the RPGD kernel (foolbox) vs a hand-written plain-torch PGD loop.

All methods attack the same images at the same ε values with the same number of steps and
judge success on the last iterate:

- ``plain``: the direct alternative — a torch loop per ε and batch, ``torch.autograd.grad``
  with respect to the input only, plus a clean pass and a final judging forward.
- ``foolbox``: stock ``LinfPGD/L2PGD.__call__`` per batch over the ε list, model parameters
  left trainable as a first-time user would (``loss.backward()`` then also computes weight
  gradients).
- ``foolbox-frozen``: the same with parameters frozen.
- ``kernel``: ``attack_success`` (foolbox's PGD, (image, ε) pairs batched, parameters frozen).

Labels are the model's own clean predictions, so every image is attacked by every method.
"Per step" = wall time / (steps × ε values > 0 × ceil(N / batch)), the plain loop's number of
PGD steps; ratios are against ``plain``. Peak memory is measured per method in a fresh
subprocess: extra resident memory (CPU, ``ru_maxrss`` minus RSS before the attack) or
``torch.cuda.max_memory_allocated`` minus memory in use before (CUDA).

    python benchmarks/bench_attack.py                       # tiny CNN and ResNet-18, Linf
    python benchmarks/bench_attack.py --model resnet18 --norm l2 --images 32 --batch 64
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_visprobe.kernels.pgd import attack_success  # noqa: E402

EPS = {
    "linf": [1e-4, 2e-4, 5e-4, 8e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0],  # PROTOCOLS.md §A
    "l2": [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0],
}
METHODS = ("plain", "foolbox", "foolbox-frozen", "kernel")


class Preprocessed(nn.Module):
    """Encoder-like: resize + ImageNet normalisation inside, then the network."""

    def __init__(self, net: nn.Module, size: int) -> None:
        super().__init__()
        self.net, self.size = net, size
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True,
                              align_corners=False)
        return self.net((x - self.mean) / self.std)


def build(name: str, device: torch.device) -> tuple[nn.Module, int]:
    """The model and the pixel size of the images fed to it."""
    torch.manual_seed(0)
    if name == "tiny":
        net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(16, 10),
        )
        return Preprocessed(net, 16).to(device).eval(), 16
    import torchvision

    net = torchvision.models.resnet18(num_classes=10)
    return Preprocessed(net, 64).to(device).eval(), 32


def plain_attack(model, x, y, eps_list, *, norm, steps, rel_stepsize, batch):
    """The hand-written loop a user would write: per ε, per batch, input gradient only."""
    view = (-1, 1, 1, 1)
    with torch.no_grad():
        correct = torch.cat([model(x[i:i + batch]).argmax(-1) for i in range(0, len(x), batch)]) == y
    x, y = x[correct], y[correct]
    hits = []
    for eps in eps_list:
        n_hit = 0
        for i in range(0, len(x), batch):
            x0, y0 = x[i:i + batch], y[i:i + batch]
            if norm == "linf":
                delta = (torch.rand_like(x0) * 2 - 1) * eps
            else:
                delta = torch.randn_like(x0)
                delta = delta / delta.flatten(1).norm(dim=1).view(view)
                delta = delta * (eps * torch.rand(len(x0), device=x0.device) ** (1 / x0[0].numel())).view(view)
            xa = (x0 + delta).clamp(0, 1)
            for _ in range(steps):
                xa.requires_grad_(True)
                (g,) = torch.autograd.grad(F.cross_entropy(model(xa), y0, reduction="sum"), xa)
                if norm == "linf":
                    xa = xa.detach() + rel_stepsize * eps * g.sign()
                    xa = (x0 + (xa - x0).clamp(-eps, eps)).clamp(0, 1)
                else:
                    g = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(view)
                    d = xa.detach() + rel_stepsize * eps * g - x0
                    d = d * (eps / d.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1).view(view)
                    xa = (x0 + d).clamp(0, 1)
            with torch.no_grad():
                n_hit += int((model(xa).argmax(-1) != y0).sum())
        hits.append(n_hit)
    return hits


def foolbox_attack(model, x, y, eps_list, *, norm, steps, rel_stepsize, batch, frozen):
    import foolbox as fb

    for p in model.parameters():
        p.requires_grad_(not frozen)
    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=x.device)
    attack = (fb.attacks.LinfPGD if norm == "linf" else fb.attacks.L2PGD)(
        rel_stepsize=rel_stepsize, steps=steps, random_start=True)
    with torch.no_grad():
        correct = torch.cat([model(x[i:i + batch]).argmax(-1) for i in range(0, len(x), batch)]) == y
    x, y = x[correct], y[correct]
    hits = torch.zeros(len(eps_list), dtype=torch.int64)
    for i in range(0, len(x), batch):
        _, _, success = attack(fmodel, x[i:i + batch], fb.criteria.Misclassification(y[i:i + batch]),
                               epsilons=eps_list)
        hits += success.sum(dim=1).cpu()
    for p in model.parameters():
        p.requires_grad_(True)
    model.zero_grad(set_to_none=True)
    return hits.tolist()


def kernel_attack(model, x, y, eps_list, *, norm, steps, rel_stepsize, batch):
    result = attack_success(model, x, y, norm=norm, epsilons=eps_list, steps=steps,
                            rel_stepsize=rel_stepsize, targeted=False, n_classes=10,
                            batch_size=batch)
    return list(result.n_success)


def run(method, model, x, y, args):
    kwargs = dict(norm=args.norm, steps=args.steps, rel_stepsize=args.rel_stepsize, batch=args.batch)
    eps = EPS[args.norm]
    if method == "plain":
        return plain_attack(model, x, y, eps, **kwargs)
    if method in ("foolbox", "foolbox-frozen"):
        return foolbox_attack(model, x, y, eps, frozen=method == "foolbox-frozen", **kwargs)
    return kernel_attack(model, x, y, eps, **kwargs)


def setup(args):
    device = torch.device(args.device)
    model, size = build(args.model, device)
    for p in model.parameters():
        p.requires_grad_(True)  # as a freshly built encoder + head comes
    x = torch.rand(args.images, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        y = model(x).argmax(-1)  # every image "correct": all methods attack all of them
    return model, x, y


def measure_memory(args) -> dict:
    """Run one method once in this (fresh) process and report its extra peak memory in MiB."""
    model, x, y = setup(args)
    device = torch.device(args.device)
    # one tiny run first, so lazy imports and thread pools are not counted as attack memory
    run(args.measure_memory, model, x[:2], y[:2], argparse.Namespace(**{**vars(args), "steps": 1}))
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run(args.measure_memory, model, x, y, args)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        rss_kib = int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() // 1024
        run(args.measure_memory, model, x, y, args)
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_kib) * 1024
    return {"method": args.measure_memory, "peak_mib": max(peak, 0) / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("tiny", "resnet18", "all"), default="all")
    parser.add_argument("--norm", choices=("linf", "l2"), default="linf")
    parser.add_argument("--images", type=int, default=64, help="images attacked (default 64)")
    parser.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--steps", type=int, default=10, help="PGD steps (default 10; paper 100)")
    parser.add_argument("--rel-stepsize", type=float, default=0.025, help="default 0.025 (paper)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median; default 5)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--measure-memory", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.measure_memory:
        print(json.dumps(measure_memory(args)))
        return

    models = ("tiny", "resnet18") if args.model == "all" else (args.model,)
    methods = [m for m in args.methods.split(",") if m]
    n_eps = len(EPS[args.norm])
    n_steps = args.steps * n_eps * math.ceil(args.images / args.batch)
    print(f"device={args.device} threads={args.threads} norm={args.norm} images={args.images} "
          f"batch={args.batch} steps={args.steps} eps={n_eps} torch={torch.__version__}")
    for name in models:
        args.model = name
        model, x, y = setup(args)
        times = {m: [] for m in methods}
        hits = {}
        for m in methods:  # warm-up (allocator, lazy imports, kernels)
            hits[m] = run(m, model, x, y, args)
        for _ in range(args.repeats):  # interleaved so drifting machine load hits all methods
            for m in methods:
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                start = time.perf_counter()
                run(m, model, x, y, args)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times[m].append(time.perf_counter() - start)
        memory = {}
        if not args.no_memory:
            for m in methods:
                cmd = [sys.executable, __file__, "--measure-memory", m, "--model", name,
                       "--norm", args.norm, "--images", str(args.images), "--batch", str(args.batch),
                       "--steps", str(args.steps), "--rel-stepsize", str(args.rel_stepsize),
                       "--threads", str(args.threads), "--device", args.device]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                memory[m] = json.loads(out.strip().splitlines()[-1])["peak_mib"]
        base = statistics.median(times["plain"]) if "plain" in times else None
        print(f"\n{name}: {n_steps} PGD steps of batch {min(args.batch, args.images)} per run")
        print(f"{'method':<16}{'ms/step':>10}{'vs plain':>10}{'min ratio':>11}{'peak MiB':>10}  successes")
        for m in methods:
            med = statistics.median(times[m])
            ratio = f"{med / base:.2f}x" if base else "-"
            best = f"{min(times[m]) / min(times['plain']):.2f}x" if base else "-"
            mem = f"{memory[m]:.0f}" if m in memory else "-"
            print(f"{m:<16}{med / n_steps * 1e3:>10.2f}{ratio:>10}{best:>11}{mem:>10}  {hits[m]}")


if __name__ == "__main__":
    main()
