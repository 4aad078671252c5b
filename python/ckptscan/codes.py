"""The one registry of finding codes: severity, subject and meaning of each.

Every check, the C++ parser (its codes and descriptions come from the core's
own table) and the data checks of ``--deep`` emit only codes registered here;
``ckptscan codes`` prints this table and the README's is tested against it.

Subjects, in report order: ``file`` (a file cannot be used as it is: missing,
unreadable, rejected header, another format ...), ``index``, ``tensors``,
``quantization``, ``config``, ``data`` (what ``--deep`` reads), ``verify`` (``ckptscan
verify``: a quantized checkpoint against its source). ``root`` codes are
root causes: findings a root cause explains are attached to it instead of
standing as their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from . import _core
from .findings import Finding, Severity

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

SUBJECTS = ("file", "index", "tensors", "quantization", "config", "data", "verify")


@dataclass(frozen=True)
class Code:
    code: str
    severity: Severity
    subject: str
    description: str
    root: bool = False  # a root cause: explains the findings that follow from it


CODES: dict[str, Code] = {}


def register(code: str, severity: Severity, subject: str, description: str,
             root: bool = False) -> Code:
    """Adds a code (modules that bring new checks call this at import)."""
    if subject not in SUBJECTS:
        raise ValueError(f"unknown subject {subject!r}")
    known = CODES.get(code)
    entry = Code(code, severity, subject, description, root)
    if known is not None and known != entry:
        raise ValueError(f"finding code {code!r} registered twice, differently")
    CODES[code] = entry
    return entry


def _register_all() -> None:
    # -- files: each of these is a root cause for what the file held
    for code, text in (
        ("shard-missing", "a shard named by index.json (or by the -of-N sequence) is not on disk"),
        ("download-incomplete", "a file whose download was interrupted (a .incomplete blob)"),
        ("not-safetensors", "a .safetensors file whose bytes are another format"),
        ("other-format", "a checkpoint in another format (GGUF, PyTorch pickle, ONNX ...): "
                         "named, not read"),
        ("path-outside", "a symlink or index entry leading outside the checkpoint: not "
                         "followed"),
        ("symlink-loop", "a symlink that leads back to itself"),
        ("special-file", "a FIFO, socket or device where a file belongs: not read"),
        ("file-changed", "a file that changed or vanished while it was being scanned"),
        ("limit-exceeded", "an input beyond a documented limit: not read"),
        ("scan-failed", "ckptscan could not finish this checkpoint (out of memory, or a bug)"),
    ):
        register(code, W if code == "other-format" else E, "file", text, root=True)
    # The C++ parser's problems (io-error included): a shard the reference would
    # refuse. The descriptions are the core's own.
    for code, text in _core.ERROR_DESCRIPTIONS.items():
        register(code, E, "file", text, root=True)
    # Remote files (hf://, http(s)://, s3:// ...) that could not be had: each is a
    # root cause (a 404 is shard-missing, a changed object file-changed).
    for code, text in (
        ("remote-denied", "a remote file the server refused to give (401/403: credentials "
                          "missing or without access)"),
        ("remote-unreachable", "a remote file that could not be read: connection failed, "
                               "reset or timed out, or the server kept failing (after retries)"),
        ("remote-rate-limited", "a remote file still throttled (429) when the time allowed "
                                "for waiting ran out"),
        ("remote-error", "a remote file the server answered wrongly (an unexpected status, a "
                         "broken response, a range it would not serve)"),
    ):
        register(code, E, "file", text, root=True)
    register("remote-range-ignored", W, "file", "a server that ignored Range and sent the "
             "whole object: read as far as needed, then stopped")
    # --against: a local copy compared with the Hub's file sizes and hashes
    for code, text in (
        ("copy-missing", "--against: a file of the reference that the local copy lacks"),
        ("copy-truncated", "--against: a local file shorter than the reference's (an "
                           "interrupted download?)"),
        ("copy-corrupt", "--against: a local file whose size or SHA-256 differs from the "
                         "reference's"),
    ):
        register(code, E, "file", text, root=True)
    register("copy-extra", W, "file", "--against: a local file the reference does not have")
    register("no-shards", E, "file", "no safetensors file was found")
    register("index-invalid", E, "file", "index.json is unreadable, not JSON, or has no "
             "weight_map", root=True)
    register("config-invalid", W, "file", "config.json is unreadable or not JSON")
    register("index-absent", W, "file", "sharded files (-of-N) without the index.json "
             "loaders need")
    register("consolidated-copy", INFO, "file", "consolidated.safetensors beside the shards: a "
             "second copy of the same weights (counted once)")
    register("shard-unreferenced", W, "file", "a shard on disk that index.json does not mention")
    register("shard-count-name", INFO, "file", "the -of-NNNNN in shard names does not match the "
             "number of files")
    # -- index.json against the headers
    register("index-tensor-absent", E, "index", "a tensor in index.json is in no shard")
    register("index-wrong-shard", E, "index", "index.json places a tensor in a shard that does "
             "not hold it")
    register("index-unlisted", W, "index", "a tensor in a shard that index.json does not list "
             "(loaders skip it)")
    register("index-total-size", INFO, "index", "index.json's total_size differs from the "
             "tensors' bytes")
    # -- the tensors as a whole
    register("tensor-duplicate", E, "tensors", "the same tensor name in two shards")
    register("tensor-missing-in-grid", E, "tensors", "one layer/expert lacks a tensor all its "
             "siblings have")
    # -- quantization: the scheme the checkpoint declares against its tensors
    for code, sev, text in (
        ("fp8-scale-missing", E, "an FP8 weight without the scale its scheme names "
                                 "(weight_scale_inv, weight_scale, .scale ...): it would be "
                                 "used ~scale times off"),
        ("companion-missing", E, "a quantized weight without a companion its scheme requires "
                                 "(a packed weight's scale, zero point, global scale, "
                                 "weight_shape, KV-cache scale ...), named as the scheme names "
                                 "it"),
        ("scale-orphan", E, "a companion (scale, zero point, global scale ...) whose weight "
                            "does not exist"),
        ("scale-on-unquantized", W, "a companion whose weight is stored in high precision"),
        ("scale-shape", E, "a companion's shape does not fit its weight under the scheme "
                           "(block, group, channel or tensor granularity, packing)"),
        ("scale-dtype", E, "a companion's dtype is none its scheme's producers write"),
        ("scale-convention-mixed", E, "a scale named after another convention than its "
                                      "weight's scheme (weight_scale beside weight_scale_inv, "
                                      "rank-2 beside rank-4): loaders look for one"),
        ("quant-weight-dtype", E, "a weight whose naming is its scheme's but whose dtype or "
                                  "group is not (an INT4 container of the wrong type, a "
                                  "weight stored in another group's layout)"),
        ("fp8-not-converted", E, "an FP8 weight whose module the exclusion list "
                                 "(modules_to_not_convert, ignore ...) keeps unquantized"),
        ("quantized-excluded", E, "a quantized (non-FP8) weight whose module the config keeps "
                                  "unquantized (an exclusion entry, or no group targets it)"),
        ("unquantized-linear", W, "a linear weight left in high precision although the scheme "
                                  "targets it and its exclusion list does not name it"),
        ("unquantized-linear-info", INFO, "a linear weight kept in high precision (the config "
                                          "lists no modules kept unquantized)"),
        ("exclusion-unmatched", W, "an exclusion entry (ignore, modules_to_not_convert, "
                                   "exclude_modules ...) that matches no module"),
        ("exclusion-prefix", W, "an exclusion entry that matches only with a wrapper prefix "
                                "added or removed (model.language_model.): the producer's "
                                "loader will not match it"),
        ("fused-scale-mismatch", W, "fused siblings (q/k/v, gate/up, w1/w3) whose per-tensor or "
                                    "global scales differ: loaders fuse them with the max"),
        ("tensor-parallel-limit", W, "no tensor-parallel size of 8 splits every block- or "
                                     "group-quantized linear on block boundaries (models of "
                                     "20 B parameters and more)"),
        ("fp8-without-config", W, "FP8 tensors but no quantization scheme declared (config.json, "
                                  "hf_quant_config.json)"),
        ("quant-config-invalid", E, "a quantization setting loaders cannot use (block size, "
                                    "format, algorithm, bits, group size ...), named by key"),
        ("fp8-format-mismatch", E, "FP8 weights in another format than the scheme declares"),
    ):
        register(code, sev, "quantization", text)
    # -- config.json against the tensors
    for code, sev, text in (
        ("config-value", W, "a config.json value of the wrong type or impossible (named by "
                            "key)"),
        ("config-layers", E, "num_hidden_layers disagrees with the layers in the tensors"),
        ("config-experts", E, "the expert count disagrees with the experts in the tensors"),
        ("config-hidden-size", E, "hidden_size disagrees with the embedding's width"),
        ("config-vocab", W, "vocab_size disagrees with the embedding or lm_head rows"),
        ("mtp-absent", INFO, "config.json declares MTP modules that the checkpoint does not hold"),
    ):
        register(code, sev, "config", text)
    # -- --deep: what the kernels measured
    for code, sev, text in (
        ("deep-read-failed", E, "a tensor's data could not be read during --deep"),
        ("scale-unfilled", E, "scale holds -3.4028235e38, vLLM's never-loaded sentinel"),
        ("scale-nonfinite", E, "NaN or Inf scale (block, group, channel, tensor, global or "
                                "input scale)"),
        ("scale-nonpositive", E, "scale <= 0 (a loader divides or multiplies by it)"),
        ("scale-subnormal", W, "float32-subnormal block scale (flushed to zero by FTZ kernels)"),
        ("scale-not-pow2", W, "scale_fmt ue8m0 but a scale is not a power of two"),
        ("fp8-nan", E, "NaN codes inside an FP8 weight"),
        ("fp8-inf", E, "Inf codes inside an FP8 (E5M2) weight"),
        ("fp8-all-zero", E, "a quantized weight whose codes are all zero"),
        ("fp8-zero-block", W, "blocks of a quantized weight whose codes are all zero under a "
                              "nonzero scale (lost data, as an interrupted download leaves)"),
        ("fp8-range-unused", W, "FP8 blocks whose largest code is below a quarter of the "
                                "format max"),
        ("fp8-clipping", W, "blocks with a share of codes at the format's +-max that no "
                            "properly scaled block reaches: the scale is too small"),
        ("float-nan", E, "NaN values in a BF16 / F16 / F32 / F64 tensor"),
        ("float-inf", W, "Inf values in a BF16 / F16 / F32 / F64 tensor"),
        ("e8m0-nan", E, "NaN (0xFF) codes in an E8M0 scale tensor (F8_E8M0 or U8 exponents)"),
        ("e8m0-implausible", W, "E8M0 scale exponents outside any plausible weight range "
                                "(2^-64 .. 2^32): scales copied as integers, or garbage"),
        ("scale-nan-e4m3", E, "NaN codes (0x7F, 0xFF) in an E4M3 scale tensor (NVFP4 block "
                              "scales)"),
        ("zero-point-range", E, "zero points outside the integer range of their bits"),
    ):
        register(code, sev, "data", text)
    # -- ckptscan verify: a quantized checkpoint against the checkpoint it was made from
    for code, sev, text in (
        ("verify-scale-inverted", E, "a weight that fits its source only with a scale read the "
                                     "other way round (1 / scale, or a global scale's "
                                     "direction): a scale applied in the wrong direction, "
                                     "values off by about scale squared"),
        ("verify-scale-transposed", E, "block scales transposed: the weight fits its source "
                                       "with its scale grid transposed"),
        ("verify-scale-shifted", E, "block scales shifted by one block (row, column or "
                                    "expert): the weight fits its source with its "
                                    "neighbours' scales"),
        ("verify-error-high", E, "a quantized weight whose relative error against its source "
                                 "is above its format's bound, or with blocks holding more "
                                 "error than round to nearest allows for their values, and no "
                                 "other reading of its scales fits"),
        ("verify-clipped", W, "source values beyond what their block's scale represents (the "
                              "format's max plus half a step, times the scale): the scale is "
                              "too small and they saturate"),
        ("verify-nonfinite", E, "dequantized values that are NaN or Inf where the source is "
                                "finite"),
        ("verify-not-quantized", E, "a linear weight left in high precision although the "
                                    "declared scheme converts it (targeted, not excluded)"),
        ("verify-missing-in-candidate", E, "a source tensor the candidate lacks (under its own "
                                           "name and as a quantized weight)"),
        ("verify-missing-in-source", W, "a candidate tensor the source lacks: a quantized "
                                        "weight without a source cannot be verified"),
        ("verify-shape-mismatch", E, "a quantized weight whose logical shape differs from its "
                                     "source tensor's (transposed included)"),
        ("verify-not-compared", E, "a quantized weight that could not be compared: its scale "
                                   "missing or not fitting its block grid, its data unreadable, "
                                   "its source not BF16 / F16 / F32"),
        ("verify-unsupported", INFO, "a quantized weight no kernel dequantizes (INT4, NF4 ...), "
                                     "or a tensor re-typed outside any declared scheme: not "
                                     "compared"),
    ):
        register(code, sev, "verify", text)


_register_all()


def get(code: str) -> Code:
    try:
        return CODES[code]
    except KeyError:
        raise KeyError(f"unregistered finding code {code!r}") from None


def finding(code: str, message: str, file: str | None = None, tensor: str | None = None,
            **detail: object) -> Finding:
    """A Finding with the registered severity of `code`."""
    return Finding(code, get(code).severity, message, file, tensor, dict(detail))


def is_root(code: str) -> bool:
    c = CODES.get(code)
    return c is not None and c.root


def iter_codes() -> Iterator[Code]:
    """Every code, by subject (report order) then name."""
    yield from sorted(CODES.values(), key=lambda c: (SUBJECTS.index(c.subject), c.code))
