"""quantization_config against the tensors: FP8 weights and their scales."""

from __future__ import annotations

import math

import numpy as np

from .. import codes
from ..config import not_convert_match
from ..context import ScanContext
from ..frame import Frame
from ..shard import DTYPE_NAMES
from ..taxonomy import KIND_CODE

_FMT_TO_DTYPE = {
    "e4m3": "F8_E4M3", "float8_e4m3fn": "F8_E4M3", "e4m3fn": "F8_E4M3",
    "e5m2": "F8_E5M2", "float8_e5m2": "F8_E5M2",
    "float8_e4m3fnuz": "F8_E4M3FNUZ", "e4m3fnuz": "F8_E4M3FNUZ",
}
# Producers whose scales are multipliers named weight_scale (not DeepSeek's _inv).
_MULTIPLIER_METHODS = frozenset({"compressed-tensors", "modelopt"})


def check(ctx: ScanContext) -> None:
    frame, fs, qc = ctx.frame, ctx.findings, ctx.quant
    is_fp8 = ctx.fp8
    if qc is None:
        if is_fp8.any():
            fs.add(codes.finding("fp8-without-config",
                                 f"{int(is_fp8.sum())} FP8 tensors but config.json has no "
                                 "quantization_config: loaders will not know the block size",
                                 str(ctx.ckpt.path)))
        return
    for p in qc.problems:
        if p.key.endswith("weight_block_size") or p.key.endswith(".fmt"):
            fs.add(codes.finding("quant-config-invalid", p.message, ctx.where_config, key=p.key))
        else:
            fs.add(codes.finding("config-value", p.message, ctx.where_config, key=p.key))
    dname = frame.dtype_name
    want_dtype = _FMT_TO_DTYPE.get((qc.fmt or "").lower())
    if want_dtype is not None:
        other = is_fp8 & (frame.dtype != DTYPE_NAMES.index(want_dtype))
        fs.rows("fp8-format-mismatch", np.flatnonzero(other),
                lambda i: f"{dname(i)} but quantization_config fmt is {qc.fmt!r}")

    scale_of, weight_of = ctx.scale_pairs
    scale_rows = np.flatnonzero(frame.kind == KIND_CODE["scale"])
    paired = scale_rows[weight_of[scale_rows] >= 0]
    named = _has_scale_suffix(frame, scale_rows)
    orphans = scale_rows[(weight_of[scale_rows] < 0) & named]
    fs.rows("scale-orphan", orphans, lambda i: "no weight of this name exists",
            absent=lambda i: _weight_name(frame.name(i)))
    w_of_s = weight_of[paired]
    fs.rows("scale-on-unquantized", paired[~is_fp8[w_of_s]],
            lambda i: f"its weight {frame.name(int(weight_of[i]))} is "
                      f"{dname(int(weight_of[i]))}")
    fp8_pairs = paired[is_fp8[w_of_s]]
    # Block scales (weight_scale_inv, DeepSeek's convention) are F32, or E8M0
    # where the config says ue8m0; multipliers (weight_scale, scale_weight of
    # compressed-tensors / ModelOpt exports) may be any float type.
    block = ctx.block_scale_template[frame.template[fp8_pairs]] if len(fp8_pairs) \
        else np.zeros(0, bool)
    for rows, ok_dtypes in (
            (fp8_pairs[block], {"F32"} | ({"F8_E8M0"} if qc.ue8m0 else set())),
            (fp8_pairs[~block], {"F32", "BF16", "F16", "F8_E8M0"})):
        ok_codes = [DTYPE_NAMES.index(d) for d in ok_dtypes]
        want_txt = " or ".join(sorted(ok_dtypes))

        def wrong_dtype(i: int, want: str = want_txt) -> str:
            return f"scale is {dname(i)}, expected {want}"

        fs.rows("scale-dtype", rows[~np.isin(frame.dtype[rows], ok_codes)], wrong_dtype)
    if qc.block is not None:
        _scale_shapes(ctx, fp8_pairs[block], qc.block)

    suffix = "weight_scale" if qc.method in _MULTIPLIER_METHODS else "weight_scale_inv"
    elsewhere = set(ctx.index_names) if ctx.partial else set()
    # A second copy of a weight (tensor-duplicate) shares its one scale.
    fp8_weights = np.flatnonzero(is_fp8 & (frame.kind == KIND_CODE["weight"])
                                 & (ctx.join.dup_of < 0))
    for i in fp8_weights[scale_of[fp8_weights] < 0].tolist():
        name = frame.name(i)
        scale = name[: -len("weight")] + suffix if name.endswith("weight") else name + "_scale"
        if scale in elsewhere:
            continue  # in another shard of this checkpoint, which is not scanned
        fs.missing("fp8-scale-missing", scale, frame.templates[int(frame.template[i])],
                   f"{dname(i)} weight {name} has no {suffix} (a loader would use raw FP8 "
                   "codes as weights)", frame.file(i), tensor=name)

    entries = qc.not_convert
    covered, entry_of = (_not_convert_rows(frame, entries) if entries
                         else (np.zeros(len(frame), bool), {}))
    def not_converted(i: int) -> str:
        return f"FP8 although modules_to_not_convert lists {entry_of[i]!r}"

    fs.rows("fp8-not-converted", np.flatnonzero(is_fp8 & covered), not_converted)
    if qc.method == "fp8":
        unq = frame.linear & ~is_fp8 & (frame.kind == KIND_CODE["weight"]) & ~covered
        code = "unquantized-linear" if entries is not None else "unquantized-linear-info"
        why = ("not in modules_to_not_convert" if entries is not None
               else "the config does not list modules kept unquantized")
        fs.rows(code, np.flatnonzero(unq),
                lambda i: f"{dname(i)} linear weight ({frame.role_name(i)}); {why}")


