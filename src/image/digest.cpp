#include "image/digest.hpp"

#include <openssl/evp.h>

#include "common/error.hpp"

namespace crisd::image {

bool is_sha256_digest(std::string_view d) {
    if (d.size() != 71 || !d.starts_with("sha256:")) return false;
    for (char c : d.substr(7))
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

std::string digest_hex(std::string_view d) {
    if (!is_sha256_digest(d))
        throw Error(Code::InvalidArgument,
                    "\"" + std::string(d) + "\" is not a sha256 digest (sha256:<64 hex digits>)");
    return std::string(d.substr(7));
}

struct Sha256::Impl {
    EVP_MD_CTX* ctx = nullptr;
    ~Impl() { EVP_MD_CTX_free(ctx); }
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
    impl_->ctx = EVP_MD_CTX_new();
    if (!impl_->ctx || EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) != 1)
        throw Error(Code::Internal, "initialising SHA-256 failed");
}

Sha256::~Sha256() = default;

void Sha256::update(const void* data, std::size_t size) {
    if (size && EVP_DigestUpdate(impl_->ctx, data, size) != 1)
        throw Error(Code::Internal, "SHA-256 update failed");
}

std::string Sha256::digest() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(impl_->ctx, md, &len) != 1)
        throw Error(Code::Internal, "SHA-256 final failed");
    static const char* hex = "0123456789abcdef";
    std::string out = "sha256:";
    for (unsigned i = 0; i < len; ++i) {
        out += hex[md[i] >> 4];
        out += hex[md[i] & 15];
    }
    return out;
}

std::string sha256_digest(std::string_view data) {
    Sha256 h;
    h.update(data.data(), data.size());
    return h.digest();
}

void verify_digest(std::string_view data, const std::string& expected, const std::string& what) {
    const std::string got = sha256_digest(data);
    if (got != expected)
        throw Error(Code::DataLoss, what + ": digest mismatch: expected " + expected + ", got " + got);
}

}  // namespace crisd::image
