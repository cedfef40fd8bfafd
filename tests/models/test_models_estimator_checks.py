"""Every estimator passes scikit-learn's estimator checks (tiny settings, so the checks stay fast)."""

from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks

from rastercore.models import (CascadeSVC, HurdleModel, KernelSGD, KernelSGDRegressor,
                               SampledSVC, ShardedForestClassifier, ShardedForestRegressor,
                               ThresholdedMultiLabel)

ESTIMATORS = [
    SampledSVC(search=False, random_state=0),
    SampledSVC(param_grid={"C": [1.0, 10.0]}, cv=2, n_samples=60, random_state=0),
    SampledSVC(search=False, probability=True, random_state=0),
    CascadeSVC(n_shards=3, random_state=0),
    CascadeSVC(n_shards=2, feedback=True, probability=True, random_state=0),
    KernelSGD(n_components=20, max_iter=20, tol=None, random_state=0),
    KernelSGD(kernel="rbf_sampler", loss="log_loss", n_components=20, max_iter=20, tol=None, random_state=0),
    KernelSGDRegressor(n_components=20, max_iter=20, tol=None, random_state=0),
    KernelSGDRegressor(kernel=None, max_iter=50, random_state=0),
    ShardedForestClassifier(n_shards=2, n_estimators_per_shard=3, random_state=0),
    ShardedForestRegressor(n_shards=2, n_estimators_per_shard=3, random_state=0),
    HurdleModel(classifier=DecisionTreeClassifier(max_depth=3), regressor=DecisionTreeRegressor(max_depth=3),
                threshold=0.5, random_state=0),
    ThresholdedMultiLabel(random_state=0),
]

_PROBABILITY_VS_PREDICT = (
    "with probability=True, predict follows the SVC's decision function while predict_proba "
    "comes from a separately fitted calibration, so argmax(predict_proba) can differ from "
    "predict for a row right at the boundary (one of the check's 200) -- the same, documented, "
    "behaviour as scikit-learn's SVC(probability=True)"
)
_ONE_SIDED_TARGET = (
    "the check's target lies entirely on one side of the hurdle threshold (every value >= 0.5), "
    "which HurdleModel refuses with a TrainingDataError on purpose: a hurdle model needs rows "
    "on both sides"
)


def expected_failed_checks(estimator):
    """Checks that cannot apply to one configuration, each with the reason."""
    if isinstance(estimator, CascadeSVC) and estimator.probability:
        return {"check_classifiers_train": _PROBABILITY_VS_PREDICT}
    if isinstance(estimator, KernelSGDRegressor) and estimator.kernel is not None:
        return {"check_regressors_train": (
            "the check needs R² > 0.5 on a target linear in 10 features, 200 rows, with the "
            "alpha=0.01 the check imposes; a 20-component RBF approximation is the wrong model "
            "for a linear target (R² about 0.4). The kernel=None instance passes this check.")}
    if isinstance(estimator, HurdleModel):
        return {"check_estimators_dtypes": _ONE_SIDED_TARGET, "check_fit2d_1feature": _ONE_SIDED_TARGET}
    return {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
