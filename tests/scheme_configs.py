"""Producers' own quantization configs, shared by the scheme tests (sources at each)."""

from __future__ import annotations

# MiniMax-M2's quantization_config (FORMAT-FACTS.md)
MINIMAX = {"quant_method": "fp8", "fmt": "float8_e4m3fn", "activation_scheme": "dynamic",
           "weight_block_size": [128, 128],
           "modules_to_not_convert": ["gate", "e_score_correction_bias", "lm_head"]}
# DeepSeek-V3: "fmt": "e4m3" and no modules list
DEEPSEEK_V3 = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
               "weight_block_size": [128, 128]}
# DeepSeek-V4: quantization_config + top-level expert_dtype
DEEPSEEK_V4_Q = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                 "scale_fmt": "ue8m0", "weight_block_size": [128, 128]}
# RedHatAI Meta-Llama-3.1-8B-Instruct-quantized.w4a16 (compressed-tensors pack-quantized)
W4A16 = {"config_groups": {"group_0": {
    "input_activations": None, "output_activations": None, "targets": ["Linear"],
    "weights": {"actorder": None, "block_structure": None, "dynamic": False, "group_size": 128,
                "num_bits": 4, "observer": "minmax", "observer_kwargs": {}, "strategy": "group",
                "symmetric": True, "type": "int"}}},
    "format": "pack-quantized", "ignore": ["lm_head"], "kv_cache_scheme": None,
    "quant_method": "compressed-tensors", "quantization_status": "compressed"}
# ModelOpt hf_quant_config.json (export/quant_utils.py get_quant_config)
MODELOPT_HQ = {"producer": {"name": "modelopt", "version": "0.37.0"},
               "quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": "FP8",
                                "group_size": 16, "exclude_modules": ["lm_head"]}}
# ... and its config.json form (export/convert_hf_config.py)
MODELOPT_CFG = {"config_groups": {"group_0": {
    "input_activations": {"dynamic": False, "num_bits": 4, "type": "float", "group_size": 16},
    "weights": {"dynamic": False, "num_bits": 4, "type": "float", "group_size": 16},
    "targets": ["Linear"]}}, "ignore": ["lm_head"], "quant_algo": "NVFP4",
    "kv_cache_scheme": {"dynamic": False, "num_bits": 8, "type": "float"},
    "producer": {"name": "modelopt", "version": "0.37.0"}, "quant_method": "modelopt"}
# openai/gpt-oss-20b
GPT_OSS = {"modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                      "model.embed_tokens", "lm_head"], "quant_method": "mxfp4"}
GPTQ = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True}
AWQ = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True,
       "version": "gemm", "modules_to_not_convert": None}
BNB = {"quant_method": "bitsandbytes", "load_in_4bit": True, "load_in_8bit": False,
       "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
       "llm_int8_skip_modules": None}
MLX = {"group_size": 64, "bits": 4}
TORCHAO = {"quant_method": "torchao", "quant_type": {"default": {
    "_type": "Float8DynamicActivationFloat8WeightConfig", "_data": {}}}}
