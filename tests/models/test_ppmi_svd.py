"""PPMI on a small matrix, truncated SVD reconstruction, U Sigma^p vectors."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest

from dlnlp.errors import DlnlpError
from dlnlp.models.ppmi_svd import PPMIConfig, pmi_values, ppmi_svd_vectors, truncated_svd

HAS_SCIPY = importlib.util.find_spec("scipy") is not None

COUNTS = np.array([[0.0, 4.0, 1.0],
                   [4.0, 2.0, 0.0],
                   [1.0, 0.0, 6.0]])


def coo(dense):
    rows, cols = np.nonzero(dense)
    return rows, cols, dense[rows, cols]


def test_ppmi_by_hand_without_smoothing():
    rows, cols, values = coo(COUNTS)
    got = pmi_values(rows, cols, values, 3, cds=1.0, positive=False)
    total = COUNTS.sum()  # 18
    row_sums, col_sums = COUNTS.sum(1), COUNTS.sum(0)  # [5, 6, 7] both
    # PMI(0, 1) = log(4 * 18 / (5 * 6)) by hand.
    assert got[(rows == 0) & (cols == 1)][0] == pytest.approx(np.log(4 * 18 / 30))
    expected = np.log(values * total / (row_sums[rows] * col_sums[cols]))
    np.testing.assert_allclose(got, expected)
    positive = pmi_values(rows, cols, values, 3, cds=1.0)
    np.testing.assert_allclose(positive, np.maximum(expected, 0))
    assert (positive == 0).any() and (expected < 0).any()


def test_context_distribution_smoothing_and_shift():
    rows, cols, values = coo(COUNTS)
    col_sums = COUNTS.sum(0)
    smoothed = col_sums ** 0.75 / (col_sums ** 0.75).sum()
    p_wc = values / COUNTS.sum()
    p_w = COUNTS.sum(1)[rows] / COUNTS.sum()
    expected = np.log(p_wc / (p_w * smoothed[cols])) - np.log(5)
    got = pmi_values(rows, cols, values, 3, cds=0.75, shift=5, positive=False)
    np.testing.assert_allclose(got, expected)


@pytest.mark.parametrize("method", ["randomized", pytest.param("lanczos", marks=pytest.mark.skipif(
    not HAS_SCIPY, reason="scipy not installed"))])
def test_truncated_svd_reconstructs_a_low_rank_matrix(method):
    rng = np.random.default_rng(0)
    left = rng.normal(size=(60, 3)) * (rng.random((60, 1)) < 0.7)  # zero rows: a sparse product
    exact_rank3 = left @ rng.normal(size=(3, 50))
    u, s, vt = truncated_svd(*coo(exact_rank3), exact_rank3.shape, 3, method=method)
    np.testing.assert_allclose((u * s) @ vt, exact_rank3, atol=1e-8)
    np.testing.assert_allclose(u.T @ u, np.eye(3), atol=1e-8)
    # A full-rank sparse matrix: the top singular values, descending, and Eckart-Young's error.
    a = exact_rank3 + rng.normal(scale=0.05, size=exact_rank3.shape) * (rng.random(exact_rank3.shape) < 0.1)
    exact = np.linalg.svd(a, compute_uv=False)
    u, s, vt = truncated_svd(*coo(a), a.shape, 8, method=method)
    np.testing.assert_allclose(s[:3], exact[:3], rtol=1e-6)
    np.testing.assert_allclose(s, exact[:8], rtol=1e-2)
    assert np.all(np.diff(s) <= 1e-9)
    optimum = np.sqrt((exact[8:] ** 2).sum())
    assert optimum * (1 - 1e-9) <= np.linalg.norm(a - (u * s) @ vt) <= 1.01 * optimum


def test_vectors_are_u_sigma_to_the_p():
    rng = np.random.default_rng(1)
    dense = rng.poisson(2.0, size=(30, 30)).astype(float)
    dense = dense + dense.T
    rows, cols, values = coo(dense)
    half, s = ppmi_svd_vectors(rows, cols, values, 30, PPMIConfig(dim=5, eig=0.5))
    full, s_full = ppmi_svd_vectors(rows, cols, values, 30, PPMIConfig(dim=5, eig=1.0))
    assert half.shape == (30, 5) and half.dtype == np.float32
    np.testing.assert_allclose(s, s_full)
    np.testing.assert_allclose(np.abs(full), np.abs(half) * np.sqrt(s), rtol=1e-4, atol=1e-6)
    small, _ = ppmi_svd_vectors(*coo(COUNTS), 3, PPMIConfig(dim=3))
    assert small.shape == (3, 3)


def test_more_dimensions_than_words_is_an_error_naming_dim_and_the_vocabulary():
    # Issue #19: --dim 10000000 on a 313-word vocabulary padded a 313 x 10^7 matrix until killed.
    with pytest.raises(DlnlpError, match=r"--dim 10000000 exceeds the vocabulary size \(3 words\)"):
        ppmi_svd_vectors(*coo(COUNTS), 3, PPMIConfig(dim=10_000_000))


def test_an_svd_larger_than_memory_fails_before_it_starts(monkeypatch):
    import dlnlp.kernels.memory as memory

    monkeypatch.setattr(memory, "available", lambda device="cpu": (1 << 20, "available host memory"))
    dense = 3 * np.eye(300) + np.eye(300, k=1) + np.eye(300, k=5)  # sparse: the SVD is the big part
    with pytest.raises(DlnlpError, match=r"ppmi-svd needs about .* but available host memory is 1 MiB; lower --dim"):
        ppmi_svd_vectors(*coo(dense + dense.T), 300, PPMIConfig(dim=250))
    monkeypatch.setenv("DLNLP_MEMORY_CHECK", "0")  # the switch that turns the check off
    vectors, _ = ppmi_svd_vectors(*coo(dense + dense.T), 300, PPMIConfig(dim=250))
    assert vectors.shape == (300, 250)


def test_bad_config():
    for bad in (PPMIConfig(cds=0), PPMIConfig(shift=0), PPMIConfig(svd="qr"), PPMIConfig(dim=0)):
        with pytest.raises(ValueError):
            bad.validate()


@pytest.mark.parametrize(("changes", "message"), [
    ({"eig": -1.0}, "--eig must be in [0, 1], got -1"), ({"power_iterations": -1}, "--power-iterations"),
    ({"cds": 0.0}, "--cds"), ({"shift": float("nan")}, "--shift"), ({"svd": "qr"}, "--svd"), ({"dim": 0}, "--dim"),
])
def test_meaningless_options_are_refused_naming_them(changes, message):
    with pytest.raises(DlnlpError, match=re.escape(message)):
        PPMIConfig(**changes).validate()


@pytest.mark.parametrize(("args", "message"), [
    ((5, 1, float("nan"), None), "--memory must be > 0"), ((5, 1, 1.0, 0), "--max-vocab"),
    ((100000, 1, 1.0, None), "--window must be between 1 and 1000"), ((5, 0, 1.0, None), "--min-count"),
])
def test_counting_options_are_checked_before_any_work(args, message):
    from dlnlp.models.ppmi_svd import check_counting_options

    with pytest.raises(DlnlpError, match=re.escape(message)):
        check_counting_options(*args)
