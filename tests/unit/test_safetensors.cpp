// safetensors reader/writer and Checkpoint: round trips, the exact on-disk layout of the
// reference (Python) implementation, sharding, and every malformed input the reader rejects.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "model/safetensors.h"

namespace afd {
namespace {

namespace fs = std::filesystem;
using NamedViews = std::vector<std::pair<std::string, TensorView>>;

// A fresh directory per test, removed afterwards.
class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           fmt::format("afd_st_{}_{}_{}", ::getpid(), info->name(), counter.fetch_add(1));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

void write_raw(const std::string& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << p;
}

std::string read_raw(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string u64_le(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A raw file: u64 length (header.size() unless overridden), header, `data_size` zero bytes.
std::string st_file(const std::string& header, size_t data_size,
                    uint64_t n = std::numeric_limits<uint64_t>::max()) {
  return u64_le(n == std::numeric_limits<uint64_t>::max() ? header.size() : n) + header +
         std::string(data_size, '\0');
}

// Asserts a failed status with `code` whose message holds every string in `subs`.
void expect_error(const Status& s, Code code, const std::vector<std::string>& subs) {
  ASSERT_FALSE(s.ok()) << "expected an error containing " << (subs.empty() ? "" : subs[0]);
  EXPECT_EQ(s.code(), code) << s.to_string();
  for (const std::string& sub : subs) {
    EXPECT_NE(s.message().find(sub), std::string::npos)
        << "message lacks '" << sub << "': " << s.message();
  }
}

// A tensor of dtype t and shape s with deterministic, seed-dependent bytes.
Tensor patterned(DType t, Shape s, int seed) {
  Tensor x = Tensor::empty(t, std::move(s));
  auto* p = static_cast<uint8_t*>(x.raw());
  for (int64_t i = 0; i < x.nbytes(); ++i) p[i] = static_cast<uint8_t>(i * 131 + seed * 17 + 1);
  return x;
}

bool same_bytes(const TensorInfo& t, const Tensor& want) {
  return t.nbytes == static_cast<size_t>(want.nbytes()) &&
         (t.nbytes == 0 || std::memcmp(t.data, want.raw(), t.nbytes) == 0);
}

std::vector<std::string> list_dir(const fs::path& d) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(d)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// ---- round trips -----------------------------------------------------------------------------

TEST_F(SafetensorsTest, RoundTripEveryDtypeOddShapes) {
  struct Spec {
    std::string name;
    DType dtype;
    Shape shape;
  };
  // The fp8 tensor has 30 bytes, so everything after it is misaligned on purpose.
  std::vector<Spec> specs = {
      {"z.f32", DType::kF32, {3, 5, 7}}, {"a.bf16", DType::kBF16, {1, 129}},
      {"m.f16", DType::kF16, {7}},       {"b.fp8", DType::kF8E4M3, {2, 3, 5}},
      {"scalar.i32", DType::kI32, {}},   {"empty.i64", DType::kI64, {4, 0, 3}},
      {"v.i64", DType::kI64, {3}},       {"empty0.f32", DType::kF32, {0}},
  };
  std::vector<Tensor> data;
  NamedViews views;
  for (size_t i = 0; i < specs.size(); ++i) {
    data.push_back(patterned(specs[i].dtype, specs[i].shape, static_cast<int>(i)));
  }
  for (size_t i = 0; i < specs.size(); ++i) views.emplace_back(specs[i].name, data[i].view());
  const std::string p = path("all.safetensors");
  ASSERT_TRUE(write_safetensors(p, views).ok());

  Result<SafetensorsFile> r = SafetensorsFile::open(p);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const SafetensorsFile& f = r.value();
  EXPECT_EQ(f.path(), p);
  EXPECT_TRUE(f.metadata().empty());
  ASSERT_EQ(f.tensors().size(), specs.size());
  // Documented order: sorted by name.
  EXPECT_TRUE(
      std::is_sorted(f.tensors().begin(), f.tensors().end(),
                     [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; }));
  int64_t total = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    SCOPED_TRACE(specs[i].name);
    const TensorInfo* t = f.find(specs[i].name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->name, specs[i].name);
    EXPECT_EQ(t->dtype, specs[i].dtype);
    EXPECT_EQ(t->shape, specs[i].shape);
    EXPECT_EQ(t->file, p);
    EXPECT_NE(t->data, nullptr);
    EXPECT_TRUE(same_bytes(*t, data[i]));
    TensorView v = t->view();
    EXPECT_EQ(v.data, static_cast<const void*>(t->data));
    EXPECT_EQ(v.dtype, specs[i].dtype);
    EXPECT_EQ(v.shape, specs[i].shape);
    EXPECT_TRUE(v.is_contiguous());
    EXPECT_EQ(v.nbytes(), data[i].nbytes());
    total += data[i].nbytes();
  }
  // Zero copy and write order: the tensors sit back to back in one mapping, in the order given.
  for (size_t i = 1; i < specs.size(); ++i) {
    EXPECT_EQ(f.find(specs[i].name)->data,
              f.find(specs[i - 1].name)->data + f.find(specs[i - 1].name)->nbytes);
  }
  EXPECT_EQ(f.find("scalar.i32")->nbytes, 4u);
  EXPECT_EQ(f.find("empty.i64")->nbytes, 0u);
  EXPECT_EQ(f.find("absent"), nullptr);
  EXPECT_EQ(f.find(""), nullptr);
  // File size: 8 + padded header + data.
  std::string raw = read_raw(p);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(raw[static_cast<size_t>(i)]);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(raw.size(), 8 + n + static_cast<uint64_t>(total));
  EXPECT_EQ(list_dir(dir_), std::vector<std::string>{"all.safetensors"});  // no temp files
}

TEST_F(SafetensorsTest, MetadataRoundTrip) {
  Tensor x = patterned(DType::kBF16, {2, 3}, 1);
  std::map<std::string, std::string> meta = {{"format", "pt"},
                                             {"unicode", "\xc3\xbc\xc3\xb1\xc3\xad"},
                                             {"odd", "a \"quote\"\n\\ x"},
                                             {"empty", ""}};
  const std::string p = path("meta.safetensors");
  ASSERT_TRUE(write_safetensors(p, {{"x", x.view()}}, meta).ok());
  Result<SafetensorsFile> r = SafetensorsFile::open(p);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r.value().metadata(), meta);
  ASSERT_EQ(r.value().tensors().size(), 1u);
  EXPECT_TRUE(same_bytes(r.value().tensors()[0], x));

  // Metadata only, no tensors: still a valid file.
  const std::string q = path("only_meta.safetensors");
  ASSERT_TRUE(write_safetensors(q, {}, meta).ok());
  Result<SafetensorsFile> r2 = SafetensorsFile::open(q);
  ASSERT_TRUE(r2.ok()) << r2.status().to_string();
  EXPECT_EQ(r2.value().metadata(), meta);
  EXPECT_TRUE(r2.value().tensors().empty());
}

// The exact bytes Python `safetensors` writes (checked against safetensors 0.4/0.5 output):
// compact JSON, "__metadata__" first, keys dtype/shape/data_offsets, spaces to a multiple of 8.
TEST_F(SafetensorsTest, PythonCompatibleLayout) {
  Tensor w = Tensor::from_f32({1, 3}, {1.0f, -2.0f, 0.5f});
  const std::string data("\x00\x00\x80\x3f\x00\x00\x00\xc0\x00\x00\x00\x3f", 12);  // f32 LE
  {
    const std::string header = R"({"w":{"dtype":"F32","shape":[1,3],"data_offsets":[0,12]}})";
    ASSERT_EQ(header.size(), 57u);  // padded with 7 spaces to 64
    std::string want = std::string("\x40\0\0\0\0\0\0\0", 8) + header + "       " + data;
    const std::string p = path("w.safetensors");
    ASSERT_TRUE(write_safetensors(p, {{"w", w.view()}}).ok());
    EXPECT_EQ(read_raw(p), want);
  }
  {
    const std::string header = R"({"__metadata__":{"format":"pt"},)"
                               R"("w":{"dtype":"F32","shape":[1,3],"data_offsets":[0,12]}})";
    ASSERT_EQ(header.size(), 88u);  // already a multiple of 8: no padding
    std::string want = std::string("\x58\0\0\0\0\0\0\0", 8) + header + data;
    const std::string p = path("wm.safetensors");
    ASSERT_TRUE(write_safetensors(p, {{"w", w.view()}}, {{"format", "pt"}}).ok());
    EXPECT_EQ(read_raw(p), want);
  }
  {
    // A scalar and a 0-element tensor, in the order Python sorts them (I64 before F32).
    Tensor s = Tensor::empty(DType::kI64, {});
    *s.data<int64_t>() = 3;
    Tensor e = Tensor::empty(DType::kF32, {0, 3});
    const std::string header = R"({"s":{"dtype":"I64","shape":[],"data_offsets":[0,8]},)"
                               R"("w":{"dtype":"F32","shape":[0,3],"data_offsets":[8,8]}})";
    ASSERT_EQ(header.size(), 108u);  // 4 spaces to 112
    std::string want = std::string("\x70\0\0\0\0\0\0\0", 8) + header + "    " +
                       std::string("\x03\0\0\0\0\0\0\0", 8);
    const std::string p = path("se.safetensors");
    ASSERT_TRUE(write_safetensors(p, {{"s", s.view()}, {"w", e.view()}}).ok());
    EXPECT_EQ(read_raw(p), want);
  }
}

TEST_F(SafetensorsTest, WriterRejectsBadInput) {
  Tensor x = patterned(DType::kF32, {2, 3}, 0);
  TensorView transposed = x.view();
  transposed.shape = {3, 2};
  transposed.strides = {1, 3};
  TensorView null_data(nullptr, DType::kF32, {4});
  const std::string p = path("bad.safetensors");
  expect_error(write_safetensors(p, {{"a", x.view()}, {"a", x.view()}}), Code::kInvalidArgument,
               {p, "'a'", "twice"});
  expect_error(write_safetensors(p, {{"", x.view()}}), Code::kInvalidArgument, {p});
  expect_error(write_safetensors(p, {{"__metadata__", x.view()}}), Code::kInvalidArgument, {p});
  expect_error(write_safetensors(p, {{"t", transposed}}), Code::kInvalidArgument,
               {p, "'t'", "contiguous"});
  expect_error(write_safetensors(p, {{"n", null_data}}), Code::kInvalidArgument, {p, "'n'"});
  expect_error(write_safetensors(p, {{"bad\xff", x.view()}}), Code::kInvalidArgument, {p});
  expect_error(write_safetensors(p, {{"x", x.view()}}, {{"k", "\xfe"}}), Code::kInvalidArgument,
               {p, "'k'"});
  const std::string nodir = path("missing_dir/x.safetensors");
  expect_error(write_safetensors(nodir, {{"x", x.view()}}), Code::kIOError, {nodir});
  EXPECT_TRUE(list_dir(dir_).empty());  // nothing under a final or a temporary name
  // A 0-byte tensor may have null data.
  ASSERT_TRUE(write_safetensors(p, {{"e", TensorView(nullptr, DType::kF32, {0, 5})}}).ok());
  Result<SafetensorsFile> r = SafetensorsFile::open(p);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r.value().find("e")->shape, (Shape{0, 5}));
}

// ---- sharded checkpoints ---------------------------------------------------------------------

struct Model {
  std::vector<Tensor> data;
  NamedViews views;
};

Model make_model(const std::vector<std::pair<DType, Shape>>& specs) {
  Model m;
  for (size_t i = 0; i < specs.size(); ++i) {
    m.data.push_back(patterned(specs[i].first, specs[i].second, static_cast<int>(i)));
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    m.views.emplace_back(fmt::format("model.layers.{}.w", i), m.data[i].view());
  }
  return m;
}

nlohmann::json read_json(const std::string& p) { return nlohmann::json::parse(read_raw(p)); }

// Writes `m` in `k` shards, checks the files, the index and Checkpoint::open; returns the
// number of tensors per shard, in shard order.
std::vector<size_t> check_shards(const fs::path& dir, const Model& m, int k, size_t expect_shards) {
  EXPECT_TRUE(write_checkpoint_shards(dir.string(), m.views, k, {{"format", "pt"}}).ok());
  std::vector<std::string> want_files;
  for (size_t s = 1; s <= expect_shards; ++s) {
    want_files.push_back(fmt::format("model-{:05d}-of-{:05d}.safetensors", s, expect_shards));
  }
  std::vector<std::string> want_listing = want_files;
  want_listing.push_back("model.safetensors.index.json");
  std::sort(want_listing.begin(), want_listing.end());
  EXPECT_EQ(list_dir(dir), want_listing);  // no temp files, no empty shards

  nlohmann::json idx = read_json((dir / "model.safetensors.index.json").string());
  int64_t total = 0;
  for (const Tensor& t : m.data) total += t.nbytes();
  EXPECT_EQ(idx["metadata"]["total_size"].get<int64_t>(), total);
  EXPECT_EQ(idx["weight_map"].size(), m.views.size());

  // Tensors go to shards IN ORDER: shard numbers never decrease along the input.
  std::vector<size_t> per_shard(expect_shards, 0);
  std::vector<int64_t> shard_bytes(expect_shards, 0);
  size_t prev = 0;
  int64_t max_tensor = 0;
  for (size_t i = 0; i < m.views.size(); ++i) {
    std::string f = idx["weight_map"][m.views[i].first].get<std::string>();
    size_t s = static_cast<size_t>(std::find(want_files.begin(), want_files.end(), f) -
                                   want_files.begin());
    EXPECT_LT(s, expect_shards) << f;
    if (s >= expect_shards) return {};
    EXPECT_GE(s, prev);
    prev = s;
    ++per_shard[s];
    shard_bytes[s] += m.data[i].nbytes();
    max_tensor = std::max(max_tensor, m.data[i].nbytes());
  }
  // Roughly equal: no shard exceeds an equal share by more than one tensor.
  for (size_t s = 0; s < expect_shards; ++s) {
    EXPECT_GT(per_shard[s], 0u);
    EXPECT_LE(shard_bytes[s], total / static_cast<int64_t>(expect_shards) + max_tensor);
  }

  Result<Checkpoint> ck = Checkpoint::open(dir.string());
  EXPECT_TRUE(ck.ok()) << ck.status().to_string();
  if (!ck.ok()) return per_shard;
  EXPECT_EQ(ck.value().num_tensors(), m.views.size());
  EXPECT_EQ(ck.value().files().size(), expect_shards);
  for (size_t s = 0; s < expect_shards && s < ck.value().files().size(); ++s) {
    EXPECT_EQ(ck.value().files()[s], (dir / want_files[s]).string());
    Result<SafetensorsFile> sf = SafetensorsFile::open(ck.value().files()[s]);
    EXPECT_TRUE(sf.ok());
    if (sf.ok()) {
      EXPECT_EQ(sf.value().metadata().at("format"), "pt");
    }
  }
  std::vector<std::string> names = ck.value().names();
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  EXPECT_EQ(names.size(), m.views.size());
  for (size_t i = 0; i < m.views.size(); ++i) {
    const TensorInfo* t = ck.value().find(m.views[i].first);
    EXPECT_NE(t, nullptr) << m.views[i].first;
    if (!t) continue;
    EXPECT_EQ(t->dtype, m.data[i].dtype());
    EXPECT_EQ(t->shape, m.data[i].shape());
    EXPECT_TRUE(same_bytes(*t, m.data[i])) << t->name;
    EXPECT_EQ(t->file, (dir / idx["weight_map"][t->name].get<std::string>()).string());
  }
  EXPECT_EQ(ck.value().find("nope"), nullptr);
  return per_shard;
}

const std::vector<std::pair<DType, Shape>> kSpecs = {
    {DType::kBF16, {16, 8}}, {DType::kF32, {3}},    {DType::kF8E4M3, {5, 7}}, {DType::kI64, {}},
    {DType::kBF16, {0, 4}},  {DType::kF16, {9, 3}}, {DType::kF32, {11, 2}},
};

TEST_F(SafetensorsTest, ShardsK1StillWritesIndex) {
  Model m = make_model(kSpecs);
  EXPECT_EQ(check_shards(dir_, m, 1, 1), std::vector<size_t>{kSpecs.size()});
}

TEST_F(SafetensorsTest, ShardsK3) {
  Model m = make_model(kSpecs);
  std::vector<size_t> per = check_shards(dir_, m, 3, 3);
  EXPECT_EQ(per.size(), 3u);
  // Writing again into the same directory replaces the files with identical ones.
  std::vector<size_t> again = check_shards(dir_, m, 3, 3);
  EXPECT_EQ(per, again);
}

TEST_F(SafetensorsTest, ShardsBalanceBytes) {
  // Three big tensors among small ones: each shard gets one big one.
  Model m = make_model({{DType::kF32, {25}},
                        {DType::kF8E4M3, {1}},
                        {DType::kF8E4M3, {1}},
                        {DType::kF8E4M3, {1}},
                        {DType::kF32, {25}},
                        {DType::kF8E4M3, {1}},
                        {DType::kF8E4M3, {1}},
                        {DType::kF32, {25}}});
  EXPECT_EQ(check_shards(dir_, m, 3, 3), (std::vector<size_t>{3, 2, 3}));
}

TEST_F(SafetensorsTest, ShardsMoreThanTensors) {
  // Empty shards are not written: 4 tensors in 10 requested shards -> 4 files "-of-00004".
  Model m = make_model({kSpecs[0], kSpecs[1], kSpecs[2], kSpecs[3]});
  EXPECT_EQ(check_shards(dir_, m, 10, 4), (std::vector<size_t>{1, 1, 1, 1}));
}

TEST_F(SafetensorsTest, ShardsAllZeroBytesSplitByCount) {
  Model m = make_model(
      {{DType::kF32, {0}}, {DType::kBF16, {2, 0}}, {DType::kI32, {0, 0}}, {DType::kF16, {0}}});
  EXPECT_EQ(check_shards(dir_, m, 2, 2), (std::vector<size_t>{2, 2}));
}

TEST_F(SafetensorsTest, ShardsEmptyListWritesOnlyIndex) {
  ASSERT_TRUE(write_checkpoint_shards(dir_.string(), {}, 3).ok());
  EXPECT_EQ(list_dir(dir_), std::vector<std::string>{"model.safetensors.index.json"});
  Result<Checkpoint> ck = Checkpoint::open(dir_.string());
  ASSERT_TRUE(ck.ok()) << ck.status().to_string();
  EXPECT_EQ(ck.value().num_tensors(), 0u);
  EXPECT_TRUE(ck.value().files().empty());
}

TEST_F(SafetensorsTest, ShardsCreateDirAndRejectBadArgs) {
  Model m = make_model({kSpecs[0], kSpecs[1]});
  const fs::path sub = dir_ / "a" / "b";
  ASSERT_TRUE(write_checkpoint_shards(sub.string(), m.views, 2).ok());
  EXPECT_EQ(list_dir(sub).size(), 3u);
  const fs::path other = dir_ / "c";
  expect_error(write_checkpoint_shards(other.string(), m.views, 0), Code::kInvalidArgument,
               {other.string()});
  // A duplicate split across two shards is caught before anything is written.
  NamedViews dup = {m.views[0], m.views[1], {m.views[0].first, m.views[1].second}};
  expect_error(write_checkpoint_shards(other.string(), dup, 3), Code::kInvalidArgument,
               {other.string(), m.views[0].first});
  // A bad tensor in the last shard leaves no file at all (earlier shards' temps removed).
  NamedViews bad = {m.views[0], m.views[1], {"x", TensorView(nullptr, DType::kF32, {3})}};
  expect_error(write_checkpoint_shards(other.string(), bad, 3), Code::kInvalidArgument, {"'x'"});
  EXPECT_TRUE(list_dir(other).empty());
}

TEST_F(SafetensorsTest, CheckpointSingleFileAndMove) {
  Model m = make_model(kSpecs);
  ASSERT_TRUE(write_safetensors(path("model.safetensors"), m.views).ok());
  Result<Checkpoint> r = Checkpoint::open(dir_.string());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r.value().files(), std::vector<std::string>{path("model.safetensors")});
  const TensorInfo* before = r.value().find(m.views[2].first);
  ASSERT_NE(before, nullptr);
  // Moving the checkpoint keeps TensorInfo pointers and the mapping valid.
  Checkpoint ck = std::move(r).value();
  Checkpoint moved = std::move(ck);
  EXPECT_EQ(moved.find(m.views[2].first), before);
  EXPECT_TRUE(same_bytes(*before, m.data[2]));
  EXPECT_EQ(moved.num_tensors(), kSpecs.size());
}

