// Tensor (owning, host memory) and TensorView (non-owning: pointer, dtype, shape, strides).
//
// Invariants: shape.size() == strides.size(); strides are in ELEMENTS, not bytes; a Tensor is
// always contiguous row-major and 64-byte aligned; a default TensorView is empty (data null,
// rank 0, numel 1 by the usual convention, so test `data` before use).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"

namespace afd {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& s);
std::string shape_str(const Shape& s);  // "[2, 3]"
Shape contiguous_strides(const Shape& s);

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kF32;
  Shape shape;
  Shape strides;  // elements

  TensorView() = default;
  TensorView(void* d, DType t, Shape s) : data(d), dtype(t), shape(std::move(s)) {
    strides = contiguous_strides(shape);
  }
  int64_t numel() const { return shape_numel(shape); }
  int64_t nbytes() const { return numel() * dtype_size(dtype); }
  int64_t dim(int i) const { return shape.at(static_cast<size_t>(i < 0 ? i + rank() : i)); }
  int rank() const { return static_cast<int>(shape.size()); }
  bool is_contiguous() const { return strides == contiguous_strides(shape); }
  template <typename T>
  T* as() const { return static_cast<T*>(data); }
};

class Tensor {
 public:
  Tensor() = default;
  // Uninitialised contents.
  static Tensor empty(DType t, Shape shape);
  static Tensor zeros(DType t, Shape shape);
  // f32 tensor holding a copy of `values` (sizes must agree).
  static Tensor from_f32(Shape shape, const std::vector<float>& values);

  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;
  Tensor clone() const;

  bool defined() const { return buf_ != nullptr || numel() == 0; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(static_cast<size_t>(i < 0 ? i + rank() : i)); }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t numel() const { return shape_numel(shape_); }
  int64_t nbytes() const { return numel() * dtype_size(dtype_); }

  void* raw() { return buf_.get(); }
  const void* raw() const { return buf_.get(); }
  template <typename T>
  T* data() { return reinterpret_cast<T*>(buf_.get()); }
  template <typename T>
  const T* data() const { return reinterpret_cast<const T*>(buf_.get()); }

  TensorView view() { return TensorView(buf_.get(), dtype_, shape_); }
  TensorView view() const { return TensorView(const_cast<std::byte*>(buf_.get()), dtype_, shape_); }
  // Same bytes, new shape with the same element count.
  void reshape(Shape s);

 private:
  struct Free {
    void operator()(std::byte* p) const;
  };
  std::unique_ptr<std::byte[], Free> buf_;
  DType dtype_ = DType::kF32;
  Shape shape_;
};

// A contiguous f32 copy of any float tensor (f32, bf16, f16, fp8).
Tensor to_f32(const TensorView& v);

}  // namespace afd
