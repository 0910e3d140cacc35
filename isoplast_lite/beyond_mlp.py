r"""Beyond the book's MLPs: a small CNN, a small transformer, a sequence stream and a monitored continual loop.

The appendix "Your model" (chapter 9) runs the two architectures a reader is most likely to
bring, each on a stream that loses plasticity at CPU scale, with Adam, AdamO and a fresh
network per task, and watches them with :class:`~isoplast_lite.monitor.PlasticityMonitor`:

- :func:`small_cnn`: two 3x3 convolutions and two linear layers on ``(N, 1, 8, 8)`` images
  (the Digits images of :mod:`isoplast_lite.tasks`, reshaped);
- :func:`small_transformer`: token and position embeddings, ``nn.TransformerEncoder`` layers
  (post-norm, ReLU feed-forward, no dropout), mean pooling and a linear head;
- :func:`random_label_sequences`: a fixed set of random token sequences with fresh random
  labels at every task (memorization, the sequence twin of the ``random-label`` streams);
- :func:`continual_run`: trains one model through the tasks (``"adam"``, ``"adamo"`` with
  :func:`~isoplast_lite.optim.adamo_param_groups`, or ``"fresh"``: a new model and Adam at
  every task, the reference of :mod:`isoplast_lite.plasticity`) and returns the end-of-task
  accuracies and the monitor's rows.

Every random draw comes from :func:`~isoplast_lite.seeding.seeded_generator` (data, labels,
batches) or from the global RNG inside ``torch.random.fork_rng`` seeded per (seed, task)
(PyTorch's default layer initializations), so a run depends only on its arguments and the
caller's RNG is left untouched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from .seeding import seeded_generator
from ._validation import check_choice, check_int, check_nonnegative, check_positive
from .monitor import PlasticityMonitor
from .optim import AdamO, adamo_param_groups

__all__ = ["small_cnn", "small_transformer", "random_label_sequences", "digits_images", "continual_run", "load_shipped", "RunSpec", "METHODS", "build_model", "task_stream"]

METHODS = ("adam", "adamo", "fresh")
_SALT_SEQ, _SALT_LABEL, _SALT_BATCH, _SALT_INIT = 9101, 9102, 9103, 9104


def _seeded_init(seed: int, task: int, build):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seeded_generator(seed, task, _SALT_INIT).initial_seed()))
        return build()


def small_cnn(n_classes: int = 10, channels: int = 16, hidden: int = 64) -> nn.Sequential:
    """Conv(1→c, 3x3) ReLU, Conv(c→c, 3x3, stride 2) ReLU, Linear(16c→hidden) ReLU, Linear(hidden→classes), for 8x8 images.

    PyTorch's default initialization (draws from the global RNG; :func:`continual_run` seeds it).

    Shape:
        input ``(N, 1, 8, 8)``; output ``(N, n_classes)``.

    Example:
        >>> small_cnn()(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    for name, v in (("n_classes", n_classes), ("channels", channels), ("hidden", hidden)):
        check_int(name, v, minimum=1)
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),  # (N, c, 8, 8)
        nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),  # (N, c, 4, 4)
        nn.Flatten(),
        nn.Linear(16 * channels, hidden), nn.ReLU(),
        nn.Linear(hidden, n_classes),
    )