// ---- malformed single files ------------------------------------------------------------------

struct BadCase {
  std::string label;
  std::string bytes;  // whole file
  Code code;
  std::vector<std::string> subs;  // besides the path
};

std::string entry(const std::string& dtype, const std::string& shape, const std::string& offs) {
  return fmt::format(R"({{"dtype":"{}","shape":{},"data_offsets":{}}})", dtype, shape, offs);
}

TEST_F(SafetensorsTest, RejectsMalformedFiles) {
  std::vector<BadCase> cases;
  auto bad = [&](std::string label, std::string bytes, Code code, std::vector<std::string> subs) {
    cases.push_back({std::move(label), std::move(bytes), code, std::move(subs)});
  };
  // A file whose header is {"<name>": <entry>} followed by `data` zero bytes.
  auto one = [](const std::string& name, const std::string& e, size_t data) {
    return st_file(fmt::format(R"({{"{}":{}}})", name, e), data);
  };
  const std::string ok_t = entry("F32", "[2]", "[0,8]");
  const uint64_t absurd = std::numeric_limits<uint64_t>::max() - 1;
  bad("empty file", "", Code::kCorrupt, {"too short"});
  bad("7 bytes", std::string(7, '\0'), Code::kCorrupt, {"too short"});
  bad("header past end", st_file("{}", 0, 1000), Code::kCorrupt, {"past the end"});
  bad("absurd header", st_file("{}", 4, absurd), Code::kCorrupt, {"past the end"});
  bad("not json", st_file("{not json", 0), Code::kCorrupt, {"not valid JSON"});
  bad("truncated json", st_file(R"({"t":)" + ok_t, 8), Code::kCorrupt, {"not valid JSON"});
  bad("array header", st_file("[1,2]", 0), Code::kCorrupt, {"not a JSON object"});
  bad("string header", st_file(R"("x")", 0), Code::kCorrupt, {"not a JSON object"});
  bad("entry not object", one("t0", "5", 0), Code::kCorrupt, {"'t0'", "not a JSON"});
  bad("no dtype", one("t1", R"({"shape":[2],"data_offsets":[0,8]})", 8), Code::kCorrupt,
      {"'t1'", "dtype"});
  bad("no shape", one("t2", R"({"dtype":"F32","data_offsets":[0,8]})", 8), Code::kCorrupt,
      {"'t2'", "shape"});
  bad("no offsets", one("t3", R"({"dtype":"F32","shape":[2]})", 8), Code::kCorrupt,
      {"'t3'", "data_offsets"});
  bad("dtype not string", one("t4", R"({"dtype":5,"shape":[2],"data_offsets":[0,8]})", 8),
      Code::kCorrupt, {"'t4'", "dtype"});
  bad("shape not array", one("t5", entry("F32", "\"2\"", "[0,8]"), 8), Code::kCorrupt,
      {"'t5'", "shape"});
  bad("shape dim string", one("t6", entry("F32", "[2,\"x\"]", "[0,8]"), 8), Code::kCorrupt,
      {"'t6'", "shape"});
  bad("negative dim", one("t7", entry("F32", "[-1,2]", "[0,8]"), 8), Code::kCorrupt,
      {"'t7'", "shape"});
  bad("fractional dim", one("t8", entry("F32", "[2.5]", "[0,8]"), 8), Code::kCorrupt,
      {"'t8'", "shape"});
  bad("float dim", one("t9", entry("F32", "[2.0]", "[0,8]"), 8), Code::kCorrupt, {"'t9'", "shape"});
  bad("huge dim", one("ta", entry("F32", "[18446744073709551615]", "[0,8]"), 8), Code::kCorrupt,
      {"'ta'", "shape"});
  bad("overflowing shape", one("tb", entry("F32", "[4294967296,4294967296]", "[0,8]"), 8),
      Code::kCorrupt, {"'tb'", "overflow"});
  bad("offsets not array", one("tc", entry("F32", "[2]", "\"0,8\""), 8), Code::kCorrupt,
      {"'tc'", "data_offsets"});
  bad("one offset", one("td", entry("F32", "[2]", "[0]"), 8), Code::kCorrupt,
      {"'td'", "data_offsets"});
  bad("three offsets", one("te", entry("F32", "[2]", "[0,8,8]"), 8), Code::kCorrupt,
      {"'te'", "data_offsets"});
  bad("negative offset", one("tf", entry("F32", "[0]", "[-4,-4]"), 8), Code::kCorrupt,
      {"'tf'", "data_offsets"});
  bad("begin > end", one("tg", entry("F32", "[0]", "[8,4]"), 8), Code::kCorrupt,
      {"'tg'", "begin > end"});
  bad("end past buffer", one("th", entry("F32", "[4]", "[0,16]"), 12), Code::kCorrupt,
      {"'th'", "past the data buffer"});
  bad("byte count", one("ti", entry("F32", "[2,2]", "[0,12]"), 16), Code::kCorrupt,
      {"'ti'", "shape/byte-count mismatch"});
  bad("byte count scalar", one("tj", entry("I64", "[]", "[0,4]"), 8), Code::kCorrupt,
      {"'tj'", "shape/byte-count mismatch"});
  bad("overlap",
      st_file(R"({"ov1":)" + ok_t + R"(,"ov2":)" + entry("F32", "[2]", "[4,12]") + "}", 12),
      Code::kCorrupt, {"'ov1'", "'ov2'", "overlap"});
  bad("same span",
      st_file(R"({"sa":)" + ok_t + R"(,"sb":)" + entry("I32", "[2]", "[0,8]") + "}", 8),
      Code::kCorrupt, {"'sa'", "'sb'", "overlap"});
  bad("duplicate name", st_file(R"({"dup":)" + ok_t + R"(,"dup":)" + ok_t + "}", 8), Code::kCorrupt,
      {"'dup'", "twice"});
  bad("metadata not object", st_file(R"({"__metadata__":[1]})", 0), Code::kCorrupt,
      {"__metadata__"});
  bad("metadata value not string", st_file(R"({"__metadata__":{"k":1}})", 0), Code::kCorrupt,
      {"__metadata__", "'k'"});
  for (const char* dt : {"F64", "U8", "BOOL", "F8_E5M2", "I8", "U16", "bf16", "bogus"}) {
    bad(fmt::format("dtype {}", dt),
        st_file(R"({"ok":)" + ok_t + R"(,"odd":)" + entry(dt, "[2]", "[8,16]") + "}", 16),
        Code::kInvalidArgument, {"'odd'", dt});
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].label);
    const std::string p = path(fmt::format("bad{}.safetensors", i));
    write_raw(p, cases[i].bytes);
    Result<SafetensorsFile> r = SafetensorsFile::open(p);
    std::vector<std::string> subs = cases[i].subs;
    subs.push_back(p);
    expect_error(r.status(), cases[i].code, subs);
  }
  const std::string missing = path("missing.safetensors");
  expect_error(SafetensorsFile::open(missing).status(), Code::kNotFound, {missing});
}

