"""Permutation importance of a fitted model's features, grouped by feature family, on validation rows.

How much a model relies on a group of features is measured the way
scikit-learn's :func:`sklearn.inspection.permutation_importance` does it
(Breiman 2001): the validation rows are scored, then the columns of one
group are shuffled *together* (one row permutation applied to all of them,
so the group's own correlations are kept and only its link to the target is
broken) and scored again; the importance is the drop in score, averaged over
``n_repeats`` shuffles.  scikit-learn (1.9) permutes one column at a time,
so groups of several columns are permuted here, with scikit-learn's very
random streams: a group of one column gets exactly scikit-learn's numbers
for that column with the same seed, and with one column per group
scikit-learn's function is called itself.

Groups follow the feature spec (names such as ``box_mean(size=9)[HH]``):

* ``"family"``: one spec entry with its parameters, every band and output
  (``box_mean(size=9)``);
* ``"band"``: one spec entry on one band, every output
  (``box_mean(size=9)[HH]``, ``glcm(size=7,levels=16)[HV]``);
* ``"feature"``: every column alone.

:func:`narrow_spec` narrows a feature spec to some of its features, so a
model retrained on the most important groups computes only those at
prediction (:func:`rastercore.training.train_from_table` with ``top_k``).
:func:`importance_figure` and :func:`importance_markdown` report a table.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rastercore.checks import check_choice, check_int
from rastercore.errors import ParameterError

__all__ = ["GROUPINGS", "ImportanceTable", "feature_groups", "permutation_importance", "narrow_spec",
           "importance_figure", "importance_markdown", "scoring_for", "neg_rmse_of_value", "f1_macro"]

GROUPINGS = ("family", "band", "feature")
"""How columns are grouped: by spec entry, by spec entry and band, or one column each."""


def _split_name(name: str) -> tuple[str, str, str]:
    """``(head, band, label)`` of a feature name ``head[band]/label`` (band and label may be empty).

    The head is the kind with its parameters, e.g. ``box_mean(size=9)``;
    brackets and slashes inside the parentheses belong to the head.
    """
    depth = 0
    for i, char in enumerate(name):
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif depth == 0 and char in "[/":
            head, rest = name[:i], name[i:]
            band = ""
            if rest.startswith("["):
                end = rest.find("]")
                if end > 0:
                    band, rest = rest[1:end], rest[end + 1:]
            return head, band, rest[1:] if rest.startswith("/") else rest
    return name, "", ""


def _group_label(name: str, groups: str) -> str:
    if groups == "feature":
        return name
    head, band, _ = _split_name(name)
    return f"{head}[{band}]" if groups == "band" and band else head


def feature_groups(feature_names: Sequence[str], groups: str | Mapping[str, Sequence[str]] = "family"
                   ) -> dict[str, list[int]]:
    """The columns of each group of features, groups in the order their first column appears.

    Parameters
    ----------
    feature_names : sequence of str
        The columns' names, as a feature spec gives them
        (:meth:`rastercore.features.FeatureSpec.feature_names`).
    groups : {"family", "band", "feature"} or mapping, default "family"
        One of :data:`GROUPINGS` (see the module's notes), or
        ``{group name: [feature names]}``; columns no group names are not
        permuted.

    Returns
    -------
    dict
        ``{group name: [column index, ...]}``.

    Raises
    ------
    ParameterError
        An unknown grouping, a mapping that names an unknown feature, puts
        one in two groups, or has an empty group.
    """
    names = [str(n) for n in feature_names]
    if isinstance(groups, Mapping):
        index = {n: i for i, n in enumerate(names)}
        out, seen = {}, {}
        for label, members in groups.items():
            members = [members] if isinstance(members, str) else list(members)
            unknown = [m for m in members if m not in index]
            if unknown or not members:
                raise ParameterError(f"importance group {label!r} " + (
                    f"names feature(s) {unknown} that the model does not have (its features: {', '.join(names)})."
                    if unknown else "is empty; give it at least one feature."))
            twice = [m for m in members if m in seen]
            if twice:
                raise ParameterError(f"feature {twice[0]!r} is in importance groups {seen[twice[0]]!r} and "
                                     f"{label!r}; put each feature in one group.")
            seen.update({m: label for m in members})
            out[str(label)] = [index[m] for m in members]
        return out
    check_choice(groups, "groups (--importance-groups)", GROUPINGS)
    out: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        out.setdefault(_group_label(name, groups), []).append(i)
    return out


@dataclass
class ImportanceTable:
    """Permutation importance of groups of features, most important first.

    Attributes
    ----------
    groups : list of str
        Group names (``box_mean(size=9)``, ...), sorted by decreasing ``mean``.
    mean, std : numpy.ndarray
        Mean and standard deviation over the repeats of the drop in score
        when the group is shuffled.
    importances : numpy.ndarray
        ``(n_groups, n_repeats)`` drops, one per shuffle.
    features : list of list of str
        The columns of each group.
    scoring : str
        What was scored (``"balanced_accuracy"``, ``"r2"``, ...).
    baseline : float
        The score of the unshuffled rows.
    rows, n_repeats, seed : int
        Rows scored, shuffles per group and the seed.
    grouping : str
        ``"family"``, ``"band"``, ``"feature"`` or ``"custom"``.
    """

    groups: list[str]
    mean: np.ndarray
    std: np.ndarray
    importances: np.ndarray
    features: list[list[str]]
    scoring: str
    baseline: float
    rows: int
    n_repeats: int
    seed: int | None
    grouping: str

    def __len__(self) -> int:
        return len(self.groups)

    def top(self, k: int) -> list[str]:
        """The ``k`` most important groups (``1 <= k <= len(self)``), most important first."""
        check_int(k, "top_k (--top-k), the number of feature groups to keep", 1, len(self))
        return list(self.groups[:k])

    def top_features(self, k: int) -> list[str]:
        """The columns of the ``k`` most important groups, in the groups' order."""
        self.top(k)
        return [name for members in self.features[:k] for name in members]

    def to_dict(self) -> dict:
        """A JSON-able form (kept in a model file's metadata as ``importance``); :meth:`from_dict` reads it."""
        return {
            "scoring": self.scoring, "baseline": float(self.baseline), "rows": int(self.rows),
            "n_repeats": int(self.n_repeats), "seed": self.seed, "grouping": self.grouping,
            "groups": [{"group": g, "mean": float(m), "std": float(s), "features": list(f),
                        "drops": [float(v) for v in d]}
                       for g, m, s, f, d in zip(self.groups, self.mean, self.std, self.features, self.importances)],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "ImportanceTable":
        """The table of :meth:`to_dict` (e.g. ``metadata["importance"]`` of a model file)."""
        rows = list(data["groups"])
        drops = [r.get("drops") or [r["mean"]] for r in rows]
        width = max((len(d) for d in drops), default=0)
        return cls(groups=[r["group"] for r in rows], mean=np.array([r["mean"] for r in rows], float),
                   std=np.array([r["std"] for r in rows], float),
                   importances=np.array([list(d) + [np.nan] * (width - len(d)) for d in drops], float).reshape(
                       len(rows), width),
                   features=[list(r["features"]) for r in rows], scoring=data["scoring"],
                   baseline=float(data["baseline"]), rows=int(data["rows"]), n_repeats=int(data["n_repeats"]),
                   seed=data.get("seed"), grouping=data.get("grouping", "custom"))


def neg_rmse_of_value(estimator, X, y) -> float:
    """Minus the RMSE of ``estimator.predict_value(X)`` (a hurdle model's regressor) against ``y``."""
    value = np.asarray(estimator.predict_value(X), dtype=float)
    return -float(np.sqrt(np.mean((np.asarray(y, dtype=float) - value) ** 2)))


def f1_macro(estimator, X, y) -> float:
    """The F1 score averaged over labels (a multi-label model's ``predict`` against the label matrix ``y``)."""
    from sklearn.metrics import f1_score

    return float(f1_score(y, estimator.predict(X), average="macro", zero_division=0))


def scoring_for(family: str | None, y) -> tuple[str | object, str]:
    """The scorer :func:`rastercore.training.train_from_table` ranks groups by, and its name.

    Balanced accuracy for classes, R² for values, minus the RMSE of the
    regressor's value for a hurdle model (its validation score), macro F1
    for multi-label models.
    """
    if family == "hurdle":
        return neg_rmse_of_value, "neg_rmse (hurdle value)"
    if family == "multilabel" or np.ndim(y) == 2:
        return f1_macro, "f1_macro"
    if np.issubdtype(np.asarray(y).dtype, np.floating):
        return "r2", "r2"
    return "balanced_accuracy", "balanced_accuracy"


def permutation_importance(
    model,
    X_val,
    y_val,
    feature_names: Sequence[str],
    *,
    groups: str | Mapping[str, Sequence[str]] = "family",
    n_repeats: int = 5,
    seed: int | None = 0,
    scoring=None,
    scoring_name: str | None = None,
) -> ImportanceTable:
    """Permutation importance of groups of features on held-out rows (Breiman 2001).

    Parameters
    ----------
    model : fitted estimator
    X_val : array (n, n_features)
        Validation rows (not the rows the model was fitted on).
    y_val : array (n,) or (n, n_labels)
        Their targets.
    feature_names : sequence of str
        The columns' names (a sample table's ``feature_names``).
    groups : {"family", "band", "feature"} or mapping, default "family"
        How columns are grouped (:func:`feature_groups`); the columns of a
        group are shuffled together.
    n_repeats : int, default 5
        Shuffles per group.
    seed : int or None, default 0
        Seeds the shuffles exactly as ``random_state`` seeds scikit-learn's
        :func:`sklearn.inspection.permutation_importance`.
    scoring : str or callable, optional
        A scikit-learn scorer name or ``scorer(estimator, X, y)``; default
        the estimator's ``score``.
    scoring_name : str, optional
        How reports name ``scoring`` (default its name).

    Returns
    -------
    ImportanceTable
        Sorted by decreasing mean drop (ties keep the columns' order).

    Raises
    ------
    ParameterError
        No rows, a column count that differs from ``feature_names``,
        ``n_repeats < 1``, or bad ``groups``.
    """
    from sklearn.inspection import permutation_importance as sk_permutation_importance
    from sklearn.metrics import check_scoring
    from sklearn.utils import check_random_state

    X = np.asarray(X_val)
    y = np.asarray(y_val)
    names = [str(n) for n in feature_names]
    check_int(n_repeats, "n_repeats", 1)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ParameterError("permutation importance needs validation rows, and there are none: draw the sample "
                             "with a validation share (--validation, --n-validation).")
    if X.shape[1] != len(names):
        raise ParameterError(f"the validation rows have {X.shape[1]} columns but {len(names)} feature names "
                             "are given.")
    if len(y) != len(X):
        raise ParameterError(f"the validation rows have {len(X)} rows but {len(y)} targets.")
    members = feature_groups(names, groups)
    grouping = groups if isinstance(groups, str) else "custom"
    if scoring_name is None:
        scoring_name = scoring if isinstance(scoring, str) else getattr(scoring, "__name__", "score")
    if all(len(cols) == 1 for cols in members.values()) and [c[0] for c in members.values()] == list(range(len(names))):
        bunch = sk_permutation_importance(model, X, y, scoring=scoring, n_repeats=n_repeats, random_state=seed)
        drops = np.asarray(bunch.importances, dtype=float)
        baseline = float(check_scoring(model, scoring=scoring)(model, X, y))
    else:
        scorer = check_scoring(model, scoring=scoring)
        baseline = float(scorer(model, X, y))
        # the streams of scikit-learn's permutation_importance: one seed drawn from random_state, and every
        # column (here every group) shuffled by a RandomState of that seed, the index permuted in place
        stream_seed = check_random_state(seed).randint(np.iinfo(np.int32).max + 1)
        drops = np.empty((len(members), n_repeats))
        for g, cols in enumerate(members.values()):
            state = np.random.RandomState(stream_seed)
            shuffled = X.copy()
            order = np.arange(len(X))
            for r in range(n_repeats):
                state.shuffle(order)
                shuffled[:, cols] = shuffled[np.ix_(order, cols)]
                drops[g, r] = baseline - float(scorer(model, shuffled, y))
    labels = list(members)
    mean, std = drops.mean(axis=1), drops.std(axis=1)
    ranking = sorted(range(len(labels)), key=lambda i: (-mean[i], i))
    return ImportanceTable(groups=[labels[i] for i in ranking], mean=mean[ranking], std=std[ranking],
                           importances=drops[ranking], features=[[names[c] for c in members[labels[i]]]
                                                                 for i in ranking],
                           scoring=str(scoring_name), baseline=baseline, rows=int(len(X)), n_repeats=n_repeats,
                           seed=int(seed) if isinstance(seed, numbers.Integral) else None, grouping=grouping)


def narrow_spec(spec, bands: Sequence[str], keep: Sequence[str]):
    """A feature spec narrowed to the features named ``keep``, and the bands and columns it leaves.

    Per-band entries keep only the bands some kept output is computed on
    (listed explicitly); other entries are kept whole when any of their
    outputs is kept; normalisation is kept as it is.  The outputs of the
    narrowed spec are the kept features in the original column order.

    Parameters
    ----------
    spec : FeatureSpec, dict or list
        The spec a sample table was drawn with (``attrs["feature_spec"]``).
    bands : sequence of str
        The bands the columns were computed from (``attrs["bands"]``).
    keep : sequence of str
        Feature names to keep.

    Returns
    -------
    spec : FeatureSpec
    bands : list of str
        The bands the narrowed spec reads, in the original order.
    names : list of str
        Its feature names.
    columns : list of int
        Where each of them is among the original columns.

    Raises
    ------
    ParameterError
        ``keep`` is empty, names an unknown feature, or splits the outputs of
        one entry on one band (group by ``"family"`` or ``"band"`` to narrow).
    """
    from rastercore.features import FeatureSpec

    spec = FeatureSpec.coerce(spec)
    bands = list(bands)
    names = spec.feature_names(bands)
    keep = set(keep)
    unknown = sorted(keep - set(names))
    if not keep or unknown:
        raise ParameterError("nothing to narrow the feature spec to." if not keep else
                             f"the feature spec has no feature(s) {unknown}.")
    entries = []
    for feature in spec.features:
        plain = feature.to_dict()
        if feature.kind.per_band:
            kept = []
            for band in feature.input_bands(bands):
                outputs = type(feature).from_dict({**plain, "bands": [band]}).output_names(bands)
                if keep.intersection(outputs):
                    kept.append(band)
            if kept:
                entries.append({**plain, "bands": kept})
        elif keep.intersection(feature.output_names(bands)):
            entries.append(plain)
    normalize = spec.normalizer if spec.normalizer is not None else spec.normalize_options
    narrowed = FeatureSpec(entries, normalize=normalize)
    new_bands = narrowed.input_bands(bands)
    new_names = narrowed.feature_names(new_bands)
    extra = [n for n in new_names if n not in keep]
    if extra or not set(new_names) <= set(names):
        raise ParameterError(f"the features {sorted(keep)} cannot be computed without {extra} (outputs of the same "
                             "feature and band); group the importance by family or band to retrain on the top k.")
    return narrowed, new_bands, new_names, [names.index(n) for n in new_names]


def _check_new(path, overwrite: bool) -> Path:
    from rastercore.store import check_output

    check_output(path, overwrite=overwrite)
    return Path(path)


def _publish_to(path, overwrite: bool, write) -> Path:
    """Build ``path`` at ``<path>.partial`` with ``write(partial)`` and rename it (:func:`rastercore.store.writing`)."""
    from rastercore.store import writing

    with writing(path, overwrite=overwrite) as partial:
        write(partial)
    return Path(path)


def importance_figure(table: ImportanceTable, path: str | os.PathLike, *, title: str | None = None,
                      highlight: Sequence[str] | None = None, overwrite: bool = False) -> Path:
    """A PNG of the table: one horizontal bar per group (mean drop) with its standard deviation as an error bar.

    The most important group is at the top.  The title names the score and
    the rows it was measured on; ``highlight`` groups (e.g. the ones a
    model was retrained on) are drawn in another colour, keyed in a legend.
    Built at ``<path>.partial`` and renamed when complete.

    Returns
    -------
    pathlib.Path
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    path = _check_new(path, overwrite)
    n = len(table)
    fig = Figure(figsize=(9, 1.9 + 0.34 * max(n, 1)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    marked = set(highlight or ())
    base, kept = "#8c8c8c", "#1f78b4"
    colors = [kept if g in marked else base for g in table.groups] if marked else [kept] * n
    positions = np.arange(n)
    ax.barh(positions, table.mean, xerr=table.std, color=colors, ecolor="black", capsize=3, height=0.7)
    ax.set_yticks(positions, [_short(g) for g in table.groups])
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"drop in {table.scoring} when the group is shuffled (mean ± std of {table.n_repeats})")
    ax.set_ylabel(f"feature group ({table.grouping})")
    ax.grid(axis="x", alpha=0.3)
    if marked:
        ax.legend(handles=[Patch(color=kept, label=f"kept (top {len(marked)})"), Patch(color=base, label="left out")],
                  loc="lower right")
    ax.set_title(title or f"Permutation importance on {table.rows:,} validation rows\n"
                          f"baseline {table.scoring} {table.baseline:.4g}")
    return _publish_to(path, overwrite, lambda partial: fig.savefig(partial, format="png", dpi=100))


def _short(label: str, width: int = 60) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def _number(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.4f}"


def importance_markdown(table: ImportanceTable, path: str | os.PathLike | None = None, *, title: str | None = None,
                        notes: Sequence[str] = (), overwrite: bool = False) -> str:
    """The table in Markdown: rank, group, mean drop, standard deviation and the group's features.

    Parameters
    ----------
    table : ImportanceTable
    path : path-like, optional
        Also write it there (built at ``<path>.partial``, then renamed).
    title : str, optional
        The heading (default ``Permutation importance``).
    notes : sequence of str
        Paragraphs added after the table (e.g. the scores of a retrained model).
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    str
    """
    if path is not None:
        _check_new(path, overwrite)
    lines = [f"# {title or 'Permutation importance'}", "",
             f"Drop in {table.scoring} on {table.rows:,} validation rows when the columns of a feature group are "
             f"shuffled together, mean and standard deviation over {table.n_repeats} shuffles (seed {table.seed}); "
             f"baseline {table.scoring} {_number(table.baseline)}. Groups: {table.grouping}.", "",
             "| rank | group | mean drop | std | features |", "|---:|---|---:|---:|---|"]
    for rank, (group, mean, std, members) in enumerate(zip(table.groups, table.mean, table.std, table.features), 1):
        cells = [str(rank), f"`{group}`", _number(mean), _number(std), ", ".join(f"`{m}`" for m in members)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    for note in notes:
        lines += ["", note]
    text = "\n".join(lines) + "\n"
    if path is not None:
        _publish_to(path, overwrite, lambda partial: Path(partial).write_text(text))
    return text
