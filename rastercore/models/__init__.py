"""Estimators for pixel-wise training on samples of large rasters, and their safe persistence.

All are scikit-learn estimators (they pass ``check_estimator``):

- :class:`SampledSVC` -- RBF SVC on a class-balanced sample, optional grid search over C and gamma;
- :class:`CascadeSVC` -- the cascade SVM of Graf et al. (2004), shards fitted in parallel;
- :class:`KernelSGD`, :class:`KernelSGDRegressor` -- approximate kernel map + SGD, with
  ``partial_fit`` for ``dask_ml.wrappers.Incremental``;
- :class:`ShardedForestClassifier`, :class:`ShardedForestRegressor` -- forests grown on shards in
  parallel, merged into one scikit-learn forest;
- :class:`HurdleModel` -- a classifier for ``y >= threshold`` and a regressor below it;
- :class:`ThresholdedMultiLabel` -- one binary estimator per label with tuned thresholds;
- :class:`PriorCorrected` -- a fitted classifier's probabilities and decisions moved to other class
  priors (Saerens et al. 2002), e.g. from a balanced sample's to the scene's;
- :func:`reduce_support_vectors` -- a fitted RBF SVC approximated by at most a budget of support
  vectors (``SampledSVC(max_support_vectors=...)`` uses it and checks the labels it changes);
- :class:`FastRBF` -- numba inference for fitted RBF SVCs (same labels, decisions and
  probabilities as scikit-learn), :class:`FastKernelLinear` for Nystroem kernel-map models,
  :class:`FastKernelPCA` for RBF kernel PCA (``transform``, per tile);
  :func:`tile_predictor` decides once, when a model is loaded, which layers it writes and which
  fast path it uses (each estimator can say so itself: ``fast_predictor()``, ``tile_predictor()``).

Work is parallel on the active ``distributed.Client`` when there is one.
:func:`save_model` / :func:`load_model` store a model with a JSON manifest
in a skops file, which loads without running code from the file.
"""

from ._budget import reduce_support_vectors
from ._cascade import CascadeSVC
from ._fast_rbf import FastKernelLinear, FastKernelPCA, FastRBF
from ._forest import ShardedForestClassifier, ShardedForestRegressor
from ._hurdle import HurdleModel
from ._kernel_sgd import KernelSGD, KernelSGDRegressor
from ._multilabel import ThresholdedMultiLabel
from ._predictor import (CLASS_LAYER_GROUPS, UNCERTAINTY_LAYERS, VALUE_LAYER_GROUPS, TilePredictor, fast_predictor,
                         tile_predictor, uncertainty)
from ._persist import MODEL_FORMAT_VERSION, load_model, read_manifest, save_model, trusted_types
from ._priors import PriorCorrected, shift_priors
from ._svm import SampledSVC
from ._trees import CompiledTrees, compiled_trees

__all__ = [
    "FastRBF",
    "FastKernelLinear",
    "FastKernelPCA",
    "fast_predictor",
    "tile_predictor",
    "CompiledTrees",
    "compiled_trees",
    "uncertainty",
    "UNCERTAINTY_LAYERS",
    "CLASS_LAYER_GROUPS",
    "VALUE_LAYER_GROUPS",
    "TilePredictor",
    "SampledSVC",
    "reduce_support_vectors",
    "CascadeSVC",
    "KernelSGD",
    "KernelSGDRegressor",
    "ShardedForestClassifier",
    "ShardedForestRegressor",
    "HurdleModel",
    "ThresholdedMultiLabel",
    "PriorCorrected",
    "shift_priors",
    "save_model",
    "load_model",
    "read_manifest",
    "trusted_types",
    "MODEL_FORMAT_VERSION",
]