TEST_F(SafetensorsTest, AcceptsLenientButValidLayouts) {
  // Empty header, a gap between tensors, trailing bytes, unpadded header, extra entry keys,
  // integer-valued offsets: all fine (the reference writer never produces gaps; we read them).
  std::vector<std::string> files = {
      st_file("{}", 0),
      st_file("{}      ", 0),
      st_file(R"({"a":)" + entry("F32", "[1]", "[0,4]") + R"(,"b":)" +
                  entry("BF16", "[3]", "[8,14]") + "}",
              20),
      st_file(R"({"c":{"extra":1,"data_offsets":[0,2],"shape":[2],"dtype":"F8_E4M3"}})", 2),
      st_file(R"({"z":)" + entry("F32", "[0]", "[4,4]") + R"(,"y":)" +
                  entry("I32", "[1]", "[0,4]") + "}",
              4),
  };
  const std::vector<size_t> counts = {0, 0, 2, 1, 2};
  for (size_t i = 0; i < files.size(); ++i) {
    SCOPED_TRACE(i);
    const std::string p = path(fmt::format("ok{}.safetensors", i));
    write_raw(p, files[i]);
    Result<SafetensorsFile> r = SafetensorsFile::open(p);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(r.value().tensors().size(), counts[i]);
  }
}

