"""Reads the FITS cube and labels.csv that `astroflow simulate cutouts --single-file` writes.

astropy is not needed: the primary HDU of the cube is a plain image (BITPIX -32 or -64, NAXIS3 =
number of stamps), so the header cards and the big-endian data block are parsed here directly.
"""
import csv
import os

import numpy as np

_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


def read_primary_image(path):
    """(header dict, array with shape (NAXIS3, NAXIS2, NAXIS1)) of the primary HDU."""
    header = {}
    with open(path, "rb") as f:
        ended = False
        while not ended:
            block = f.read(2880)
            if len(block) < 2880:
                raise ValueError(f"{path}: truncated FITS header")
            for i in range(0, 2880, 80):
                card = block[i:i + 80].decode("ascii", "replace")
                key = card[:8].strip()
                if key == "END":
                    ended = True
                    break
                if card[8:10] == "= ":
                    value = card[10:].split("/")[0].strip()
                    header[key] = value
        bitpix = int(header["BITPIX"])
        naxis = int(header["NAXIS"])
        shape = [int(header[f"NAXIS{k}"]) for k in range(naxis, 0, -1)]
        count = int(np.prod(shape))
        data = np.frombuffer(f.read(count * abs(bitpix) // 8), dtype=_DTYPES[bitpix])
    data = data.reshape(shape).astype(np.float64 if bitpix == -64 else np.float32)
    bscale = float(header.get("BSCALE", 1.0))
    bzero = float(header.get("BZERO", 0.0))
    if bscale != 1.0 or bzero != 0.0:
        data = data * bscale + bzero
    if data.ndim == 2:
        data = data[None]
    return header, data.astype(np.float32)


def read_labels(path):
    """labels.csv as a list of dicts (strings)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load_cutout_set(folder, cube_name="cutouts.fits"):
    """stamps (N, H, W) float32, class ids (N,) int64, S/N (N,) float64, label rows."""
    _, stamps = read_primary_image(os.path.join(folder, cube_name))
    rows = read_labels(os.path.join(folder, "labels.csv"))
    if len(rows) != len(stamps):
        raise ValueError(f"{folder}: {len(stamps)} stamps but {len(rows)} labels")
    ids = np.array([int(r["CLASS_ID"]) for r in rows], dtype=np.int64)
    snr = np.array([float(r["SNR"]) for r in rows], dtype=np.float64)
    return stamps, ids, snr, rows
