#include "model/safetensors.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>

namespace afd {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr std::string_view kMetadataKey = "__metadata__";
constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Parses JSON text, rejecting duplicate keys in any object (nlohmann would silently keep the
// last one, which for a header means a tensor whose first entry is lost). On failure returns
// the parser's message (it carries the byte position) or the duplicated key.
Result<json> parse_json_strict(const std::string& path, const char* what, std::string_view text) {
  std::vector<std::set<std::string>> keys;  // one key set per object currently open
  std::string dup;
  auto cb = [&](int /*depth*/, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::object_start) {
      keys.emplace_back();
    } else if (ev == json::parse_event_t::object_end) {
      if (!keys.empty()) keys.pop_back();
    } else if (ev == json::parse_event_t::key && !keys.empty()) {
      const std::string& k = parsed.get_ref<const std::string&>();
      if (!keys.back().insert(k).second && dup.empty()) dup = k;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text.begin(), text.end(), cb);
  } catch (const json::exception& e) {
    return Corrupt("{}: {} is not valid JSON: {}", path, what, e.what());
  }
  if (!dup.empty()) return Corrupt("{}: {} has the key '{}' twice", path, what, dup);
  if (!j.is_object()) return Corrupt("{}: {} is not a JSON object", path, what);
  return j;
}

// A JSON number that is a non-negative integer fitting int64 (what shapes and offsets must be).
bool as_nonneg_int(const json& v, int64_t* out) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
    *out = static_cast<int64_t>(u);
    return true;
  }
  if (v.is_number_integer()) {
    int64_t s = v.get<int64_t>();
    if (s < 0) return false;
    *out = s;
    return true;
  }
  return false;
}

// numel * dtype size, or false on int64 overflow.
bool checked_nbytes(const Shape& shape, DType t, int64_t* out) {
  int64_t n = dtype_size(t);
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return false;
  }
  *out = n;
  return true;
}

// Validates one header entry against a data buffer of `data_size` bytes. Fills every field
// of `t` except `data`; `*begin` receives the start offset.
Status parse_entry(const std::string& path, const std::string& name, const json& e,
                   uint64_t data_size, TensorInfo* t, uint64_t* begin) {
  if (!e.is_object()) return Corrupt("{}: tensor '{}': entry is not a JSON object", path, name);
  for (const char* k : {"dtype", "shape", "data_offsets"}) {
    if (!e.contains(k)) return Corrupt("{}: tensor '{}': missing \"{}\"", path, name, k);
  }
  const json& jd = e["dtype"];
  const json& js = e["shape"];
  const json& jo = e["data_offsets"];
  if (!jd.is_string()) return Corrupt("{}: tensor '{}': \"dtype\" is not a string", path, name);
  const std::string& ds = jd.get_ref<const std::string&>();
  std::optional<DType> dt = dtype_from_safetensors(ds);
  if (!dt) {
    return InvalidArgument(
        "{}: tensor '{}': dtype {} is not supported (afd loads F32, BF16, F16, F8_E4M3, I32, I64)",
        path, name, ds);
  }
  if (!js.is_array()) return Corrupt("{}: tensor '{}': \"shape\" is not an array", path, name);
  Shape shape;
  shape.reserve(js.size());
  for (const json& d : js) {
    int64_t v;
    if (!as_nonneg_int(d, &v)) {
      return Corrupt("{}: tensor '{}': shape {} has a dim that is not a non-negative integer", path,
                     name, js.dump());
    }
    shape.push_back(v);
  }
  int64_t b = 0, en = 0;
  if (!jo.is_array() || jo.size() != 2 || !as_nonneg_int(jo[0], &b) || !as_nonneg_int(jo[1], &en)) {
    return Corrupt("{}: tensor '{}': data_offsets {} is not [begin, end] of non-negative integers",
                   path, name, jo.dump());
  }
  if (b > en) {
    return Corrupt("{}: tensor '{}': data_offsets [{}, {}] has begin > end", path, name, b, en);
  }
  if (static_cast<uint64_t>(en) > data_size) {
    return Corrupt("{}: tensor '{}': data_offsets [{}, {}] end past the data buffer ({} bytes)",
                   path, name, b, en, data_size);
  }
  int64_t want = 0;
  if (!checked_nbytes(shape, *dt, &want)) {
    return Corrupt("{}: tensor '{}': shape {} overflows", path, name, shape_str(shape));
  }
  if (want != en - b) {
    return Corrupt(
        "{}: tensor '{}': shape/byte-count mismatch: {} {} needs {} bytes, "
        "data_offsets [{}, {}] hold {}",
        path, name, ds, shape_str(shape), want, b, en, en - b);
  }
  t->name = name;
  t->dtype = *dt;
  t->shape = std::move(shape);
  t->nbytes = static_cast<size_t>(want);
  t->file = path;
  *begin = static_cast<uint64_t>(b);
  return Status::OK();
}

}  // namespace