// ---- malformed checkpoint directories --------------------------------------------------------

class SafetensorsCheckpointTest : public SafetensorsTest {
 protected:
  // Two valid shards: s1 holds a, b; s2 holds c.
  void SetUp() override {
    SafetensorsTest::SetUp();
    m_ = make_model({kSpecs[0], kSpecs[1], kSpecs[2]});
    a_ = m_.views[0].first;
    b_ = m_.views[1].first;
    c_ = m_.views[2].first;
    ASSERT_TRUE(write_safetensors(path("s1.safetensors"), {m_.views[0], m_.views[1]}).ok());
    ASSERT_TRUE(write_safetensors(path("s2.safetensors"), {m_.views[2]}).ok());
  }
  void write_index(const std::string& text) {
    write_raw(path("model.safetensors.index.json"), text);
  }
  std::string index_with(const std::vector<std::pair<std::string, std::string>>& wm) {
    nlohmann::json j;
    j["metadata"] = {{"total_size", 0}};
    j["weight_map"] = nlohmann::json::object();
    for (const auto& [k, v] : wm) j["weight_map"][k] = v;
    return j.dump();
  }
  Status open_status() { return Checkpoint::open(dir_.string()).status(); }

  Model m_;
  std::string a_, b_, c_;
};

TEST_F(SafetensorsCheckpointTest, ValidHandWrittenIndex) {
  write_index(index_with({{a_, "s1.safetensors"}, {b_, "s1.safetensors"}, {c_, "s2.safetensors"}}));
  Result<Checkpoint> r = Checkpoint::open(dir_.string());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r.value().num_tensors(), 3u);
  EXPECT_EQ(r.value().files(),
            (std::vector<std::string>{path("s1.safetensors"), path("s2.safetensors")}));
  EXPECT_EQ(r.value().find(c_)->file, path("s2.safetensors"));
}

