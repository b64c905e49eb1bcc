// Content digests ("sha256:<64 hex>"): parsing, and a streaming SHA-256.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace crisd::image {

// True for "sha256:" followed by 64 lower-case hex digits (the only algorithm
// crisd accepts; sha512 digests are refused as unsupported).
bool is_sha256_digest(std::string_view digest);

// The 64 hex digits of a sha256 digest; throws InvalidArgument otherwise.
std::string digest_hex(std::string_view digest);

class Sha256 {
public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;

    void update(const void* data, std::size_t size);
    // "sha256:<hex>"; the hasher cannot be used afterwards.
    std::string digest();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

std::string sha256_digest(std::string_view data);

// Throws DataLoss naming `what` when the digest of `data` is not `expected`.
void verify_digest(std::string_view data, const std::string& expected, const std::string& what);

}  // namespace crisd::image
