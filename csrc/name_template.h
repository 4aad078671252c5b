// Name templates (DESIGN.md): a tensor name with each digits-only dotted
// component replaced by "{}", plus the integers taken out, in order.
// "model.layers.7.mlp.experts.12.w1.weight" -> "model.layers.{}.mlp.experts.{}.w1.weight", (7, 12).
// A MoE checkpoint has a few dozen templates for 100k names, so the checks
// run per template instead of per tensor. Computed on request, not by the parse.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "header.h"

namespace ckptscan {

// Row i's template is templates[template_id[i]]; its integers are
// ints[ints_start[i], ints_start[i + 1]).
struct NameTemplates {
  std::vector<uint32_t> template_id;
  std::vector<std::string> templates;
  std::vector<uint64_t> ints_start{0};
  std::vector<int64_t> ints;
};

NameTemplates name_templates(const TensorTable& table);

// One name. A component counts as an integer when it is 1-18 digits without a
// leading zero (so that formatting the integer back gives the same text); a
// name with a literal "{}" component is its own template with no integers.
void name_template(std::string_view name, std::string* tmpl, std::vector<int64_t>* ints);

// The component-at-a-time version the fast one is checked against (tests, fuzzing).
void name_template_reference(std::string_view name, std::string* tmpl, std::vector<int64_t>* ints);

}  // namespace ckptscan