TEST_F(SafetensorsCheckpointTest, DirectoryProblems) {
  const std::string missing = path("nope");
  expect_error(Checkpoint::open(missing).status(), Code::kNotFound, {missing});
  const std::string file = path("s1.safetensors");
  expect_error(Checkpoint::open(file).status(), Code::kInvalidArgument, {file});
  // Shards but neither model.safetensors nor an index.
  expect_error(open_status(), Code::kNotFound,
               {dir_.string(), "model.safetensors", "model.safetensors.index.json"});
}

TEST_F(SafetensorsCheckpointTest, BadIndex) {
  const std::string ip = path("model.safetensors.index.json");
  write_index("{\"weight_map\": {");
  expect_error(open_status(), Code::kCorrupt, {ip, "not valid JSON"});
  write_index("");
  expect_error(open_status(), Code::kCorrupt, {ip, "not valid JSON"});
  write_index("[]");
  expect_error(open_status(), Code::kCorrupt, {ip, "not a JSON object"});
  write_index(R"({"metadata": {}})");
  expect_error(open_status(), Code::kCorrupt, {ip, "weight_map"});
  write_index(R"({"weight_map": ["s1.safetensors"]})");
  expect_error(open_status(), Code::kCorrupt, {ip, "weight_map"});
  write_index(fmt::format(R"({{"weight_map": {{"{}": 3}}}})", a_));
  expect_error(open_status(), Code::kCorrupt, {ip, a_});
  write_index(fmt::format(R"({{"weight_map": {{"{}": "s1.safetensors", "{}": "s1.safetensors"}}}})",
                          a_, a_));
  expect_error(open_status(), Code::kCorrupt, {ip, a_, "twice"});
  write_index(index_with({{a_, "../s1.safetensors"}}));
  expect_error(open_status(), Code::kCorrupt, {ip, a_, "../s1.safetensors"});
  write_index(index_with({{a_, "/etc/passwd"}}));
  expect_error(open_status(), Code::kCorrupt, {ip, a_});
}