// ---- TensorInfo / SafetensorsFile ------------------------------------------------------------

TensorView TensorInfo::view() const { return TensorView(const_cast<uint8_t*>(data), dtype, shape); }

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  AFD_ASSIGN_OR_RETURN(MappedFile map, MappedFile::open(path));
  const size_t size = map.size();
  if (size < 8) {
    return Corrupt("{}: {} bytes, too short for a safetensors file (8-byte header length)", path,
                   size);
  }
  const uint8_t* base = map.data();
  const uint64_t n = read_u64_le(base);
  if (n > size - 8) {
    return Corrupt("{}: header length {} runs past the end of the file ({} bytes)", path, n, size);
  }
  AFD_ASSIGN_OR_RETURN(
      json header, parse_json_strict(path, "header",
                                     std::string_view(reinterpret_cast<const char*>(base + 8), n)));

  SafetensorsFile f;
  const uint8_t* data = base + 8 + n;
  const uint64_t data_size = size - 8 - n;
  std::vector<std::pair<uint64_t, size_t>> spans;  // (begin, index into f.tensors_)
  f.tensors_.reserve(header.size());
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == kMetadataKey) {
      if (!it->is_object()) return Corrupt("{}: __metadata__ is not a JSON object", path);
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) {
          return Corrupt("{}: __metadata__ value of '{}' is not a string", path, m.key());
        }
        f.metadata_[m.key()] = m->get<std::string>();
      }
      continue;
    }
    TensorInfo t;
    uint64_t begin = 0;
    AFD_RETURN_IF_ERROR(parse_entry(path, it.key(), *it, data_size, &t, &begin));
    t.data = data + begin;
    spans.emplace_back(begin, f.tensors_.size());
    f.tensors_.push_back(std::move(t));
  }

  // Overlap check: sorted by begin, each tensor must start at or after the previous end.
  // 0-byte tensors occupy nothing and never overlap.
  std::sort(spans.begin(), spans.end());
  const TensorInfo* prev = nullptr;
  uint64_t prev_end = 0;
  for (const auto& [begin, i] : spans) {
    const TensorInfo& t = f.tensors_[i];
    if (t.nbytes == 0) continue;
    if (prev && begin < prev_end) {
      return Corrupt("{}: tensors '{}' and '{}' overlap (bytes [{}, {}) and [{}, {}))", path,
                     prev->name, t.name, static_cast<uint64_t>(prev->data - data), prev_end, begin,
                     begin + t.nbytes);
    }
    prev = &t;
    prev_end = begin + t.nbytes;
  }

  // nlohmann's object is a std::map, so keys already come sorted; sort anyway so the
  // documented order does not depend on the JSON library's container.
  std::sort(f.tensors_.begin(), f.tensors_.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  f.map_ = std::move(map);
  return f;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorInfo& t, std::string_view n) { return t.name < n; });
  return (it != tensors_.end() && it->name == name) ? &*it : nullptr;
}

// ---- Checkpoint ------------------------------------------------------------------------------

