"""The normalisation of a model card, in numpy, matching pipeline/src/preprocess.cpp.

Training and inference must see identical inputs, so this follows the C++ arithmetic step by
step (float64 statistics, population standard deviation, median = mean of the two middle values
for an even count). tests/unit/model_reference_test.cpp checks the agreement on each model's
saved reference stamps.
"""
import numpy as np


def sigma_clipped_stats(stamp, nsigma=3.0, iterations=5):
    """Median and population std of the finite pixels after iterative sigma clipping."""
    kept = np.asarray(stamp, dtype=np.float64).ravel()
    kept = kept[np.isfinite(kept)]
    if kept.size == 0:
        return 0.0, 0.0, 0
    median = std = 0.0
    for it in range(iterations + 1):
        median = float(np.median(kept))
        std = float(np.sqrt(np.mean((kept - kept.mean()) ** 2)))
        if it == iterations or std == 0.0:
            break
        nxt = kept[np.abs(kept - median) <= nsigma * std]
        if nxt.size == kept.size or nxt.size == 0:
            break
        kept = nxt
    return median, std, kept.size


def normalise_stamp(stamp, method="asinh", background="median_clip", scale=3.0,
                    clip_sigma=3.0, clip_iterations=5):
    """One stamp -> float32 network input; NaN pixels take the background value."""
    x = np.asarray(stamp, dtype=np.float64)
    finite = np.isfinite(x)
    if not finite.any():
        raise ValueError("no finite pixel in the stamp")
    bkg, rms = 0.0, 1.0
    if background == "median_clip":
        bkg, rms, _ = sigma_clipped_stats(x, clip_sigma, clip_iterations)
    if not (rms > 0.0) or not np.isfinite(rms):
        rms = 1.0
    x = np.where(finite, x, bkg)
    if method == "none":
        return x.astype(np.float32)
    t = (x - bkg) / (scale * rms)
    return (np.arcsinh(t) if method == "asinh" else t).astype(np.float32)


def normalise_batch(stamps, norm):
    """stamps: (N, H, W) -> (N, 1, H, W) float32 using the card's normalisation dict."""
    out = np.empty((len(stamps), 1) + tuple(stamps.shape[1:]), dtype=np.float32)
    for i, s in enumerate(stamps):
        out[i, 0] = normalise_stamp(s, **norm)
    return out
