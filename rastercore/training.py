"""Training: model families fitted on a sample table, or on every labelled pixel.

:func:`train_from_table` fits one of :data:`MODEL_FAMILIES` on the training
rows of a sample table, scores it on the validation rows and saves it with
everything prediction needs (feature spec, bands, classes, grid).

:func:`train_incremental` computes the features of a few tiles at a time in
parallel on the dask cluster and feeds each tile's labelled pixels to the
model's ``partial_fit`` in the driver, for several epochs, with progress.
Memory holds a few tiles' features (two per worker thread), whatever the
scene size.

:func:`pixel_arrays` gives the same pixels as dask arrays (one block per
tile), for ``dask_ml.wrappers.Incremental`` (``pip install dask-ml``) or
any dask-aware estimator (:func:`rastercore.boosting.train_distributed`
fits LightGBM and XGBoost on them).

The ``lightgbm`` and ``xgboost`` families need the optional ``boost`` extra
(``pip install 'rastercore[boost]'``); the libraries are imported only when
one of them is built.
"""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr

from rastercore.checks import check_int
from rastercore.errors import ParameterError, SamplingError, TrainingDataError
from rastercore.importance import (feature_groups, importance_figure, importance_markdown, narrow_spec,
                                   permutation_importance, scoring_for)
from rastercore.palette import class_colors as palette_colors
from rastercore.progress import ProgressMode
from rastercore.sampling import TRAIN, PixelPlan, SpatialSplit, fit_streaming, plan_pixels
from rastercore.store import check_output

__all__ = ["train_incremental", "pixel_arrays", "plan_arrays", "train_from_table", "build_model",
           "importance_paths", "boost_library", "check_boost_classes", "MODEL_FAMILIES", "BOOST_FAMILIES"]

MODEL_FAMILIES = {
    "svm": "RBF SVC on the (balanced) sample, grid search over C and gamma (rastercore.models.SampledSVC)",
    "cascade-svm": "cascade SVM: shards fitted in parallel, support vectors merged (rastercore.models.CascadeSVC)",
    "forest": "random forest (scikit-learn)",
    "extra-trees": "extremely randomised trees (scikit-learn's ExtraTrees)",
    "sharded-forest": "forest grown on shards in parallel and merged (rastercore.models.ShardedForest*)",
    "hgb": "histogram gradient boosting (scikit-learn)",
    "logistic": "standardised features + logistic regression (scikit-learn); classification only",
    "sgd": "kernel map + SGD (rastercore.models.KernelSGD*); also streams over every pixel",
    "hurdle": "classifier for value >= threshold, regressor below (rastercore.models.HurdleModel)",
    "multilabel": "one binary model per threshold label, decision thresholds tuned on validation",
    "lightgbm": "LightGBM gradient boosting (LGBMClassifier / LGBMRegressor); needs rastercore[boost]",
    "xgboost": "XGBoost gradient boosting, histogram trees (XGBClassifier / XGBRegressor); needs rastercore[boost]",
}

#: The families of the optional ``boost`` extra, by the name of their package.
BOOST_FAMILIES = {"lightgbm": "LightGBM", "xgboost": "XGBoost"}