def _weight_name(scale: str) -> str:
    return scale.rsplit(".", 1)[0] + ".weight"


def _has_scale_suffix(frame: Frame, rows: np.ndarray) -> np.ndarray:
    from ..context import scale_suffix

    ok = np.array([scale_suffix(t) is not None for t in frame.templates], dtype=bool)
    return ok[frame.template[rows]] if len(frame.templates) else np.zeros(len(rows), bool)


def _not_convert_rows(frame: Frame, entries: list[str]) -> tuple[np.ndarray, dict[int, str]]:
    """Rows covered by modules_to_not_convert, and the entry that covers each row
    (decided per template; per name only where an entry names a number)."""
    covered = np.zeros(len(frame), dtype=bool)
    entry_of: dict[int, str] = {}
    for t, template in enumerate(frame.templates):
        parts = template.split(".")
        for entry in entries:
            want = entry.strip(".").split(".")
            k = len(want)
            exact = wild = False
            for i in range(len(parts) - k + 1):
                window = parts[i:i + k]
                if window == want:
                    exact = True
                    break
                if all(p == w or (p == "{}" and w.isdigit())
                       for p, w in zip(window, want, strict=True)):
                    wild = True
            if not (exact or wild):
                continue
            rows = frame.rows_by_template[t]
            if not exact:  # e.g. "model.layers.0.mlp": only some rows of this template
                rows = np.array([r for r in rows.tolist()
                                 if not_convert_match(frame.name(r), [entry])], dtype=np.int64)
            for r in rows.tolist():
                if not covered[r]:
                    covered[r] = True
                    entry_of[r] = entry
    return covered, entry_of


def _scale_shapes(ctx: ScanContext, scales: np.ndarray, block: tuple[int, int]) -> None:
    """weight_scale_inv must be [ceil(rows/br), ceil(cols/bc)] for a 2-D weight."""
    frame = ctx.frame
    _, weight_of = ctx.scale_pairs
    rows, cols = frame.rows_2d()
    w = weight_of[scales]
    two = rows[w] >= 0
    s, w = scales[two], w[two]
    br, bc = block
    want_r = -(-rows[w] // br)
    want_c = -(-cols[w] // bc)
    bad = s[(rows[s] != want_r) | (cols[s] != want_c)]

    def msg(i: int) -> str:
        wi = int(weight_of[i])
        want = [math.ceil(int(rows[wi]) / br), math.ceil(int(cols[wi]) / bc)]
        return (f"scale shape {list(frame.shape(i))} but weight {list(frame.shape(wi))} with "
                f"block {list(block)} needs {want}")

    ctx.findings.rows("scale-shape", bad, msg)
