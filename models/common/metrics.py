"""Classification metrics, defined as in pipeline/src/evaluate_classify.cpp."""
import itertools

import numpy as np

ECE_BINS = 15
SNR_EDGES = [0, 20, 30, 50, 100, 200, 1e30]


def softmax(logits, temperature=1.0, bias=None):
    """softmax(logits / temperature + bias), as the classify stage computes it."""
    z = logits / temperature
    if bias is not None:
        z = z + np.asarray(bias, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits, labels, temperature):
    p = softmax(logits.astype(np.float64), temperature)
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(labels)), labels], 1e-300))))


def fit_temperature(logits, labels):
    """The T minimising validation NLL: golden-section search on log T in [0.05, 20]."""
    lo, hi = np.log(0.05), np.log(20.0)
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(logits, labels, np.exp(a)), nll(logits, labels, np.exp(b))
    for _ in range(80):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(logits, labels, np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(logits, labels, np.exp(b))
    return float(np.exp((lo + hi) / 2))


BIAS_GRID = np.round(np.arange(-0.6, 0.6001, 0.05), 2)


def fit_decision_bias(logits, labels, temperature, classes, grid=BIAS_GRID):
    """Per-class logit offsets b (0 outside `classes`) for the decision argmax(logits / T + b):
    the b on `grid` (every combination for the classes in `classes`) that maximises the smallest
    per-class recall on these samples (the validation set), ties broken by the higher accuracy,
    then by the smaller sum of |b|. Returns (b, smallest recall, accuracy)."""
    z = logits.astype(np.float64) / temperature
    k = z.shape[1]
    present = [c for c in range(k) if (labels == c).any()]
    best = None
    for combo in itertools.product(grid, repeat=len(classes)):
        b = np.zeros(k)
        b[list(classes)] = combo
        pred = (z + b).argmax(axis=1)
        recalls = [float((pred[labels == c] == c).mean()) for c in present]
        key = (min(recalls), float((pred == labels).mean()), -float(np.abs(b).sum()))
        if best is None or key > best[0]:
            best = (key, b)
    (min_recall, accuracy, _), b = best
    return b, min_recall, accuracy


def expected_calibration_error(probs, labels, bins=ECE_BINS):
    """sum_b n_b/N |accuracy_b - mean confidence_b| over equal-width confidence bins (0, 1]."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def classification_report(probs, labels, snr, class_names):
    pred = probs.argmax(axis=1)
    k = len(class_names)
    confusion = np.zeros((k, k), dtype=int)
    for t, p in zip(labels, pred):
        confusion[t, p] += 1
    recall = {c: float(confusion[i, i] / max(1, confusion[i].sum()))
              for i, c in enumerate(class_names)}
    precision = {c: float(confusion[i, i] / max(1, confusion[:, i].sum()))
                 for i, c in enumerate(class_names)}
    snr_bins = []
    for lo, hi in zip(SNR_EDGES[:-1], SNR_EDGES[1:]):
        m = (snr >= lo) & (snr < hi)
        if m.any():
            snr_bins.append({"snr_min": lo, "snr_max": hi if hi < 1e29 else None,
                             "count": int(m.sum()),
                             "accuracy": float((pred[m] == labels[m]).mean())})
    return {
        "count": int(len(labels)),
        "accuracy": float((pred == labels).mean()),
        "ece": expected_calibration_error(probs, labels),
        "recall": recall,
        "precision": precision,
        "confusion": {"rows_true_cols_pred": class_names, "matrix": confusion.tolist()},
        "accuracy_vs_snr": snr_bins,
    }