def build_model(family: str, *, task: str = "classification", seed: int = 0, threshold: float | None = None,
                **params):
    """A new, unfitted estimator of one of :data:`MODEL_FAMILIES`.

    Parameters
    ----------
    family : str
        A key of :data:`MODEL_FAMILIES`.
    task : {"classification", "regression"}
        Picks the classifier or regressor variant.
    seed : int
        ``random_state`` of the estimator.
    threshold : float, optional
        The hurdle threshold (family ``"hurdle"``).
    **params
        Passed to the estimator.

    Notes
    -----
    ``lightgbm`` builds ``lightgbm.LGBMClassifier`` / ``LGBMRegressor``
    (``verbose=-1``) and ``xgboost`` ``xgboost.XGBClassifier`` /
    ``XGBRegressor`` (``tree_method="hist"``), both seeded with ``seed``
    and with the library's own thread count (LightGBM: the physical cores;
    XGBoost: every core).  Their packages are imported here, not before.

    Raises
    ------
    ParameterError
        ``lightgbm`` or ``xgboost`` without its package (the ``boost`` extra).
    SamplingError
        An unknown family, or a classifier-only family for regression.
    """
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from rastercore import models

    classify = task == "classification"
    factories = {
        "svm": lambda: models.SampledSVC(random_state=seed, **params),
        "cascade-svm": lambda: models.CascadeSVC(random_state=seed, **params),
        "forest": lambda: (RandomForestClassifier if classify else RandomForestRegressor)(
            **{"n_estimators": 100, "n_jobs": -1, "random_state": seed, **params}),
        "extra-trees": lambda: (ExtraTreesClassifier if classify else ExtraTreesRegressor)(
            **{"n_estimators": 100, "n_jobs": -1, "random_state": seed, **params}),
        "logistic": lambda: make_pipeline(StandardScaler(), LogisticRegression(
            **{"max_iter": 1000, "random_state": seed, **params})),
        "sharded-forest": lambda: (models.ShardedForestClassifier if classify else models.ShardedForestRegressor)(
            random_state=seed, **params),
        "hgb": lambda: (HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor)(
            random_state=seed, **params),
        "sgd": lambda: (models.KernelSGD if classify else models.KernelSGDRegressor)(random_state=seed, **params),
        "hurdle": lambda: models.HurdleModel(threshold=threshold, random_state=seed, **params),
        "multilabel": lambda: models.ThresholdedMultiLabel(random_state=seed, **params),
        "lightgbm": lambda: _boosted_trees("lightgbm", classify, seed, params),
        "xgboost": lambda: _boosted_trees("xgboost", classify, seed, params),
    }
    if family not in factories:
        raise SamplingError(f"unknown model family {family!r}; choose one of {', '.join(MODEL_FAMILIES)}.")
    if family == "hurdle" and threshold is None:
        raise SamplingError("the hurdle model needs the threshold (value >= threshold is class 1).")
    if family in ("svm", "cascade-svm", "multilabel", "logistic") and not classify:
        raise SamplingError(f"{family} is a classifier, but the sample is for regression; draw it with thresholds.")
    return factories[family]()


def boost_library(family: str):
    """The package of a :data:`BOOST_FAMILIES` family (``lightgbm`` or ``xgboost``), imported now.

    Raises
    ------
    ParameterError
        The package is not installed: one line naming the ``boost`` extra.
    """
    import importlib

    try:
        return importlib.import_module(family)
    except ImportError:
        raise ParameterError(f"family {family!r} needs the optional {BOOST_FAMILIES[family]} package: "
                             f"pip install 'rastercore[boost]'") from None


def _boosted_trees(family: str, classify: bool, seed: int, params: dict):
    """LightGBM's or XGBoost's scikit-learn estimator, seeded, quiet and with histogram trees."""
    library = boost_library(family)
    if family == "lightgbm":
        estimator = library.LGBMClassifier if classify else library.LGBMRegressor
        return estimator(**{"verbose": -1, "random_state": seed, **params})
    estimator = library.XGBClassifier if classify else library.XGBRegressor
    return estimator(**{"tree_method": "hist", "random_state": seed, **params})


