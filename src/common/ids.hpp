// Ids and timestamps as the CRI uses them.
#pragma once

#include <cstdint>
#include <string>

namespace crisd {

// Wall-clock time in nanoseconds since the epoch (CRI created_at, started_at, ...).
std::int64_t now_unix_ns();

// A new 64-hex-digit id (32 bytes from getrandom), for pods and containers.
std::string random_id();

}  // namespace crisd
