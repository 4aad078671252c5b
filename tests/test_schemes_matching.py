"""Each producer's matching rule for its exclusion / target lists, and the
template-level decisions a vectorised checks layer relies on.

Rules (sources in the scheme modules): HF fine-grained FP8 ``modules_to_not_convert``
= whole dotted components; transformers' ``should_convert_module`` (gpt-oss MXFP4,
bitsandbytes) = ``re.match`` at the start or a suffix; compressed-tensors ``ignore`` /
``targets`` = exact name or ``re:`` regex with ``re.match``, class names; ModelOpt
``exclude_modules`` as vLLM reads them = exact, substring (exports before 0.39, also
without ``language_model.``), fnmatch glob; AutoAWQ = substring; MLX = exact keys;
GPTQModel ``dynamic`` = ``-:``/``+:`` regexes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from ckptscan import schemes as S
from scheme_configs import AWQ, BNB, GPT_OSS, GPTQ, MINIMAX, W4A16


def excluded_by(det: S.Detection, module: str, kind: str = "linear") -> str | None:
    hit = det.target(module, kind).excluded_by
    return None if hit is None else hit.entry


def hf_fp8(entries: list[str]) -> S.Detection:
    det = S.detect({"quantization_config": {**MINIMAX, "modules_to_not_convert": entries}})
    assert det is not None
    return det


# ---- HF fine-grained FP8: dotted components ------------------------------------------------------

def test_dotted_components_gate_is_not_gate_proj() -> None:
    det = hf_fp8(["gate", "e_score_correction_bias", "lm_head"])
    assert excluded_by(det, "model.layers.3.block_sparse_moe.gate") == "gate"
    assert excluded_by(det, "model.layers.3.mlp.gate_proj") is None
    assert excluded_by(det, "model.layers.3.mlp.up_gate") is None
    assert excluded_by(det, "lm_head") == "lm_head"
    assert det.target("model.layers.3.block_sparse_moe.gate").excluded_by == S.Hit(
        "gate", "components")


def test_parameter_entries_match_tensor_names() -> None:
    # MiniMax-M2 lists a parameter, not a module: it matches the tensor's name
    det = hf_fp8(["gate", "e_score_correction_bias", "lm_head"])
    template = "model.layers.{}.block_sparse_moe.e_score_correction_bias"
    assert det.exclusions.entry_template("e_score_correction_bias", template) is True
    assert det.exclusions.entry_template("e_score_correction_bias",
                                         "model.layers.{}.block_sparse_moe") is False


def test_dotted_components_multi_part_and_numbers() -> None:
    det = hf_fp8(["mlp.gate", "model.layers.1.self_attn", "model.layers.*.mlp.shared_expert"])
    assert excluded_by(det, "model.layers.0.mlp.gate") == "mlp.gate"
    assert excluded_by(det, "model.layers.0.mlp.gate_up_proj") is None
    assert excluded_by(det, "model.layers.1.self_attn.q_proj") == "model.layers.1.self_attn"
    assert excluded_by(det, "model.layers.10.self_attn.q_proj") is None  # not a prefix match
    assert excluded_by(det, "model.layers.7.mlp.shared_expert.down_proj") == \
        "model.layers.*.mlp.shared_expert"
    # per template: the layer-1 entry depends on the number, the others do not
    assert det.target_template("model.layers.{}.self_attn.q_proj") is None
    t = det.target_template("model.layers.{}.mlp.gate")
    assert t is not None and t.excluded_by is not None and t.excluded_by.entry == "mlp.gate"
    t = det.target_template("model.layers.{}.mlp.down_proj")
    assert t is not None and t.quantized and t.target is not None and t.target.implicit


def test_lm_head_is_a_producer_default() -> None:
    det = hf_fp8([])
    hit = det.target("lm_head").excluded_by
    assert hit is not None and hit.implicit and hit.entry == "lm_head"
    assert det.target("model.layers.0.mlp.down_proj").quantized


def test_wrapper_prefix_matches_only_when_rewritten() -> None:
    # transformers #48349: the list names the multimodal wrapper's modules, the
    # checkpoint holds text-only names (and the reverse)
    det = hf_fp8(["model.language_model.layers.0.mlp.down_proj"])
    hit = det.target("model.layers.0.mlp.down_proj").excluded_by
    assert hit is not None and hit.via_prefix is not None
    assert hit.entry == "model.language_model.layers.0.mlp.down_proj"
    det = hf_fp8(["model.layers.0.mlp.down_proj"])
    hit = det.target("model.language_model.layers.0.mlp.down_proj").excluded_by
    assert hit is not None and hit.via_prefix is not None
    direct = det.target("model.layers.0.mlp.down_proj").excluded_by
    assert direct is not None and direct.via_prefix is None


def test_unmatched_entries_per_template() -> None:
    det = hf_fp8(["gate", "model.layers.7.mlp", "model.layers.1.mlp"])
    rules = det.exclusions
    templates = ["model.layers.{}.block_sparse_moe.gate", "model.layers.{}.mlp.down_proj"]
    assert rules.entry_template("gate", templates[0]) is True
    assert rules.entry_template("gate", templates[1]) is False
    # numbered entries match some names of a template: the caller checks its real names
    assert rules.entry_template("model.layers.7.mlp", templates[1]) is None
    names = [f"model.layers.{i}.mlp.down_proj" for i in range(2)]
    assert not any(rules.entry_matches("model.layers.7.mlp", n) for n in names)
    assert any(rules.entry_matches("model.layers.1.mlp", n) for n in names)


# ---- transformers should_convert_module: gpt-oss, bitsandbytes ---------------------------------

def test_transformers_regex_prefix_and_suffix() -> None:
    det = S.detect({"quantization_config": GPT_OSS})
    assert det is not None
    assert excluded_by(det, "model.layers.5.self_attn") == "model.layers.*.self_attn"
    assert excluded_by(det, "model.layers.5.mlp.router") == "model.layers.*.mlp.router"
    assert excluded_by(det, "model.layers.5.mlp.experts") is None
    assert det.target("model.layers.5.mlp.experts").quantized
    assert not det.target("model.layers.5.self_attn.q_proj").quantized  # nothing targets it
    bnb = S.detect({"quantization_config": {**BNB, "llm_int8_skip_modules": [
        "fc1", "layers.1", "model.layers.1", "mlp\\.gate$"]}})
    assert bnb is not None
    assert excluded_by(bnb, "model.decoder.layers.23.fc1") == "fc1"  # suffix
    assert bnb.target("model.decoder.layers.23.fc1").excluded_by == S.Hit("fc1", "suffix")
    # re.match anchors at the start: a middle part is no match, and a prefix
    # also covers layer 10 (transformers' own behaviour)
    assert excluded_by(bnb, "model.layers.10.mlp.down_proj") == "model.layers.1"
    assert excluded_by(bnb, "x.layers.1.mlp.down_proj") is None
    assert excluded_by(bnb, "model.layers.3.mlp.gate") is None  # regex must match at the start


# ---- compressed-tensors: exact names, re: regexes, class names ---------------------------------

def ct(ignore: list[str], targets: list[str] | None = None) -> S.Detection:
    base: dict[str, Any] = W4A16["config_groups"]["group_0"]  # type: ignore[index]
    group = {**base, "targets": targets or ["Linear"]}
    det = S.detect({"quantization_config": {**W4A16, "ignore": ignore,
                                            "config_groups": {"group_0": group}}})
    assert det is not None
    return det


def test_compressed_tensors_exact_and_regex() -> None:
    det = ct(["lm_head", "re:.*mlp\\.gate$", "model.layers.0.self_attn"])
    assert excluded_by(det, "lm_head") == "lm_head"
    # exact, not a suffix: "model.lm_head" matches only when its wrapper is dropped
    hit = det.target("model.lm_head").excluded_by
    assert hit is not None and hit.via_prefix == "model."
    assert excluded_by(det, "model.layers.3.mlp.gate") == "re:.*mlp\\.gate$"
    assert excluded_by(det, "model.layers.3.mlp.gate_proj") is None
    # an exact entry names that module only, not its children
    assert excluded_by(det, "model.layers.0.self_attn.q_proj") is None
    det = ct(["re:model.layers.1"])  # re.match: a prefix, so layers 1, 10-19 ...
    assert excluded_by(det, "model.layers.1.mlp.up_proj") == "re:model.layers.1"
    assert excluded_by(det, "model.layers.12.mlp.up_proj") == "re:model.layers.1"
    assert excluded_by(det, "model.layers.2.mlp.up_proj") is None
    assert excluded_by(det, "x.model.layers.1.mlp.up_proj") is None


def test_compressed_tensors_class_targets_need_the_module_kind() -> None:
    det = ct(["lm_head"], targets=["Linear", "Embedding"])
    assert det.target("model.layers.0.mlp.up_proj", "linear").quantized
    assert det.target("model.embed_tokens", "embedding").quantized
    assert not det.target("model.norm", "other").quantized
    hit = det.target("model.layers.0.mlp.up_proj").target
    assert hit == S.Hit("Linear", "class")


def test_compressed_tensors_regex_template_decisions_match_names() -> None:
    det = ct(["lm_head", "re:.*layers\\.1[0-5]\\..*down_proj$"],
             targets=["re:.*(q|k|v|o|gate|up|down)_proj$"])
    for template in ("model.layers.{}.mlp.down_proj", "model.layers.{}.mlp.up_proj",
                     "model.layers.{}.self_attn.k_proj"):
        decided = det.target_template(template)
        for i in range(40):
            name = template.replace("{}", str(i))
            if decided is not None:
                assert det.target(name) == decided, name
    assert det.target_template("model.layers.{}.mlp.down_proj") is None
    assert det.target_template("model.layers.{}.mlp.up_proj") is not None
    assert not det.target("model.layers.12.mlp.down_proj").quantized
    assert det.target("model.layers.16.mlp.down_proj").quantized


# ---- ModelOpt as vLLM reads exclude_modules ----------------------------------------------------

def modelopt(exclude: list[str]) -> S.Detection:
    det = S.detect(None, hf_quant_config={"producer": {"name": "modelopt"}, "quantization": {
        "quant_algo": "FP8", "exclude_modules": exclude}})
    assert det is not None
    return det


def test_modelopt_globs_substrings_and_exact_names() -> None:
    det = modelopt(["lm_head", "model.layers.1*", "*mlp.gate", "mtp.layers.0.self_attn"])
    assert det.target("lm_head").excluded_by == S.Hit("lm_head", "exact")
    # fnmatch's * crosses dots: model.layers.1* also covers layers 10-19
    assert det.target("model.layers.12.mlp.up_proj").excluded_by == S.Hit(
        "model.layers.1*", "glob")
    assert excluded_by(det, "model.layers.2.mlp.gate") == "*mlp.gate"
    assert excluded_by(det, "model.layers.2.mlp.gate_proj") is None
    # older exports: a plain substring of the module name
    assert det.target("mtp.layers.0.self_attn.q_proj").excluded_by == S.Hit(
        "mtp.layers.0.self_attn", "substring")
    assert det.target("language_model.model.lm_head.x").excluded_by == S.Hit(
        "lm_head", "substring")


def test_modelopt_vision_towers_are_never_quantized() -> None:
    det = modelopt([])
    hit = det.target("vision_tower.blocks.0.attn.qkv").excluded_by
    assert hit is not None and hit.implicit
    assert det.target("model.layers.0.mlp.up_proj").quantized


# ---- AutoAWQ substrings, MLX exact keys, GPTQModel dynamic -------------------------------------

def test_awq_substring() -> None:
    det = S.detect({"quantization_config": {**AWQ, "modules_to_not_convert": ["gate"]}})
    assert det is not None
    assert det.target("model.layers.0.mlp.gate_proj").excluded_by == S.Hit("gate", "substring")
    assert excluded_by(det, "model.layers.0.mlp.down_proj") is None


def test_mlx_exact_keys() -> None:
    det = S.detect({"quantization": {"group_size": 64, "bits": 4,
                                     "model.layers.1.mlp.gate": False}})
    assert det is not None
    assert det.target("model.layers.1.mlp.gate").excluded_by == S.Hit(
        "model.layers.1.mlp.gate", "exact")
    assert excluded_by(det, "model.layers.11.mlp.gate") is None
    assert excluded_by(det, "model.layers.1.mlp.gate_proj") is None


def test_gptq_dynamic_negative_and_positive_regexes() -> None:
    det = S.detect({"quantization_config": {**GPTQ, "dynamic": {
        "-:.*\\.mlp\\.down_proj": {}, "+:.*\\.layers\\.0\\..*": {"bits": 8, "group_size": 32}}}})
    assert det is not None
    assert excluded_by(det, "model.layers.3.mlp.down_proj") == "re:.*\\.mlp\\.down_proj"
    t = det.target("model.layers.0.self_attn.q_proj")
    assert t.group is not None and t.group.layouts[0].weight_format == "INT8"
    assert det.target("model.layers.3.self_attn.q_proj").group.layouts[0].weight_format == \
        "INT4"  # type: ignore[union-attr]
    assert not det.target("lm_head").quantized


# ---- the rules themselves ----------------------------------------------------------------------

@pytest.mark.parametrize("style", [S.DOTTED, S.TRANSFORMERS, S.COMPRESSED_TENSORS, S.GLOB,
                                   S.SUBSTRING, S.MODELOPT, S.EXACT])
def test_template_decisions_agree_with_names(style: S.Style) -> None:
    entries = ("lm_head", "gate", "model.layers.3.mlp", "re:.*layers\\.1[0-2]\\..*",
               "model.layers.*.self_attn", "layers.2", "*experts.1?.w2")
    rules = S.Rules("x", entries, style)
    templates = ["model.layers.{}.mlp.gate", "model.layers.{}.mlp.down_proj",
                 "model.layers.{}.block_sparse_moe.experts.{}.w2", "lm_head",
                 "model.layers.{}.self_attn.o_proj"]
    for template in templates:
        decided = rules.match_template(template)
        slots = template.count("{}")
        for i in range(25):
            for j in (range(25) if slots > 1 else (0,)):
                name = template.replace("{}", str(i), 1).replace("{}", str(j), 1)
                if decided.uniform:
                    assert rules.match(name) == decided.hit, (style.name, name)


def test_invalid_regexes_are_problems_not_crashes() -> None:
    rules = S.Rules("quantization_config.modules_to_not_convert", ("(unclosed", "ok"),
                    S.TRANSFORMERS)
    assert rules.problems() and "(unclosed" in rules.problems()[0]
    assert rules.match("model.(unclosed.x") is None  # neither a regex nor a suffix match
    assert rules.match("a.ok") == S.Hit("ok", "suffix")
    with pytest.raises(re.error):
        re.compile("(unclosed")


def test_respellings() -> None:
    got = dict(S.respellings("model.language_model.layers.0.mlp"))
    assert got["layers.0.mlp"] == "model.language_model."
    assert got["model.layers.0.mlp"] == "model."
    assert "model.language_model.layers.0.mlp" not in got


def test_fused_siblings() -> None:
    assert S.fused_sibling("model.layers.{}.self_attn.k_proj") == (
        "model.layers.{}.self_attn.qkv_proj", "k_proj")
    assert S.fused_sibling("model.layers.0.mlp.up_proj") == ("model.layers.0.mlp.gate_up_proj",
                                                              "up_proj")
    assert S.fused_sibling("x.experts.3.w3") == ("x.experts.3.w13", "w3")
    assert S.fused_sibling("x.o_proj") is None