def check_boost_classes(family: str, present, class_names, *, where: str = "training rows") -> None:
    """Refuse an ``xgboost`` classifier whose training data lack a class.

    XGBoost's classifier learns the classes 0..K-1 and nothing else, and
    rastercore's class codes are the indices of the class names, so every
    class must have training data (rows are not remapped: the model's
    classes must stay the codes the maps are written with).  Other families
    pass.

    Parameters
    ----------
    family : str
        The model family.
    present : array-like of int
        The class codes found in the training data.
    class_names : list of str
        The names of all classes, code order.
    where : str
        What the training data are, for the message.

    Raises
    ------
    TrainingDataError
        ``family`` is ``"xgboost"`` and a class has no training data.
    """
    if family != "xgboost" or not class_names:
        return
    missing = sorted(set(range(len(class_names))) - {int(c) for c in np.unique(present)})
    if missing:
        names = ", ".join(f"{class_names[c]!r} (code {c})" for c in missing)
        raise TrainingDataError(f"family 'xgboost' needs {where} of every class (it learns classes 0..K-1), and "
                                f"class {names} has none; draw the sample so that every class is in the training "
                                f"blocks, drop the class from the target, or use family 'lightgbm'.")


def train_from_table(table, family: str, *, seed: int = 0, params: dict | None = None,
                     labels: list[float] | None = None, path=None, overwrite: bool = False, class_colors=None,
                     importance: bool = False, top_k: int | None = None, importance_groups: str = "family",
                     importance_repeats: int = 5, search=None, n_iter: int | None = None, priors=None):
    """Fit a model family on the training rows of a sample table; score and save it.

    Parameters
    ----------
    table : rastercore.sampling.SampleTable
        From :func:`rastercore.sampling.draw_sample` or :func:`rastercore.sampling.read_table`.
    family : str
        One of :data:`MODEL_FAMILIES`.
    seed : int
        Seed of the estimator.
    params : dict, optional
        Estimator parameters.
    labels : list of float, optional
        For ``"multilabel"``: label i is ``value >= labels[i]``; for
        ``"hurdle"``: ``[threshold]`` (default the sample's threshold).
    path : path-like, optional
        Save the fitted model there (``.skops``), with its metadata.
    overwrite : bool
        Replace an existing model file.
    class_colors : mapping, str or sequence, optional
        Colours of the classes (``{"water": "#1f78b4"}`` or
        ``"water=#1f78b4"``; :func:`rastercore.palette.class_colors`), kept
        in the model file for the maps predicted with it; default a palette.
    importance : bool
        After fitting, measure the permutation importance of the feature
        groups on the validation rows (:func:`rastercore.importance.permutation_importance`,
        seeded by ``seed``; balanced accuracy for classes, R² for values,
        the value's RMSE for hurdle models, macro F1 for multi-label ones),
        keep it in ``metadata["importance"]`` and, with ``path``, write
        ``<model>.importance.png`` (a figure) and ``<model>.importance.md``
        (a table) beside the model file.
    top_k : int, optional
        Implies ``importance``: refit on the ``top_k`` most important groups
        only, with the feature spec narrowed to them
        (:func:`rastercore.importance.narrow_spec`), so that prediction
        computes only those features.  The narrowed model is returned and
        saved; ``metadata["top_k"]`` keeps the groups and both validation scores.
    importance_groups : {"family", "band", "feature"}
        How columns are grouped (:func:`rastercore.importance.feature_groups`);
        ``top_k`` needs ``"family"`` or ``"band"``.
    importance_repeats : int, default 5
        Shuffles per group.
    search : "default" or dict of str to list, optional
        Choose parameters first by a spatially cross-validated search
        (:func:`rastercore.search.search`) on the TRAIN rows only, with folds
        of whole blocks and the sample's gap: ``"default"`` searches the
        family's :data:`rastercore.search.DEFAULT_GRIDS` grid, a dict such as
        ``{"C": [1, 10]}`` those values.  The model is then refitted on all
        TRAIN rows with the best parameters (over ``params``), and
        ``metadata["search"]`` reports every candidate's mean, std and
        per-fold scores.  Without it, ``svm`` still searches C and gamma
        itself, with folds of whole blocks (no gap), and reports likewise.
    n_iter : int, optional
        With ``search``: try this many random candidates instead of all.
    priors : {"scene", "balanced"} or dict of str to float, optional
        Class priors the saved classifier predicts for
        (:func:`rastercore.models._priors.prior_correction`): ``"scene"``
        corrects its probabilities and decisions from the class frequencies
        of the TRAIN rows to the scene's (its eligible pixels,
        ``table.attrs["counts"]``) with :class:`rastercore.models.PriorCorrected`
        (Saerens et al. 2002); ``"balanced"`` keeps the model as trained; a
        dict ``{"water": 0.3, "land": 0.7}`` corrects to those priors (every
        class named).  Default: ``"scene"`` for classifiers with
        probabilities whose sample's class frequencies differ from the
        scene's, else no correction.  A model without probabilities (an SVM
        without ``probability``), a hurdle or multi-label model, or a
        regressor is saved as trained, with a :class:`PriorCorrectionWarning`
        when the correction was asked for explicitly.  ``metadata["priors"]``
        records the choice, the train, scene and target priors and the
        validation scores with and without the correction
        (``metadata["validation"]`` stays the uncorrected model's).

    Returns
    -------
    model, dict
        The fitted estimator and its metadata (including ``validation`` scores and
        ``sample_size``: training and validation rows, per class for classifiers).

    Raises
    ------
    ParameterError
        ``importance`` or ``top_k`` without validation rows, ``top_k`` below 1
        or above the number of groups.
    StoreExistsError
        The model file or a report file exists and ``overwrite`` is false.
    """
    import time

    from rastercore.sampling import VALIDATION

    task = table.attrs.get("task", "classification")
    split = np.asarray(table.split)
    X = np.asarray(table.X)
    y, y_kind = _targets_for(family, table, labels)
    train, val = split == TRAIN, split == VALIDATION
    class_names = (["below", "above"] if family == "hurdle" else
                   [f">= {t:g}" for t in labels] if family == "multilabel" else table.class_names)
    colors = (None if y_kind == "value" and family != "hurdle" or not class_names
              else [list(c) for c in palette_colors(class_names, class_colors)])  # checked before fitting
    threshold = (labels or table.attrs.get("thresholds") or [None])[0]
    if y_kind == "class":
        check_boost_classes(family, y[train], class_names)
    prior_choice = _check_priors(priors, family, y_kind, class_names)
    ranking = _check_importance(list(table.feature_names), importance or top_k is not None, top_k,
                                importance_groups, importance_repeats, val, path, overwrite)
    params, search_report = _searched_params(table, family, X, y, train, search, n_iter=n_iter, seed=seed,
                                             params=params, task="regression" if y_kind == "value" else task,
                                             threshold=threshold)
    model = build_model(family, task="regression" if y_kind == "value" else task, seed=seed, threshold=threshold,
                        **(params or {}))
    start = time.perf_counter()
    if family == "svm" and model.search:  # SampledSVC's own search: folds of whole blocks
        model.fit(X[train], y[train], groups=np.asarray(table.block)[train])
        search_report = search_report or _svc_search_report(model)
    else:
        model.fit(X[train], y[train])
    if family == "multilabel" and val.any():
        model.tune_thresholds(X[val], y[val])
    seconds = time.perf_counter() - start
    metadata = {
        "family": family,
        "params": {k: v for k, v in (params or {}).items()},
        "task": "regression" if y_kind == "value" and family != "hurdle" else task,
        "feature_spec": table.attrs["feature_spec"],
        "bands": table.attrs["bands"],
        "feature_names": list(table.feature_names),
        "band_ranges": table.attrs.get("band_ranges"),
        "class_names": class_names,
        "thresholds": table.attrs.get("thresholds"),
        "training": {key: table.attrs.get(key) for key in ("crs", "transform", "shape", "seed", "quotas",
                                                          "per_class", "block_size", "validation_fraction", "gap")},
        "fit_seconds": round(seconds, 3),
        "validation": _validation_scores(model, X[val], y[val], family) if val.any() else None,
        "sample_size": _sample_size(y, y_kind, train, val, table.class_names),
    }
    if colors is not None:
        metadata["class_colors"] = colors
    if search_report is not None:
        metadata["search"] = search_report
    if hasattr(model, "svc_"):  # the SVM families: what a pixel's prediction costs
        metadata["support_vectors"] = int(model.svc_.n_support_.sum())
    if getattr(model, "budget_", None) is not None:
        metadata["support_vector_budget"] = model.budget_
    if ranking is not None:
        refit = {"family": family, "task": "regression" if y_kind == "value" else task, "seed": seed,
                 "threshold": threshold, "params": params, "blocks": np.asarray(table.block)[train]}
        model = _rank_features(model, metadata, ranking, table, X, y, train, val, refit, top_k, path, overwrite)
    if prior_choice is not _NO_PRIORS:
        model = _apply_priors(model, prior_choice, metadata, table, X, y, train, val, family)
    if path is not None:
        from rastercore.models import save_model

        save_model(model, path, metadata=metadata, overwrite=overwrite)
    return model, metadata


