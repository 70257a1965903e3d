"""crl_helpers: the package behind the contrastive representation learning course.

The main pieces are re-exported here, flat (``from crl_helpers import nt_xent``). The package map,
one line per module, by layer:

base
    ``validate``      one argument rule per quantity, one message per rule
    ``device``        the device (CUDA, then MPS, then the CPU) and the precision a run uses
    ``files``         opening files without hanging: regular files only
    ``threads``       how many CPU threads a run uses: affinity, cgroup quota, the load measured while it trains
data
    ``image_data``    ImageData, images and labels held in memory as uint8
    ``data``          the data sets: the built-in shapes, CIFAR-10, STL-10, a folder of images
    ``shapes``        the built-in data set: procedural shapes whose nuisances are not the label
    ``pairs``         where positive and negative pairs come from; false negatives; what a positive pair shares
views
    ``views``         augmentation settings (ViewConfig) and the per-image pipeline
    ``views_batched`` SimCLR's augmentations for a whole batch, on any device
model
    ``models``        encoders e(x) -> v and heads: projection h(v) -> z, context
    ``pretrained``    encoders as small files, with the normalisation they were trained with
objective
    ``scores``        a contrastive loss is a scoring function times a loss form; InfoNCE's bound
    ``losses``        NT-Xent, InfoNCE, the debiased loss
    ``temperature``   what the temperature does to InfoNCE, seen from one anchor
    ``objectives``    what a training step optimises: SimCLR, InstDisc, MoCo, SupCon, triplet, debiased, SimSiam
loop
    ``train``         the one training loop, its config and presets
    ``distributed``   data-parallel SimCLR across processes (torchrun)
    ``checkpoint``    checkpoints that survive interruption and load without executing code
    ``run_dir``       a run's output folder: one run at a time
evaluation
    ``metrics``       diagnostics of an embedding space: alignment, uniformity, accuracy, collapse, rank
    ``evaluate``      embeddings, kNN, linear probe, fine-tuning
    ``report``        the end of a run: final kNN, random-init baseline, linear probe, files, plots
    ``plots``         figures: training curves, 2-D maps of an embedding space
    ``verdicts``      experiments over seeds: a difference only where the seeds' ranges do not overlap
course
    ``widgets``       the interactive explorers (one module per explorer)
    ``exercises``     the notebooks' auto-checked exercises, their solutions, the instructor version
    ``course``        a notebook's cost tier, train-or-load caching
    ``reference_runs`` the course's experiments at a longer budget, shipped as result files (``crl reference``)
    ``grading``       ``crl grade``: submitted notebooks run, every exercise's verdict in a CSV
    ``assign``        ``crl assign``: the course as an nbgrader assignment
    ``cli``           the ``crl`` command

Example:
    >>> import torch
    >>> from crl_helpers import nt_xent
    >>> z = torch.ones(4, 8)
    >>> round(float(nt_xent(z, z, temperature=0.5)), 4) == round(float(torch.log(torch.tensor(7.0))), 4)
    True
"""
import os as _os
import time as _time

#: When the package began to load (``time.perf_counter()``): the start of a run's "startup" stage.
IMPORTED_AT = _time.perf_counter()
# OpenMP threads that spin for long while they wait make training ~3x slower when another program keeps one
# core busy. A short spin, then sleep, keeps the idle speed and halves that cost (measured on 2 cores, the
# default step: idle 1,357 -> 1,300 images/s; one core busy 504 -> 768; sleeping at once, PASSIVE: 1,153 / 811).
# libgomp reads this when torch loads, so it is set here, before the imports below; OMP_WAIT_POLICY or
# GOMP_SPINCOUNT set by the user win.
if "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ.setdefault("GOMP_SPINCOUNT", "3000")

from crl_helpers.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from crl_helpers.data import load_cifar10_npz, load_dataset, load_image_folder
from crl_helpers.device import pick_device
from crl_helpers.evaluate import (extract_embeddings, fine_tune, knn_accuracy, knn_predict, linear_probe,
                                  linear_probe_on_features)
from crl_helpers.image_data import DatasetUnavailable, ImageData
from crl_helpers.losses import info_nce, nt_xent, nt_xent_logits
from crl_helpers.metrics import alignment, contrastive_accuracy, cosine_stats, embedding_std, uniformity
from crl_helpers.models import (ProjectionHead, SimCLRModel, SmallConvNet, build_encoder, count_parameters,
                                resnet18_cifar, resnet18_imagenet)
from crl_helpers.shapes import SHAPE_NAMES, make_shapes
# `train` (the function) is not re-exported: it would shadow the module `crl_helpers.train`.
from crl_helpers.train import CIFAR10_GPU, CPU, PRESETS, TrainConfig, TrainResult
from crl_helpers.views import MultiViewTransform, ViewConfig, view_transform
from crl_helpers.views_batched import augment_batch, make_views

__version__ = "0.1.0"
