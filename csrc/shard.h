// One shard: its file and its parsed header. Opening never throws on bad
// content: OS errors and header problems are recorded in `header.problems`.
#pragma once
#include <memory>
#include <string>

#include "header.h"
#include "index_json.h"
#include "mapped_file.h"

namespace ckptscan {

struct Shard {
  MappedFile file;
  ParsedHeader header;
  bool opened = false;  // false when the OS refused (the reason is a kIo problem)
};

std::unique_ptr<Shard> open_shard(const std::string& path);

// Reads and parses a model.safetensors.index.json. When the file cannot be
// read, the table is empty and its one problem (kIo) says why.
IndexTable read_index_file(const std::string& path);

}  // namespace ckptscan