_NO_PRIORS = object()


def _check_priors(priors, family: str, y_kind: str, class_names):
    """The checked ``priors`` choice (before fitting), or ``_NO_PRIORS`` for models that take none.

    Hurdle, multi-label and regression models are saved as trained; asking
    for priors with them gives a :class:`PriorCorrectionWarning`.
    """
    import warnings

    from rastercore.models._priors import PriorCorrectionWarning, check_priors

    if y_kind == "class" and family not in ("hurdle", "multilabel"):
        return check_priors(priors, class_names)
    if priors is not None and priors != "balanced":
        what = "a regressor" if y_kind == "value" and family != "hurdle" else f"the {family} model"
        warnings.warn(f"priors (--priors) {priors!r} ignored: {what} is saved as trained, without prior "
                      "correction.", PriorCorrectionWarning, stacklevel=3)
    return _NO_PRIORS


def _apply_priors(model, choice, metadata: dict, table, X, y, train, val, family: str):
    """The model corrected to the ``choice`` priors (or as trained); ``metadata["priors"]`` records them.

    ``metadata["validation"]`` stays the scores of the model as trained, on
    the validation rows as drawn (balanced rows reward balanced decisions);
    ``metadata["priors"]["validation"]`` holds the scores with and without
    the correction, each with ``target_accuracy``, the accuracy expected at
    the target priors.
    """
    from rastercore.models._priors import prior_correction, validation_by_priors

    counts = table.attrs.get("counts")
    scene = None if counts is None else np.asarray(counts, dtype=np.int64).sum(axis=1)
    trained = type(model)
    model, record = prior_correction(model, choice, class_names=table.class_names, y_train=y[train],
                                     scene_counts=scene)
    record["model_type"] = f"{trained.__module__}.{trained.__qualname__}"  # the estimator inside the correction
    if val.any():
        names = list(table.feature_names)
        columns = [names.index(n) for n in metadata["feature_names"]]  # narrowed by top_k
        X_val = X[val][:, columns]
        record["validation"] = validation_by_priors(model, record, X_val, y[val], table.class_names)
    metadata["priors"] = record
    return model


