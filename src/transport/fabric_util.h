// Helpers shared by the Fabric implementations (not part of the interface).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "transport/fabric.h"

namespace afd::fabric_detail {

template <typename... Args>
Status Unavailable(fmt::format_string<Args...> f, Args&&... a) {
  return Status(Code::kUnavailable, fmt::format(f, std::forward<Args>(a)...));
}

// names[r], or "rank r" for every rank when `names` is empty. A non-empty list must have one
// name per rank (checked by the caller, which owns the error message).
inline std::vector<std::string> fill_names(int world, std::vector<std::string> names) {
  if (names.empty()) {
    for (int r = 0; r < world; ++r) names.push_back("rank " + std::to_string(r));
  }
  return names;
}

// Shared argument checks for send()/recv(): the peer is a rank and the tag fits in 48 bits.
inline Status check_peer_tag(const char* op, int peer, int world, uint64_t tag) {
  if (peer < 0 || peer >= world)
    return InvalidArgument("fabric {}: peer {} is not a rank (world {})", op, peer, world);
  if (tag >> kFabricTagBits)
    return InvalidArgument("fabric {}: tag {:#x} does not fit in {} bits", op, tag, kFabricTagBits);
  return Status::OK();
}

inline Status timeout_error(const std::string& peer, uint64_t tag,
                            std::chrono::milliseconds timeout) {
  return Unavailable("no message from {} (tag {:#x}) within {} ms", peer, tag, timeout.count());
}

inline Status dead_error(const std::string& peer, const std::string& reason) {
  return Unavailable("{} is dead: {}", peer, reason);
}

}  // namespace afd::fabric_detail
