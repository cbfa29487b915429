#include "core/tensor.h"

#include <fmt/format.h>

#include <cstring>
#include <new>

namespace afd {

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

void Tensor::Free::operator()(std::byte* p) const {
  ::operator delete[](p, std::align_val_t(64));
}

Tensor Tensor::empty(DType t, Shape shape) {
  for (int64_t d : shape) AFD_CHECK(d >= 0, "negative dimension in shape {}", shape_str(shape));
  Tensor out;
  out.dtype_ = t;
  out.shape_ = std::move(shape);
  size_t bytes = static_cast<size_t>(out.nbytes());
  if (bytes > 0) {
    out.buf_.reset(static_cast<std::byte*>(::operator new[](bytes, std::align_val_t(64))));
  }
  return out;
}

Tensor Tensor::zeros(DType t, Shape shape) {
  Tensor out = empty(t, std::move(shape));
  if (out.nbytes() > 0) std::memset(out.raw(), 0, static_cast<size_t>(out.nbytes()));
  return out;
}

Tensor Tensor::from_f32(Shape shape, const std::vector<float>& values) {
  AFD_CHECK(shape_numel(shape) == static_cast<int64_t>(values.size()),
            "from_f32: shape {} holds {} values, got {}", shape_str(shape), shape_numel(shape),
            values.size());
  Tensor out = empty(DType::kF32, std::move(shape));
  if (!values.empty()) std::memcpy(out.raw(), values.data(), values.size() * 4);
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = empty(dtype_, shape_);
  if (nbytes() > 0) std::memcpy(out.raw(), raw(), static_cast<size_t>(nbytes()));
  return out;
}

void Tensor::reshape(Shape s) {
  AFD_CHECK(shape_numel(s) == numel(), "reshape {} -> {} changes the element count",
            shape_str(shape_), shape_str(s));
  shape_ = std::move(s);
}

Tensor to_f32(const TensorView& v) {
  AFD_CHECK(v.is_contiguous(), "to_f32 needs a contiguous view");
  Tensor out = Tensor::empty(DType::kF32, v.shape);
  if (v.numel() > 0) convert_to_f32(v.data, v.dtype, out.data<float>(), v.numel());
  return out;
}

}  // namespace afd