def _searched_params(table, family: str, X, y, train, grid, *, n_iter, seed, params, task, threshold):
    """``params`` updated with the best of a spatial search on the TRAIN rows (and its report), or as given."""
    if grid is None:
        return params, None
    import time

    from rastercore.search import check_grid
    from rastercore.search import search as spatial_search

    check_grid(family, grid)
    fixed = {**(params or {}), **({"search": False} if family == "svm" else {})}
    estimator = build_model(family, task=task, seed=seed, threshold=threshold, **fixed)
    attrs = table.attrs
    geometry = attrs.get("block_size") and attrs.get("shape") and attrs.get("gap")
    start = time.perf_counter()
    best, report = spatial_search(
        family, X[train], y[train], np.asarray(table.block)[train], grid, estimator=estimator, n_iter=n_iter,
        seed=seed, rows=np.asarray(table.row)[train] if geometry else None,
        cols=np.asarray(table.col)[train] if geometry else None, gap=int(attrs["gap"]) if geometry else 0,
        block_size=attrs.get("block_size"), shape=attrs.get("shape"))
    report["seconds"] = round(time.perf_counter() - start, 3)
    return {**fixed, **best}, report


def _svc_search_report(model) -> dict | None:
    """The report of SampledSVC's own search (block folds), in the shape of :func:`rastercore.search.search`'s."""
    results = model.cv_results_
    if results is None:
        return None
    n_folds = sum(1 for key in results if key.startswith("split") and key.endswith("_test_score"))
    candidates = [{"params": {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()},
                   "mean": float(results["mean_test_score"][i]), "std": float(results["std_test_score"][i]),
                   "scores": [float(results[f"split{k}_test_score"][i]) for k in range(n_folds)],
                   "rank": int(results["rank_test_score"][i])}
                  for i, params in enumerate(results["params"])]
    best = min(candidates, key=lambda c: c["rank"])
    return {"folds": n_folds, "blocks": None, "gap": 0, "scoring": model.scoring or "accuracy",
            "strategy": "grid", "candidates": candidates,
            "best": {"params": dict(best["params"]), "mean": best["mean"], "std": best["std"]}}


