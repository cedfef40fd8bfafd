import numpy as np
import pytest
from sklearn.metrics import r2_score
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from rastercore.errors import TrainingDataError
from rastercore.models import HurdleModel


@pytest.fixture
def field():
    """A smooth target in [0, 1] of three features; about a third of it >= 0.6."""
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, size=(1200, 3))
    y = np.clip(0.7 * X[:, 0] + 0.3 * np.sin(3 * X[:, 1]) + rng.normal(scale=0.02, size=1200), 0, 1)
    return X[:800], y[:800], X[800:], y[800:]


def test_parts_are_the_plain_estimators_on_their_rows(field):
    X, y, Xt, _ = field
    model = HurdleModel(classifier=DecisionTreeClassifier(max_depth=5, random_state=0),
                        regressor=DecisionTreeRegressor(max_depth=5, random_state=0),
                        threshold=0.6).fit(X, y)
    above = y >= 0.6
    clf = DecisionTreeClassifier(max_depth=5, random_state=0).fit(X, above.astype(int))
    reg = DecisionTreeRegressor(max_depth=5, random_state=0).fit(X[~above], y[~above])
    np.testing.assert_array_equal(model.predict_class(Xt), clf.predict(Xt))
    np.testing.assert_array_equal(model.predict_value(Xt), reg.predict(Xt))
    assert (model.n_above_, model.n_below_) == (above.sum(), (~above).sum())


def test_predict_combines_class_and_value(field):
    X, y, Xt, yt = field
    model = HurdleModel(threshold=0.6, random_state=0).fit(X, y)
    cls, value = model.predict_class(Xt), model.predict_value(Xt)
    np.testing.assert_array_equal(model.predict(Xt), np.where(cls == 1, 0.6, np.minimum(value, 0.6)))
    assert np.mean(cls == (yt >= 0.6)) >= 0.9
    below = (yt < 0.6) & (cls == 0)
    assert np.corrcoef(value[below], yt[below])[0, 1] >= 0.9
    # against the truth as the hurdle sees it (everything above the threshold is "at threshold")
    assert r2_score(np.minimum(yt, 0.6), model.predict(Xt)) >= 0.85

    marked = HurdleModel(threshold=0.6, above_value=np.nan, clip=False, random_state=0).fit(X, y)
    out = marked.predict(Xt)
    np.testing.assert_array_equal(np.isnan(out), marked.predict_class(Xt) == 1)
    np.testing.assert_array_equal(out[~np.isnan(out)], marked.predict_value(Xt)[~np.isnan(out)])


def test_seeded_defaults_are_reproducible(field):
    X, y, Xt, _ = field
    a = HurdleModel(random_state=0).fit(X, y)
    b = HurdleModel(random_state=0).fit(X, y)
    np.testing.assert_array_equal(a.predict(Xt), b.predict(Xt))
    assert a.classifier_.random_state == b.classifier_.random_state is not None
    assert HurdleModel().classifier is None  # the parameter itself is never replaced


@pytest.mark.parametrize("y_value,side", [(0.1, "below"), (0.9, "at or above")])
def test_one_sided_target_is_a_clear_error(y_value, side):
    X = np.random.default_rng(0).uniform(size=(30, 2))
    with pytest.raises(TrainingDataError, match=rf"both sides of threshold=0.6.*all 30 rows are {side}"):
        HurdleModel(threshold=0.6).fit(X, np.full(30, y_value))
