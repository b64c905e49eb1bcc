#include "image/auth.hpp"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/error.hpp"

namespace crisd::image {
namespace {

const char* kB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_decode(const std::string& in) {
    std::string out;
    int val = 0, bits = -8;
    for (unsigned char c : in) {
        if (c == '=' || c == '\n' || c == '\r' || c == ' ') continue;
        const char* p = std::strchr(kB64, c);
        if (!p || c == 0) throw Error(Code::InvalidArgument, "auth is not valid base64");
        val = (val << 6) + static_cast<int>(p - kB64);
        bits += 6;
        if (bits >= 0) {
            out += static_cast<char>((val >> bits) & 0xff);
            bits -= 8;
        }
    }
    return out;
}

// "https://index.docker.io/v1/" -> "docker.io"; "http://reg:5000/x" -> "reg:5000/x"
std::string normalize_key(std::string key) {
    if (const auto p = key.find("://"); p != std::string::npos) key = key.substr(p + 3);
    while (key.ends_with("/")) key.pop_back();
    if (key.ends_with("/v1") || key.ends_with("/v2")) key = key.substr(0, key.size() - 3);
    if (key == "index.docker.io" || key == "registry-1.docker.io") key = "docker.io";
    return key;
}

}  // namespace

std::string base64_encode(const std::string& in) {
    std::string out;
    int val = 0, bits = -6;
    for (unsigned char c : in) {
        val = (val << 8) + c;
        bits += 8;
        while (bits >= 0) {
            out += kB64[(val >> bits) & 0x3f];
            bits -= 6;
        }
    }
    if (bits > -6) out += kB64[((val << 8) >> (bits + 8)) & 0x3f];
    while (out.size() % 4) out += '=';
    return out;
}

Credentials decode_auth(const std::string& b64) {
    const std::string plain = base64_decode(b64);
    const auto colon = plain.find(':');
    if (colon == std::string::npos) throw Error(Code::InvalidArgument, "auth is not base64 of user:password");
    return Credentials{plain.substr(0, colon), plain.substr(colon + 1), "", ""};
}

std::vector<std::string> auth_files(const std::string& global) {
    if (!global.empty()) return {global};
    std::vector<std::string> files;
    if (const char* f = std::getenv("REGISTRY_AUTH_FILE"); f && *f) files.push_back(f);
    if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x && *x)
        files.push_back(std::string(x) + "/containers/auth.json");
    files.push_back("/run/containers/" + std::to_string(::getuid()) + "/auth.json");
    if (const char* h = std::getenv("HOME"); h && *h) files.push_back(std::string(h) + "/.docker/config.json");
    return files;
}

std::optional<Credentials> lookup_auth(const std::string& text, const std::string& name) {
    const auto j = nlohmann::json::parse(text);
    const auto auths = j.find("auths");
    if (auths == j.end() || !auths->is_object()) return std::nullopt;
    const nlohmann::json* best = nullptr;
    std::size_t best_len = 0;
    for (auto it = auths->begin(); it != auths->end(); ++it) {
        const std::string key = normalize_key(it.key());
        const bool match = name == key || (name.starts_with(key) && name.size() > key.size() &&
                                           name[key.size()] == '/');
        if (match && (!best || key.size() > best_len)) {
            best = &it.value();
            best_len = key.size();
        }
    }
    if (!best || !best->is_object()) return std::nullopt;
    Credentials c;
    if (const auto a = best->find("auth"); a != best->end() && a->is_string() && !a->get<std::string>().empty())
        c = decode_auth(a->get<std::string>());
    if (const auto t = best->find("identitytoken"); t != best->end() && t->is_string())
        c.identity_token = t->get<std::string>();
    if (c.empty()) return std::nullopt;
    return c;
}

std::optional<Credentials> find_credentials(const std::vector<std::string>& files, const std::string& name) {
    for (const auto& f : files) {
        std::ifstream in(f);
        if (!in) continue;
        std::ostringstream ss;
        ss << in.rdbuf();
        try {
            if (auto c = lookup_auth(ss.str(), name)) {
                spdlog::debug("credentials for {} from {}", name, f);
                return c;
            }
        } catch (const std::exception& e) {
            spdlog::warn("ignoring auth file {}: {}", f, e.what());
        }
    }
    return std::nullopt;
}

}  // namespace crisd::image