def importance_paths(path) -> tuple[Path, Path]:
    """The importance figure and table written beside a model file: ``<model>.importance.png`` and ``.md``."""
    path = Path(path)
    return path.with_suffix(".importance.png"), path.with_suffix(".importance.md")


def _check_importance(names: list[str], wanted: bool, top_k, groups: str, repeats, val: np.ndarray, path,
                      overwrite: bool) -> dict | None:
    """Check the importance options before anything is fitted; the grouping to rank, or None when not asked."""
    if not wanted:
        return None
    members = feature_groups(names, groups)
    check_int(repeats, "importance_repeats", 1)
    if not val.any():
        raise ParameterError("feature importance is measured on the validation rows, and the sample has none: "
                             "draw it with a validation share (--validation above 0, or --n-validation).")
    if top_k is not None:
        if groups == "feature":
            raise ParameterError("top_k (--top-k) retrains on feature groups: group the importance by 'family' or "
                                 "'band' (--importance-groups), not 'feature'.")
        check_int(top_k, f"top_k (--top-k), the number of feature groups to keep (the sample has {len(members)} "
                         f"{groups} group(s): {', '.join(members)})", 1, len(members))
    if path is not None:
        check_output(path, *importance_paths(path), overwrite=overwrite)
    return {"groups": groups, "repeats": repeats}


def _rank_features(model, metadata: dict, ranking: dict, table, X, y, train, val, refit: dict, top_k, path,
                   overwrite: bool):
    """Permutation importance on the validation rows; the refit on the top k groups; the report files."""
    import time

    family = refit["family"]
    scorer, scoring_name = scoring_for(family, y)
    start = time.perf_counter()
    names = list(table.feature_names)
    result = permutation_importance(model, X[val], y[val], names, groups=ranking["groups"],
                                    n_repeats=ranking["repeats"], seed=refit["seed"], scoring=scorer,
                                    scoring_name=scoring_name)
    metadata["importance"] = {**result.to_dict(), "seconds": round(time.perf_counter() - start, 3)}
    notes, kept = [], None
    if top_k is not None:
        kept = result.top(top_k)
        spec, bands, kept_names, columns = narrow_spec(table.attrs["feature_spec"], table.attrs["bands"],
                                                       result.top_features(top_k))
        all_features = metadata["validation"]
        start = time.perf_counter()
        model = build_model(family, task=refit["task"], seed=refit["seed"], threshold=refit["threshold"],
                            **(refit["params"] or {}))
        if family == "svm" and model.search:  # as the first fit: SampledSVC's own search, folds of whole blocks
            model.fit(X[train][:, columns], y[train], groups=refit["blocks"])
        else:
            model.fit(X[train][:, columns], y[train])
        if family == "multilabel":
            model.tune_thresholds(X[val][:, columns], y[val])
        ranges = metadata.get("band_ranges")
        metadata.update(feature_spec=spec.to_dict(), bands=bands, feature_names=kept_names,
                        band_ranges=None if ranges is None else {b: r for b, r in ranges.items() if b in bands},
                        fit_seconds=round(time.perf_counter() - start, 3),
                        validation=_validation_scores(model, X[val][:, columns], y[val], family))
        metadata["top_k"] = {"k": int(top_k), "groups": kept, "features": kept_names, "n_features_all": len(names),
                             "validation_all_features": all_features, "validation": metadata["validation"]}
        notes = [f"## Retrained on the top {top_k} group(s)",
                 f"Kept: {', '.join(f'`{g}`' for g in kept)} ({len(kept_names)} of {len(names)} features; bands "
                 f"{', '.join(bands)}). The saved model computes only these features.",
                 f"Validation with all features: {_scores_text(all_features)}.",
                 f"Validation with the top {top_k}: {_scores_text(metadata['validation'])}."]
    if path is not None:
        figure, markdown = importance_paths(path)
        importance_figure(result, figure, highlight=kept, overwrite=overwrite)
        importance_markdown(result, markdown, title=f"Permutation importance: {Path(path).name} ({family})",
                            notes=notes, overwrite=overwrite)
    return model


