// safetensors files and Hugging Face checkpoint directories: read (mmap, zero copy) and write.
//
// File layout: u64 little-endian N, then N bytes of JSON header, then the data buffer. The
// header maps tensor name -> {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative
// to the data buffer, byte 8 + N) plus an optional "__metadata__" object of string -> string.
//
// Reading validates everything at open, so later code can trust a TensorInfo: the dtype is one
// afd loads, numel * dtype size == nbytes, and the bytes lie inside the file without overlapping
// another tensor. Every error names the file and, where there is one, the tensor. The reader is
// a little more lenient than the reference (Rust) implementation: gaps between tensors and
// trailing bytes after the last one are allowed; overlaps are not.
//
// Alignment: tensor data is NOT guaranteed to be aligned to its element size. The reference
// writer does not pad between tensors (it orders them by dtype size instead), and a header
// length that is not a multiple of 8 shifts everything. Code that needs aligned elements copies
// (to a Tensor or to the device) instead of dereferencing `data` as a typed pointer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/mmap_file.h"
#include "core/status.h"
#include "core/tensor.h"

namespace afd {

// One tensor inside a mapped file. Valid while the SafetensorsFile (or Checkpoint) that owns
// the mapping lives; moving that owner keeps it valid (the mapping itself does not move).
struct TensorInfo {
  std::string name;               // the header key, e.g. "model.layers.0.mlp.up_proj.weight"
  DType dtype = DType::kF32;      // one of the dtypes afd loads
  Shape shape;                    // row-major; [] is a scalar (1 element); dims >= 0
  const uint8_t* data = nullptr;  // read-only, into the mmap; never null after open (a
                                  // 0-byte tensor points at its offset, maybe one past the end);
                                  // possibly unaligned (see above)
  size_t nbytes = 0;              // == shape_numel(shape) * dtype_size(dtype)
  std::string file;               // path of the file holding it (for error messages)

  // Non-owning contiguous view; writing through it is undefined (the mapping is read-only).
  TensorView view() const;
};

// One mmapped .safetensors file; the header is parsed and validated at open, no tensor data is
// copied or touched.
class SafetensorsFile {
 public:
  static Result<SafetensorsFile> open(const std::string& path);

  // Sorted by name (so find() is a binary search and iteration order does not depend on how
  // the writer ordered the header).
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // nullptr if absent.
  const TensorInfo* find(std::string_view name) const;
  // The "__metadata__" object (empty if the header has none).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return map_.path(); }

 private:
  MappedFile map_;                   // owns the bytes every TensorInfo points into
  std::vector<TensorInfo> tensors_;  // sorted by name, names unique
  std::map<std::string, std::string> metadata_;
};

// A model directory: a single "model.safetensors", or shards listed in
// "model.safetensors.index.json" ({"weight_map": {tensor name: shard file name}}). When both
// exist, model.safetensors wins (as in Hugging Face transformers). The index must describe the
// shards exactly: every listed tensor is in its shard, and every tensor of a shard is listed
// for that shard (a stale index is an error, not something to guess around).
class Checkpoint {
 public:
  static Result<Checkpoint> open(const std::string& dir);

  // nullptr if absent.
  const TensorInfo* find(std::string_view name) const;
  // All tensor names, sorted.
  std::vector<std::string> names() const;
  // Full paths (dir/name) of the files opened, sorted by file name.
  const std::vector<std::string>& files() const { return file_paths_; }
  size_t num_tensors() const { return by_name_.size(); }

 private:
  // Each SafetensorsFile keeps its tensors in a heap vector that survives moves of the
  // SafetensorsFile and of `files_`, so the TensorInfo pointers in `by_name_` stay valid.
  std::vector<SafetensorsFile> files_;
  std::vector<std::string> file_paths_;                            // parallel to files_
  std::map<std::string, const TensorInfo*, std::less<>> by_name_;  // into files_[*].tensors()
};

// Writes one safetensors file atomically (temporary file in the same folder, then rename; a
// failure leaves nothing under `path`). Tensors are written in the order given, back to back
// (no padding between them, as the reference writer does); the header is compact JSON with
// "__metadata__" first (omitted when `metadata` is empty) and keys dtype, shape, data_offsets,
// padded with spaces to a multiple of 8 bytes, so the file is byte-identical to Python
// `safetensors` whenever the tensors come in the order it uses (dtype, then name). Tensor data is
// streamed from the views, not copied. Every view must be contiguous with non-null data (unless it
// has 0 bytes); names must be unique, non-empty, valid UTF-8 and not "__metadata__".
Status write_safetensors(const std::string& path,
                         const std::vector<std::pair<std::string, TensorView>>& tensors,
                         const std::map<std::string, std::string>& metadata = {});

// Writes a sharded checkpoint into `dir` (created if missing): the tensors, IN ORDER, split into
// S = min(num_shards, tensors.size()) contiguous non-empty groups of roughly equal bytes, as
// dir/model-00001-of-0000S.safetensors ... (names use the number actually written, zero-padded
// to 5 digits as Hugging Face does; empty shards are never written), plus
// dir/model.safetensors.index.json {"metadata": {"total_size": bytes}, "weight_map": {name:
// file}}. `metadata` goes into every shard's "__metadata__". num_shards == 1 still writes the
// index; an empty tensor list writes only the index (empty weight_map). All files are written
// under temporary names first and renamed at the end, index last, so a failure leaves no
// partial file under a final name.
Status write_checkpoint_shards(const std::string& dir,
                               const std::vector<std::pair<std::string, TensorView>>& tensors,
                               int num_shards,
                               const std::map<std::string, std::string>& metadata = {});

}  // namespace afd