Result<Checkpoint> Checkpoint::open(const std::string& dir) {
  std::error_code ec;
  fs::file_status st = fs::status(dir, ec);
  if (!fs::exists(st)) return NotFound("{}: no such directory", dir);
  if (!fs::is_directory(st)) return InvalidArgument("{}: not a directory", dir);

  Checkpoint ck;
  const std::string single = (fs::path(dir) / kSingleFile).string();
  const std::string index = (fs::path(dir) / kIndexFile).string();
  if (fs::exists(single, ec)) {
    AFD_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::open(single));
    for (const TensorInfo& t : f.tensors()) ck.by_name_.emplace(t.name, &t);
    ck.files_.push_back(std::move(f));
    ck.file_paths_.push_back(single);
    return ck;
  }
  if (!fs::exists(index, ec)) {
    return NotFound("{}: neither {} nor {} is present", dir, kSingleFile, kIndexFile);
  }

  AFD_ASSIGN_OR_RETURN(MappedFile imap, MappedFile::open(index));
  AFD_ASSIGN_OR_RETURN(
      json ij,
      parse_json_strict(index, "index",
                        std::string_view(reinterpret_cast<const char*>(imap.data()), imap.size())));
  if (!ij.contains("weight_map") || !ij["weight_map"].is_object()) {
    return Corrupt("{}: no \"weight_map\" object", index);
  }
  // weight_map: tensor name -> shard file name (relative to dir).
  std::map<std::string, std::string> wmap;
  std::set<std::string> shard_names;
  for (auto it = ij["weight_map"].begin(); it != ij["weight_map"].end(); ++it) {
    if (!it->is_string()) {
      return Corrupt("{}: weight_map entry of tensor '{}' is not a string", index, it.key());
    }
    const std::string& shard = it->get_ref<const std::string&>();
    fs::path p(shard);
    bool escapes = shard.empty() || p.is_absolute() ||
                   std::any_of(p.begin(), p.end(), [](const fs::path& c) { return c == ".."; });
    if (escapes) {
      return Corrupt("{}: tensor '{}' maps to '{}', which is not a file name inside {}", index,
                     it.key(), shard, dir);
    }
    wmap.emplace(it.key(), shard);
    shard_names.insert(shard);
  }

  std::map<std::string, size_t> shard_idx;  // shard name -> index into files_
  for (const std::string& s : shard_names) {
    std::string full = (fs::path(dir) / s).string();
    Result<SafetensorsFile> f = SafetensorsFile::open(full);
    if (!f.ok()) {
      if (f.status().code() == Code::kNotFound) {
        return NotFound("{}: shard '{}' listed in the index is missing ({})", index, s, full);
      }
      return f.status();
    }
    shard_idx[s] = ck.files_.size();
    ck.files_.push_back(std::move(f).value());
    ck.file_paths_.push_back(full);
  }

  // Every tensor of every shard: in one shard only, and listed in the index for that shard.
  for (const auto& [s, i] : shard_idx) {
    for (const TensorInfo& t : ck.files_[i].tensors()) {
      auto [pos, fresh] = ck.by_name_.emplace(t.name, &t);
      if (!fresh) {
        return Corrupt("{}: tensor '{}' is in two shards: {} and {}", dir, t.name,
                       pos->second->file, t.file);
      }
      auto w = wmap.find(t.name);
      if (w == wmap.end()) {
        return Corrupt("{}: tensor '{}' is in shard {} but not listed in the index", index, t.name,
                       t.file);
      }
      if (w->second != s) {
        return Corrupt("{}: tensor '{}' is in shard {} but the index maps it to {}", index, t.name,
                       t.file, (fs::path(dir) / w->second).string());
      }
    }
  }
  // Every listed tensor is present (in its shard, given the checks above).
  for (const auto& [name, s] : wmap) {
    if (!ck.by_name_.count(name)) {
      return Corrupt("{}: tensor '{}' is listed for shard {} but absent from it", index, name,
                     ck.file_paths_[shard_idx[s]]);
    }
  }
  return ck;
}

const TensorInfo* Checkpoint::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(by_name_.size());
  for (const auto& [name, t] : by_name_) out.push_back(name);
  return out;
}

// ---- writing ---------------------------------------------------------------------------------