def _scores_text(scores: dict | None) -> str:
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in (scores or {}).items())


def _sample_size(y: np.ndarray, y_kind: str, train: np.ndarray, val: np.ndarray, class_names) -> dict:
    """Rows the model was fitted on and scored on; per class too when it learns classes."""
    size = {"train": int(train.sum()), "validation": int(val.sum())}
    if y_kind == "class" and class_names:
        for split, rows in (("train_per_class", train), ("validation_per_class", val)):
            counts = np.bincount(np.asarray(y[rows], dtype=np.int64), minlength=len(class_names))
            size[split] = {str(name): int(n) for name, n in zip(class_names, counts)}
    return size


def _targets_for(family: str, table, labels):
    """The y a family trains on: class codes, values, or a label matrix."""
    value = None if table.value is None else np.asarray(table.value)
    if family == "hurdle":
        if value is None and table.attrs.get("task") != "regression":
            raise SamplingError("the hurdle model needs the continuous target: draw the sample from a continuous "
                                "target (with --threshold, so the value is kept).")
        return (value if value is not None else np.asarray(table.y)), "value"
    if family == "multilabel":
        if value is None or not labels:
            raise SamplingError("multilabel needs a sample drawn from a continuous target and label thresholds "
                                "(e.g. --labels 0.3,0.6).")
        return np.column_stack([(value >= t).astype(int) for t in labels]), "labels"
    return np.asarray(table.y), "value" if table.attrs.get("task") == "regression" else "class"


def _validation_scores(model, X, y, family: str) -> dict:
    from sklearn import metrics

    if family == "hurdle":
        value = model.predict_value(X)
        return {"rmse": float(np.sqrt(metrics.mean_squared_error(y, value))), "rows": int(len(y))}
    prediction = model.predict(X)
    if family == "multilabel":
        return {"f1_per_label": metrics.f1_score(y, prediction, average=None).tolist(), "rows": int(len(y))}
    if np.issubdtype(np.asarray(y).dtype, np.floating):
        return {"r2": float(metrics.r2_score(y, prediction)),
                "rmse": float(np.sqrt(metrics.mean_squared_error(y, prediction))), "rows": int(len(y))}
    return {"accuracy": float(metrics.accuracy_score(y, prediction)),
            "balanced_accuracy": float(metrics.balanced_accuracy_score(y, prediction)), "rows": int(len(y))}


