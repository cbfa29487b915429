// Token sampling and its portable random number generator.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/status.h"
#include "kernels/cpu/ops.h"

namespace afd::cpu {

namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

// splitmix64 is a bijection of its counter, so four consecutive outputs are never all zero:
// every seed (0 included) gives a valid xoshiro state.
Rng::Rng(uint64_t seed) {
  for (uint64_t& s : s_) s = splitmix64(seed);
}

uint64_t Rng::next() {  // xoshiro256** 1.0
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

int32_t sample(const float* logits, int64_t vocab, const SamplingParams& sp, Rng& rng) {
  AFD_CHECK(vocab > 0, "sample: vocab {} must be positive", vocab);
  AFD_CHECK(sp.top_k >= 0, "sample: top_k {} must be >= 0", sp.top_k);
  AFD_CHECK(sp.top_p >= 0.0f && sp.top_p <= 1.0f, "sample: top_p {} must be in [0, 1]", sp.top_p);

  // Greedy consumes no random numbers, so mixing greedy and sampled requests on one Rng
  // leaves the sampled ones reproducible.
  if (!(sp.temperature > 0.0f)) {
    // max_element returns the first of equal maxima: ties go to the lowest id.
    return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  }

  // Candidates in descending logit order, ties to the lower id (a total order, so sort and
  // partial_sort give the same result as a stable sort). The draw walks this order too,
  // which makes the chosen token for a given uniform() independent of the vocab layout.
  const int64_t keep = sp.top_k > 0 ? std::min(sp.top_k, vocab) : vocab;
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + keep, order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });

  // softmax(logits / temperature) over the kept candidates, in double.
  const double inv_t = 1.0 / static_cast<double>(sp.temperature);
  const double mx = static_cast<double>(logits[order[0]]);
  std::vector<double> prob(static_cast<size_t>(keep));
  double sum = 0;
  for (int64_t i = 0; i < keep; ++i) {
    prob[i] = std::exp((static_cast<double>(logits[order[i]]) - mx) * inv_t);
    sum += prob[i];
  }
  for (double& q : prob) q /= sum;

  // Nucleus: the shortest prefix whose mass reaches top_p, never empty.
  int64_t n = keep;
  if (sp.top_p < 1.0f) {
    double cum = 0;
    for (int64_t i = 0; i < keep; ++i) {
      cum += prob[i];
      if (cum >= static_cast<double>(sp.top_p)) {
        n = i + 1;
        break;
      }
    }
  }

  double mass = 0;
  for (int64_t i = 0; i < n; ++i) mass += prob[i];
  const double u = rng.uniform() * mass;  // renormalising = scaling the draw
  double cum = 0;
  for (int64_t i = 0; i < n; ++i) {
    cum += prob[i];
    if (u < cum) return order[i];
  }
  return order[n - 1];  // u rounded up to the total mass
}

}  // namespace afd::cpu
