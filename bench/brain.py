"""Speed of the brain stage's ridge fit against scikit-learn's RidgeCV(alpha_per_target=True).

    python bench/brain.py [--stimuli 2000] [--features 384] [--neuroids 5000] [--test 500] [--rounds 3]

Synthetic encoding data: X [stimuli + test, features] standard normal, Y = X W + noise with a
signal-to-noise ratio spread over the neuroids (float32). Every contender fits the `--stimuli`
training rows with 15 alphas (logspace -2..5), a regularisation per neuroid, and predicts the
`--test` held-out rows; printed are medians over interleaved rounds of

  sklearn       : sklearn.linear_model.RidgeCV(alphas, alpha_per_target=True) (its efficient
                  leave-one-out, float64), on the default BLAS threads and on one (threadpoolctl)
  ours (loo)    : cortexlens.brain.ridge, exact leave-one-out selection, float32 (the stage's dtype)
  ours (loo64)  : the same in float64
  ours (5-fold) : 5-fold selection (the stage's grouped k-fold, here ungrouped), float32
  himalaya      : himalaya.ridge.RidgeCV(alphas, cv=5), torch backend (reference)

then ours/sklearn (target <= 1.0) and, against scikit-learn's predictions, the alphas chosen alike
and the largest difference of held-out r per neuroid (target: identical scores). Our contenders run
on one thread, as the stage runs them (its fits run in parallel processes, one thread each).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from bench.common import time_rounds
from cortexlens.brain.ridge import AlphaSelector, RidgeGeometry, one_thread, pearson_columns

ALPHAS = tuple(float(a) for a in np.logspace(-2, 5, 15))


def data(n: int, n_test: int, p: int, targets: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n + n_test, p), dtype=np.float32)
    W = rng.standard_normal((p, targets), dtype=np.float32) / np.sqrt(p)
    noise = rng.standard_normal((n + n_test, targets), dtype=np.float32) * np.geomspace(0.3, 10, targets, dtype=np.float32)
    Y = X @ W + noise
    return X[:n], Y[:n], X[n:], Y[n:]


def ours(X: np.ndarray, Y: np.ndarray, X_test: np.ndarray, inner: str, dtype: torch.dtype) -> tuple[np.ndarray, ...]:
    with one_thread():
        X_t, Y_t = torch.as_tensor(X, dtype=dtype), torch.as_tensor(Y, dtype=dtype)
        splits = [] if inner == "loo" else list(_kfold(len(X), 5))
        index = AlphaSelector(X_t, ALPHAS, inner, splits).select(Y_t)
        predicted = RidgeGeometry(X_t, ALPHAS).predict(torch.as_tensor(X_test, dtype=dtype), Y_t, index)
    return np.asarray(ALPHAS)[index.numpy()], predicted.double().numpy()


def _kfold(n: int, k: int):
    from sklearn.model_selection import KFold

    yield from KFold(k).split(np.zeros(n))


def sklearn_fit(X: np.ndarray, Y: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.linear_model import RidgeCV

    model = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(X, Y)
    return model.alpha_, model.predict(X_test)


def _one_blas_thread(fn, *args):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return fn(*args)


def himalaya_fit(X: np.ndarray, Y: np.ndarray, X_test: np.ndarray) -> np.ndarray:
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV

    backend = set_backend("torch", on_error="warn")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = RidgeCV(alphas=np.asarray(ALPHAS), cv=5, fit_intercept=True).fit(X, Y)
            return backend.to_numpy(model.predict(X_test))
    finally:
        set_backend("numpy")


def held_out_r(predicted: np.ndarray, Y_test: np.ndarray) -> np.ndarray:
    return pearson_columns(torch.as_tensor(predicted, dtype=torch.float64),
                           torch.as_tensor(Y_test, dtype=torch.float64)).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stimuli", type=int, default=2000)
    parser.add_argument("--features", type=int, default=384)
    parser.add_argument("--neuroids", type=int, default=5000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    X, Y, X_test, Y_test = data(args.stimuli, args.test, args.features, args.neuroids)
    out: dict[str, tuple] = {}
    contenders = {
        "sklearn": lambda: out.__setitem__("sklearn", sklearn_fit(X, Y, X_test)),
        "sklearn (1 thr)": lambda: out.__setitem__("sklearn1", _one_blas_thread(sklearn_fit, X, Y, X_test)),
        "ours (loo)": lambda: out.__setitem__("loo", ours(X, Y, X_test, "loo", torch.float32)),
        "ours (loo64)": lambda: out.__setitem__("loo64", ours(X, Y, X_test, "loo", torch.float64)),
        "ours (5-fold)": lambda: out.__setitem__("kfold", ours(X, Y, X_test, "kfold", torch.float32)),
        "himalaya": lambda: out.__setitem__("himalaya", (None, himalaya_fit(X, Y, X_test))),
    }
    print(f"{args.stimuli} stimuli x {args.features} features x {args.neuroids} neuroids, {len(ALPHAS)} alphas, "
          f"{args.test} held-out rows; median of {args.rounds} interleaved rounds (torch threads: "
          f"{torch.get_num_threads()}, ours on 1)")
    times = time_rounds(contenders, args.rounds)
    reference_alpha, reference_pred = out["sklearn"]
    r_ref = held_out_r(reference_pred, Y_test)
    print(f"  {'contender':14s} {'fit+predict':>11s}  {'/ sklearn':>9s}  {'alphas as sklearn':>17s}  "
          f"{'max |r - r_sklearn|':>19s}  {'median r':>8s}")
    for name, key in (("sklearn", "sklearn"), ("sklearn (1 thr)", "sklearn1"), ("ours (loo)", "loo"), ("ours (loo64)", "loo64"),
                      ("ours (5-fold)", "kfold"), ("himalaya", "himalaya")):
        alpha, predicted = out[key]
        r = held_out_r(predicted, Y_test)
        same = "-" if alpha is None else f"{np.mean(alpha == reference_alpha):.4f}"
        print(f"  {name:14s} {times[name]:10.2f}s  {times[name] / times['sklearn']:9.2f}  {same:>17s}  "
              f"{np.abs(r - r_ref).max():19.2e}  {np.median(r):8.4f}")
    ratio = times["ours (loo)"] / times["sklearn"]
    print(f"ours/sklearn = {ratio:.2f} (target <= 1.0), on one thread each "
          f"{times['ours (loo)'] / times['sklearn (1 thr)']:.2f}; max |r - r_sklearn| = "
          f"{np.abs(held_out_r(out['loo'][1], Y_test) - r_ref).max():.1e}")


if __name__ == "__main__":
    main()