class _SequenceClassifier(nn.Module):
    """Embeddings + ``nn.TransformerEncoder`` + mean pooling + linear head."""

    def __init__(self, vocab: int, length: int, n_classes: int, d_model: int, heads: int, layers: int, ff: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.position = nn.Parameter(0.02 * torch.randn(length, d_model))
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=ff, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, n_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (N, T) int -> (N, classes)
        h = self.embed(tokens) + self.position[: tokens.shape[1]]  # (N, T, d)
        return self.head(self.encoder(h).mean(1))


def small_transformer(vocab: int = 16, length: int = 8, n_classes: int = 10, *, d_model: int = 32, heads: int = 2,
                      layers: int = 2, ff: int = 64) -> nn.Module:
    """A small sequence classifier: token + position embeddings, ``layers`` encoder layers, mean pooling, head.

    Shape:
        input ``(N, T)`` integer tokens in ``[0, vocab)``, ``T <= length``; output ``(N, n_classes)``.

    Example:
        >>> small_transformer()(torch.zeros(3, 8, dtype=torch.long)).shape
        torch.Size([3, 10])
    """
    for name, v in (("vocab", vocab), ("length", length), ("n_classes", n_classes), ("d_model", d_model),
                    ("heads", heads), ("layers", layers), ("ff", ff)):
        check_int(name, v, minimum=1)
    if d_model % heads:
        raise ValueError(f"d_model must be a multiple of heads, got d_model={d_model}, heads={heads}")
    return _SequenceClassifier(vocab, length, n_classes, d_model, heads, layers, ff)


def random_label_sequences(seed: int, n_tasks: int, *, n_train: int = 256, vocab: int = 16, length: int = 8,
                           n_classes: int = 10) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """The same ``n_train`` random token sequences at every task, with fresh uniform labels per task.

    Returns:
        ``n_tasks`` pairs ``(tokens (n_train, length) int64, labels (n_train,) int64)``.

    Example:
        >>> tasks = random_label_sequences(0, 2, n_train=4)
        >>> torch.equal(tasks[0][0], tasks[1][0]), tasks[0][0].shape
        (True, torch.Size([4, 8]))
    """
    n_tasks = check_int("n_tasks", n_tasks, minimum=1)
    tokens = torch.randint(0, vocab, (check_int("n_train", n_train, minimum=1), length), generator=seeded_generator(seed, 0, _SALT_SEQ))
    return [(tokens, torch.randint(0, n_classes, (n_train,), generator=seeded_generator(seed, t, _SALT_LABEL))) for t in range(n_tasks)]


def digits_images(seed: int, n_tasks: int, *, n_train: int = 256) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """The ``random-label-digits`` stream of :mod:`isoplast_lite.tasks` as ``(N, 1, 8, 8)`` images.

    Example:
        >>> x, y = digits_images(0, 1, n_train=5)[0]
        >>> tuple(x.shape), tuple(y.shape)
        ((5, 1, 8, 8), (5,))
    """
    from .tasks import make_stream

    stream = make_stream("random-label-digits", seed=seed, n_tasks=n_tasks, n_train=n_train)
    return [(task.x_train.reshape(-1, 1, 8, 8), task.y_train) for task in (stream.task(t) for t in range(n_tasks))]


@dataclass(frozen=True)
class RunSpec:
    """One continual run: the architecture, the stream and the training budget.

    Attributes:
        model: ``"cnn"`` (:func:`small_cnn` on :func:`digits_images`) or ``"transformer"``
            (:func:`small_transformer` on :func:`random_label_sequences`).
        n_tasks, steps_per_task, batch_size, n_train: the stream and budget.
        lr: Adam's (and AdamO's) learning rate. iso_strength: AdamO's :math:`\\lambda`.
        every: the monitor's cadence (steps); probe: the monitor's probe size (the first
            examples of the task inputs, which are the same at every task).
    """

    model: str = "cnn"
    n_tasks: int = 10
    steps_per_task: int = 400
    batch_size: int = 32
    n_train: int = 256
    lr: float = 1e-3
    iso_strength: float = 0.01
    every: int = 100
    probe: int = 128

    def __post_init__(self):
        check_choice("model", self.model, ("cnn", "transformer"))
        for name in ("n_tasks", "steps_per_task", "batch_size", "n_train", "every", "probe"):
            check_int(name, getattr(self, name), minimum=1)
        check_positive("lr", self.lr)
        check_nonnegative("iso_strength", self.iso_strength)


def build_model(spec: RunSpec) -> nn.Module:
    """A fresh model of ``spec`` (:func:`small_cnn` or :func:`small_transformer`; torch's global RNG
    draws its weights, so :func:`continual_run` seeds it first).

    Example:
        >>> isinstance(build_model(RunSpec("cnn")), nn.Module)
        True
    """
    return small_cnn() if spec.model == "cnn" else small_transformer()


def task_stream(spec: RunSpec, seed: int) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """The ``spec.n_tasks`` tasks ``(inputs, labels)`` of seed ``seed``'s stream for ``spec``'s
    model (:func:`digits_images` or :func:`random_label_sequences`).

    Example:
        >>> x, y = task_stream(RunSpec("cnn", n_tasks=2, n_train=16), seed=0)[1]
        >>> tuple(x.shape), tuple(y.shape)
        ((16, 1, 8, 8), (16,))
    """
    if spec.model == "cnn":
        return digits_images(seed, spec.n_tasks, n_train=spec.n_train)
    return random_label_sequences(seed, spec.n_tasks, n_train=spec.n_train)


def _optimizer(model: nn.Module, method: str, spec: RunSpec):
    if method == "adamo":
        return AdamO(adamo_param_groups(model, spec.iso_strength), lr=spec.lr)
    return torch.optim.Adam(model.parameters(), lr=spec.lr)


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    was = model.training
    model.eval()
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).double().mean())
    model.train(was)
    return acc


