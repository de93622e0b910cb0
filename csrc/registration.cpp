// The single TORCH_LIBRARY block: every fastser schema, read from fastser/ops/schemas.inc (the
// file the reference backend of fastser/ops/_library.py reads too).  Kernels are registered per
// backend next to their implementation (csrc/<op>/<op>_cpu.cpp, csrc/<op>/<op>_cuda.cu) with
// TORCH_LIBRARY_IMPL; fake kernels, autograd and FLOP formulas in fastser/ops/<op>.py.
#include <torch/library.h>

#include <string>
#include <vector>

namespace {

constexpr const char* kSchemas =
#include "../fastser/ops/schemas.inc"
    ;

// The schemas of the text: comments ('#' to the end of a line) dropped, runs of whitespace
// collapsed to one space, split at ';'.  fastser/ops/_library.py parses it the same way.
std::vector<std::string> parse_schemas(const char* text) {
  std::vector<std::string> schemas;
  std::string current;
  bool comment = false;
  for (const char* c = text; *c != '\0'; ++c) {
    if (*c == '#') {
      comment = true;
    }
    if (comment) {
      if (*c != '\n') {
        continue;
      }
      comment = false;  // the newline that ends a comment still separates words
    }
    if (*c == ';') {
      if (!current.empty() && current.back() == ' ') {
        current.pop_back();
      }
      schemas.push_back(current);
      current.clear();
    } else if (*c == ' ' || *c == '\n' || *c == '\t' || *c == '\r') {
      if (!current.empty() && current.back() != ' ') {
        current.push_back(' ');
      }
    } else {
      current.push_back(*c);
    }
  }
  TORCH_INTERNAL_ASSERT(current.empty(), "fastser/ops/schemas.inc ends without ';'");
  return schemas;
}

}  // namespace

TORCH_LIBRARY(fastser, m) {
  for (const std::string& schema : parse_schemas(kSchemas)) {
    m.def(schema.c_str());
  }
}