TEST_F(SafetensorsCheckpointTest, ShardMissing) {
  write_index(index_with({{a_, "s1.safetensors"}, {b_, "s1.safetensors"}, {c_, "s3.safetensors"}}));
  expect_error(open_status(), Code::kNotFound,
               {path("model.safetensors.index.json"), "s3.safetensors"});
}

TEST_F(SafetensorsCheckpointTest, ShardCorrupt) {
  write_raw(path("s2.safetensors"), st_file("{oops", 0));
  write_index(index_with({{a_, "s1.safetensors"}, {b_, "s1.safetensors"}, {c_, "s2.safetensors"}}));
  expect_error(open_status(), Code::kCorrupt, {path("s2.safetensors"), "not valid JSON"});
}

TEST_F(SafetensorsCheckpointTest, ListedButAbsent) {
  write_index(index_with({{a_, "s1.safetensors"},
                          {b_, "s1.safetensors"},
                          {c_, "s2.safetensors"},
                          {"ghost.weight", "s2.safetensors"}}));
  expect_error(open_status(), Code::kCorrupt, {"'ghost.weight'", path("s2.safetensors")});
}

TEST_F(SafetensorsCheckpointTest, MappedToAnotherFile) {
  write_index(index_with({{a_, "s1.safetensors"}, {b_, "s2.safetensors"}, {c_, "s2.safetensors"}}));
  expect_error(open_status(), Code::kCorrupt,
               {"'" + b_ + "'", path("s1.safetensors"), path("s2.safetensors")});
}