namespace {

using NamedViews = std::vector<std::pair<std::string, TensorView>>;

// A JSON string literal, escaped as serde_json (the reference) does; false on invalid UTF-8.
bool json_quote(const std::string& s, std::string* out) {
  try {
    *out += json(s).dump();
  } catch (const json::exception&) {
    return false;
  }
  return true;
}

// Validates the tensors and builds the padded header (compact JSON, "__metadata__" first,
// tensors in the given order with back-to-back offsets, spaces to a multiple of 8).
Result<std::string> build_header(const std::string& path, const NamedViews& tensors,
                                 const std::map<std::string, std::string>& metadata) {
  std::string h = "{";
  bool first = true;
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    for (const auto& [k, v] : metadata) {
      if (!first) h += ',';
      first = false;
      bool ok = json_quote(k, &h);
      h += ':';
      if (!ok || !json_quote(v, &h)) {
        return InvalidArgument("{}: metadata key '{}' or its value is not valid UTF-8", path, k);
      }
    }
    h += '}';  // `first` stays false: the first tensor needs a comma after __metadata__
  }
  std::set<std::string_view> seen;
  uint64_t off = 0;
  for (const auto& [name, v] : tensors) {
    if (name.empty() || name == kMetadataKey) {
      return InvalidArgument("{}: tensor name '{}' is reserved or empty", path, name);
    }
    if (!seen.insert(name).second) {
      return InvalidArgument("{}: tensor '{}' given twice", path, name);
    }
    int64_t nb = 0;
    if (!checked_nbytes(v.shape, v.dtype, &nb)) {
      return InvalidArgument("{}: tensor '{}': bad shape {}", path, name, shape_str(v.shape));
    }
    if (v.strides.size() != v.shape.size() || !v.is_contiguous()) {
      return InvalidArgument("{}: tensor '{}': view is not contiguous", path, name);
    }
    if (nb > 0 && v.data == nullptr) {
      return InvalidArgument("{}: tensor '{}': null data for {} bytes", path, name, nb);
    }
    if (!first) h += ',';
    first = false;
    if (!json_quote(name, &h)) {
      return InvalidArgument("{}: tensor name '{}' is not valid UTF-8", path, name);
    }
    h += fmt::format(":{{\"dtype\":\"{}\",\"shape\":[", dtype_safetensors_name(v.dtype));
    for (size_t i = 0; i < v.shape.size(); ++i) {
      if (i) h += ',';
      h += std::to_string(v.shape[i]);
    }
    h += fmt::format("],\"data_offsets\":[{},{}]}}", off, off + static_cast<uint64_t>(nb));
    off += static_cast<uint64_t>(nb);
  }
  h += '}';
  h.append((8 - h.size() % 8) % 8, ' ');
  return h;
}

std::string temp_name(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  return fmt::format("{}.tmp-{}-{}", path, ::getpid(), counter.fetch_add(1));
}

// Streams header + tensor bytes to a fresh temporary file next to `path` (flushed and synced)
// and returns its name; on failure nothing is left behind.
Result<std::string> write_temp(const std::string& path, const NamedViews& tensors,
                               const std::map<std::string, std::string>& metadata) {
  AFD_ASSIGN_OR_RETURN(std::string header, build_header(path, tensors, metadata));
  std::string tmp = temp_name(path);
  FILE* fp = std::fopen(tmp.c_str(), "wb");
  if (!fp) return IOError("{}: cannot create {}: {}", path, tmp, std::strerror(errno));
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(uint64_t{header.size()} >> (8 * i));
  bool ok = std::fwrite(len, 1, 8, fp) == 8 &&
            std::fwrite(header.data(), 1, header.size(), fp) == header.size();
  for (size_t i = 0; ok && i < tensors.size(); ++i) {
    const TensorView& v = tensors[i].second;
    size_t nb = static_cast<size_t>(v.nbytes());
    ok = nb == 0 || std::fwrite(v.data, 1, nb, fp) == nb;
  }
  int err = ok ? 0 : errno;
  if (ok && (std::fflush(fp) != 0 || ::fsync(fileno(fp)) != 0)) {
    ok = false;
    err = errno;
  }
  if (std::fclose(fp) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    std::remove(tmp.c_str());
    return IOError("{}: write failed: {}", path, std::strerror(err));
  }
  return tmp;
}

Status rename_into_place(const std::string& tmp, const std::string& path) {
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    std::remove(tmp.c_str());
    return IOError("{}: cannot rename into place: {}", path, std::strerror(e));
  }
  return Status::OK();
}

}  // namespace

Status write_safetensors(const std::string& path, const NamedViews& tensors,
                         const std::map<std::string, std::string>& metadata) {
  AFD_ASSIGN_OR_RETURN(std::string tmp, write_temp(path, tensors, metadata));
  return rename_into_place(tmp, path);
}