def continual_run(spec: RunSpec, method: str, seed: int, *, monitor: bool = True) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """Train through the tasks of ``spec`` with ``method``; accuracies per task and the monitor's rows.

    ``"adam"`` and ``"adamo"`` keep one model and one optimizer for the whole stream;
    ``"fresh"`` builds a new model (seeded by the task) and a new Adam at every task. The
    monitor (on the first ``spec.probe`` training inputs, the same at every task) records every
    ``spec.every`` steps and once at the end of each task (tag ``"task t"``).

    Args:
        spec: the run.
        method: one of :data:`METHODS`.
        seed: the stream and initialization seed.
        monitor: record the monitor's rows (``False``: an empty frame, for timing the loop alone).

    Returns:
        ``(accuracy, layers)``: one row per task (``method, seed, task, train_acc, loss,
        cpu_seconds``: the task's training accuracy on all ``n_train`` examples at its end), and
        the monitor's frame with ``method``, ``seed`` and ``task`` columns (a fresh network's
        records restart at each task).

    Example:
        >>> acc, layers = continual_run(RunSpec("cnn", n_tasks=2, steps_per_task=4, every=2, probe=8), "adamo", 0)
        >>> acc[["task", "method"]].values.tolist(), sorted(set(layers["kind"]))
        ([[0, 'adamo'], [1, 'adamo']], ['conv2d', 'linear'])
    """
    if not isinstance(spec, RunSpec):
        raise TypeError(f"spec must be a RunSpec, got {type(spec).__name__}")
    method = check_choice("method", method, METHODS)
    seed = check_int("seed", seed, minimum=0)
    tasks = task_stream(spec, seed)
    probe = tasks[0][0][: spec.probe]
    rows, frames = [], []
    model = opt = mon = None
    for t, (x, y) in enumerate(tasks):
        if model is None or method == "fresh":
            model = _seeded_init(seed, t if method == "fresh" else 0, lambda: build_model(spec))
            opt = _optimizer(model, method, spec)
            if mon is not None:
                mon.close()
            mon, seen = (PlasticityMonitor(model, probe, every=spec.every) if monitor else None), 0
        n = len(y)
        g = seeded_generator(seed, t, _SALT_BATCH)
        batches = torch.cat([torch.randperm(n, generator=g) for _ in range(-(-spec.steps_per_task * spec.batch_size // n))])
        start = time.process_time()
        for step in range(spec.steps_per_task):
            idx = batches[step * spec.batch_size:(step + 1) * spec.batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if mon is not None:
                mon.step()
        cpu = time.process_time() - start
        if mon is not None:
            mon.record(tag=f"task {t}")
            frame = mon.frame()
            frames.append(frame[frame["record"] >= seen].assign(method=method, seed=seed, task=t))
            seen = int(frame["record"].max()) + 1
        rows.append({"method": method, "seed": seed, "task": t, "train_acc": _accuracy(model, x, y),
                     "loss": loss.item(), "cpu_seconds": cpu})
    if mon is not None:
        mon.close()
    layers = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return pd.DataFrame(rows), layers


def load_shipped(model: str) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """Chapter 9's shipped runs of ``model`` (``"cnn"`` or ``"transformer"``), made by ``tools/precompute_your_model.py``.

    Returns:
        ``(accuracy, layers)`` as :func:`continual_run` returns them, for every method and seed
        of the manifest entry (``isoplast_lite.results.manifest("yourmodel")[model]`` holds
        the command, configuration and provenance).
    """
    from .results import load_table

    model = check_choice("model", model, ("cnn", "transformer"))  # files read only after their SHA-256 matched
    return load_table(model, "yourmodel", "file"), load_table(model, "yourmodel", "layers_file", dtype={"layer": str})
