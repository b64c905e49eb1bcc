#include "common/ids.hpp"

#include <sys/random.h>

#include <cerrno>
#include <chrono>

#include "common/error.hpp"

namespace crisd {

std::int64_t now_unix_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string random_id() {
    unsigned char bytes[32];
    size_t got = 0;
    while (got < sizeof bytes) {
        const ssize_t r = ::getrandom(bytes + got, sizeof bytes - got, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            throw_errno("getrandom");
        }
        got += static_cast<size_t>(r);
    }
    static const char* const hex = "0123456789abcdef";
    std::string id;
    id.reserve(64);
    for (unsigned char b : bytes) {
        id += hex[b >> 4];
        id += hex[b & 15];
    }
    return id;
}

}  // namespace crisd
