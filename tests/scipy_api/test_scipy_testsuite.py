"""scipy's own test file for ``least_squares``, run against ``sparselm.least_squares``.

The test module shipped inside the installed scipy wheel
(``scipy/optimize/tests/test_least_squares.py``) is imported as it is, its module-level name
``least_squares`` is pointed at sparselm's for the duration of each test, and its test classes and
functions are collected here. Nothing is copied: a scipy upgrade brings its new tests along.

Every test that fails because of a feature sparselm refuses on purpose is listed in ``REFUSED``
with the reason; it is marked strict-xfail, so a refusal that starts passing (a stale entry) fails
as well as any other new failure. ``TestDogbox`` is not collected: method='dogbox' is refused as a
whole (``test_dogbox_is_refused`` checks the refusal and its message).
"""
import functools

import pytest

import sparselm
import scipy.optimize.tests.test_least_squares as upstream


#: (class name or None for module-level tests, test name) -> (reason, exception the refusal raises)
REFUSED = {
    (None, "test_callback"): ("method='dogbox' is refused (use the default method='trf')", ValueError),
}


@pytest.fixture(autouse=True)
def redirected(monkeypatch):
    """scipy's test module calls sparselm.least_squares while a test runs."""
    monkeypatch.setattr(upstream, "least_squares", sparselm.least_squares)


def _refused(function, reason, raises):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        return function(*args, **kwargs)

    return pytest.mark.xfail(strict=True, raises=raises, reason=reason)(wrapper)


def _collected_class(name):
    base = getattr(upstream, name)
    body = {}
    for (owner, test), (reason, raises) in REFUSED.items():
        if owner == name:
            body[test] = _refused(getattr(base, test), reason, raises)
    return type(name, (base,), body)


TestTRF = _collected_class("TestTRF")
TestLM = _collected_class("TestLM")

for _name in dir(upstream):
    if _name.startswith("test_") and callable(getattr(upstream, _name)):
        _entry = REFUSED.get((None, _name))
        globals()[_name] = getattr(upstream, _name) if _entry is None else _refused(getattr(upstream, _name), *_entry)


def test_refusal_list_names_existing_tests():
    """Every REFUSED entry names a test that scipy's file still has."""
    for owner, test in REFUSED:
        holder = upstream if owner is None else getattr(upstream, owner)
        assert callable(getattr(holder, test, None)), (owner, test)


def test_dogbox_is_refused():
    with pytest.raises(ValueError, match="dogbox.*method='trf'"):
        sparselm.least_squares(upstream.fun_trivial, 2.0, method="dogbox")