Status write_checkpoint_shards(const std::string& dir, const NamedViews& tensors, int num_shards,
                               const std::map<std::string, std::string>& metadata) {
  if (num_shards < 1) {
    return InvalidArgument("{}: num_shards must be >= 1, got {}", dir, num_shards);
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    return IOError("{}: cannot create directory: {}", dir, ec ? ec.message() : "not a directory");
  }

  // Split IN ORDER into S contiguous non-empty groups. Group s takes at least one tensor, then
  // more while the next tensor's byte midpoint is within (s+1)/S of the total and enough
  // tensors remain for the later groups. All-zero-byte inputs are split by count instead.
  const size_t n = tensors.size();
  const size_t S = std::min(n, static_cast<size_t>(num_shards));
  std::vector<uint64_t> w(n);
  unsigned __int128 total = 0;
  std::set<std::string_view> seen;  // per-shard writes only see their own group
  for (size_t j = 0; j < n; ++j) {
    if (!seen.insert(tensors[j].first).second) {
      return InvalidArgument("{}: tensor '{}' given twice", dir, tensors[j].first);
    }
    int64_t nb = 0;
    if (!checked_nbytes(tensors[j].second.shape, tensors[j].second.dtype, &nb)) {
      return InvalidArgument("{}: tensor '{}': bad shape {}", dir, tensors[j].first,
                             shape_str(tensors[j].second.shape));
    }
    w[j] = static_cast<uint64_t>(nb);
    total += w[j];
  }
  const uint64_t total_bytes = static_cast<uint64_t>(total);
  if (total == 0) {
    std::fill(w.begin(), w.end(), 1);
    total = n;
  }
  std::vector<size_t> bounds{0};  // group s is [bounds[s], bounds[s+1])
  unsigned __int128 cum = 0;      // bytes before tensor j
  size_t j = 0;
  for (size_t s = 0; s < S; ++s) {
    const size_t last_allowed = n - (S - 1 - s);  // exclusive end leaving one per later group
    // Midpoint of tensor j (cum + w/2) at or below the group's cumulative target (s+1)/S*total.
    auto midpoint_fits = [&] { return (2 * cum + w[j]) * S <= 2 * (s + 1) * total; };
    cum += w[j++];
    while (j < last_allowed && (s == S - 1 || midpoint_fits())) cum += w[j++];
    bounds.push_back(j);
  }

  // Write every shard under a temporary name, then rename all, the index last: a reader that
  // finds the index finds complete shards.
  std::vector<std::pair<std::string, std::string>> done;  // (tmp, final)
  auto cleanup = [&](size_t renamed) {
    for (size_t i = 0; i < done.size(); ++i) {
      std::remove((i < renamed ? done[i].second : done[i].first).c_str());
    }
  };
  json wmap = json::object();
  for (size_t s = 0; s < S; ++s) {
    std::string fname = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, S);
    std::string full = (fs::path(dir) / fname).string();
    NamedViews group(tensors.begin() + static_cast<std::ptrdiff_t>(bounds[s]),
                     tensors.begin() + static_cast<std::ptrdiff_t>(bounds[s + 1]));
    Result<std::string> tmp = write_temp(full, group, metadata);
    if (!tmp.ok()) {
      cleanup(0);
      return tmp.status();
    }
    done.emplace_back(tmp.value(), full);
    for (const auto& [name, v] : group) wmap[name] = fname;
  }
  json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", std::move(wmap)}};
  std::string itext = index.dump(2) + "\n";  // names were validated as UTF-8 by write_temp
  std::string ipath = (fs::path(dir) / kIndexFile).string();
  std::string itmp = temp_name(ipath);
  Status st = write_file_atomic(itmp, itext.data(), itext.size());
  if (!st.ok()) {
    cleanup(0);
    return st;
  }
  done.emplace_back(itmp, ipath);
  for (size_t i = 0; i < done.size(); ++i) {
    if (std::rename(done[i].first.c_str(), done[i].second.c_str()) != 0) {
      int e = errno;
      cleanup(i);
      return IOError("{}: cannot rename into place: {}", done[i].second, std::strerror(e));
    }
  }
  return Status::OK();
}

}  // namespace afd