def _classes(plan: PixelPlan, which: int) -> np.ndarray | None:
    if plan.regression:
        return None
    present = np.flatnonzero(plan.counts[:, which] > 0)
    if present.size < 2:
        raise SamplingError(f"the {'training' if which == TRAIN else 'validation'} pixels hold only class(es) "
                            f"{present.tolist()}; a classifier needs at least two.")
    return np.flatnonzero(plan.counts.sum(axis=1) > 0)


def train_incremental(
    estimator,
    stack: xr.DataArray,
    target: xr.DataArray,
    spec,
    *,
    epochs: int = 3,
    split: SpatialSplit | None = None,
    which: int = TRAIN,
    thresholds=None,
    seed: int = 0,
    progress: ProgressMode = "auto",
):
    """Fit ``estimator.partial_fit`` on every eligible pixel of one split, tile by tile.

    Parameters
    ----------
    estimator : estimator with ``partial_fit``
        E.g. ``rastercore.models.KernelSGD()`` or ``sklearn.linear_model.SGDClassifier()``.
    stack, target, spec, split, thresholds, seed
        As in :func:`rastercore.sampling.draw_sample`.
    epochs : int, default 3
        Passes over the data; tiles are visited in a seeded random order per
        epoch and each tile's rows are shuffled.
    which : int, default TRAIN
        Split to train on (``rastercore.sampling.TRAIN`` or ``VALIDATION``).
    progress : {"auto", "bar", "json", "none"}
        One unit per tile per epoch.

    Returns
    -------
    estimator
        The fitted estimator, with ``n_pixels_seen_`` set.
    """
    plan = plan_pixels(stack, target, spec, split=split, thresholds=thresholds, seed=seed)
    estimator.n_pixels_seen_ = fit_streaming(estimator, plan, which=which, epochs=epochs, seed=seed,
                                             classes=_classes(plan, which), stage="train", progress=progress)
    return estimator


def pixel_arrays(
    stack: xr.DataArray,
    target: xr.DataArray,
    spec,
    *,
    split: SpatialSplit | None = None,
    which: int = TRAIN,
    thresholds=None,
    seed: int = 0,
) -> tuple[da.Array, da.Array, np.ndarray | None]:
    """Features and targets of every eligible pixel as dask arrays, one block per tile.

    Returns
    -------
    X : dask.array (n, n_features) float32, unknown block lengths
    y : dask.array (n,)
    classes : numpy.ndarray or None
        Class codes present (for ``partial_fit(..., classes=...)``); None for regression.
    """
    plan = plan_pixels(stack, target, spec, split=split, thresholds=thresholds, seed=seed)
    return plan_arrays(plan, which)


def plan_arrays(plan: PixelPlan, which: int = TRAIN) -> tuple[da.Array, da.Array, np.ndarray | None]:
    """:func:`pixel_arrays` of a plan already made (:func:`rastercore.sampling.plan_pixels`): no counting pass.

    Parameters
    ----------
    plan : rastercore.sampling.PixelPlan
    which : int, default TRAIN
        The split whose pixels are taken.

    Returns
    -------
    X, y, classes
        As :func:`pixel_arrays`.

    Raises
    ------
    SamplingError
        A classification split holding fewer than two classes.
    """
    classes = _classes(plan, which)
    n_features = plan.n_features
    y_dtype = np.float32 if plan.regression else np.int32
    xs, ys = [], []
    for task in plan.tile_tasks(plan.cutoff_all(which)):
        xs.append(da.from_delayed(dask.delayed(_rows_X)(task, n_features), shape=(np.nan, n_features),
                                  dtype=np.float32))
        ys.append(da.from_delayed(dask.delayed(_rows_y)(task, plan.regression), shape=(np.nan,), dtype=y_dtype))
    return da.concatenate(xs), da.concatenate(ys), classes


def _rows_X(rows, n_features):
    return np.zeros((0, n_features), np.float32) if rows is None else rows["X"]


def _rows_y(rows, regression):
    if rows is None:
        return np.zeros(0, np.float32 if regression else np.int32)
    return rows["value"] if regression else (rows["code"] // 2).astype(np.int32)