TEST_F(SafetensorsCheckpointTest, InShardButNotListed) {
  write_index(index_with({{a_, "s1.safetensors"}, {c_, "s2.safetensors"}}));
  expect_error(open_status(), Code::kCorrupt,
               {path("model.safetensors.index.json"), "'" + b_ + "'", path("s1.safetensors")});
}

TEST_F(SafetensorsCheckpointTest, SameTensorInTwoShards) {
  ASSERT_TRUE(write_safetensors(path("s2.safetensors"), {m_.views[2], m_.views[0]}).ok());
  write_index(index_with({{a_, "s1.safetensors"}, {b_, "s1.safetensors"}, {c_, "s2.safetensors"}}));
  expect_error(open_status(), Code::kCorrupt,
               {"'" + a_ + "'", path("s1.safetensors"), path("s2.safetensors"), "two shards"});
}

TEST_F(SafetensorsCheckpointTest, SingleFileWinsOverIndex) {
  // model.safetensors is preferred, as transformers does; the (broken) index is not read.
  ASSERT_TRUE(write_safetensors(path("model.safetensors"), {m_.views[1]}).ok());
  write_index("not json");
  Result<Checkpoint> r = Checkpoint::open(dir_.string());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r.value().names(), std::vector<std::string>{b_});
}

}  // namespace
}  // namespace afd
