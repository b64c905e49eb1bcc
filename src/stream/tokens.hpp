// Single-use tokens for streaming requests, as the kubelet's streaming
// request cache: random, URL-safe, valid for a fixed time, at most `max`
// outstanding. Pure logic (the clock is injectable for tests).
#pragma once

#include <sys/random.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "common/error.hpp"

namespace crisd::stream {

// 16 random bytes from getrandom(), base64url without padding (22 characters).
inline std::string random_token() {
    unsigned char raw[16];
    std::size_t got = 0;
    while (got < sizeof raw) {
        const auto n = ::getrandom(raw + got, sizeof raw - got, 0);
        if (n < 0) throw_errno("getrandom");
        got += static_cast<std::size_t>(n);
    }
    static const char* const kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    unsigned bits = 0, acc = 0;
    for (unsigned char c : raw) {
        acc = (acc << 8) | c;
        bits += 8;
        while (bits >= 6) {
            out += kAlphabet[(acc >> (bits - 6)) & 63];
            bits -= 6;
        }
    }
    if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 63];
    return out;
}

template <typename T>
class TokenCache {
public:
    using Clock = std::chrono::steady_clock;

    explicit TokenCache(std::chrono::milliseconds ttl, std::size_t max = 1000,
                        std::function<Clock::time_point()> now = &Clock::now,
                        std::function<std::string()> make_token = &random_token)
        : ttl_(ttl), max_(max), now_(std::move(now)), make_token_(std::move(make_token)) {}

    // A new token for `value`. ResourceExhausted when `max` unexpired tokens
    // are outstanding.
    std::string insert(T value) {
        std::lock_guard lock(mu_);
        const auto now = now_();
        expire(now);
        if (entries_.size() >= max_)
            throw Error(Code::ResourceExhausted,
                        "too many streaming requests in flight (" + std::to_string(max_) + ")");
        std::string token;
        do token = make_token_();
        while (entries_.count(token));
        entries_.emplace(token, Entry{std::move(value), now + ttl_});
        return token;
    }

    // The value of an unexpired token, removed: a token works once.
    std::optional<T> consume(const std::string& token) {
        std::lock_guard lock(mu_);
        const auto now = now_();
        auto it = entries_.find(token);
        if (it == entries_.end()) return std::nullopt;
        std::optional<T> out;
        if (it->second.expires > now) out = std::move(it->second.value);
        entries_.erase(it);
        return out;
    }

    std::size_t size() {
        std::lock_guard lock(mu_);
        expire(now_());
        return entries_.size();
    }

private:
    struct Entry {
        T value;
        Clock::time_point expires;
    };
    void expire(Clock::time_point now) {
        for (auto it = entries_.begin(); it != entries_.end();)
            it = it->second.expires <= now ? entries_.erase(it) : std::next(it);
    }

    const std::chrono::milliseconds ttl_;
    const std::size_t max_;
    std::function<Clock::time_point()> now_;
    std::function<std::string()> make_token_;
    std::mutex mu_;
    std::map<std::string, Entry> entries_;
};

}  // namespace crisd::stream
