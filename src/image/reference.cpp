#include "image/reference.hpp"

#include <algorithm>
#include <cctype>

#include "common/error.hpp"
#include "image/digest.hpp"

namespace crisd::image {
namespace {

Error bad(std::string_view text, const std::string& why) {
    return Error(Code::InvalidArgument, "invalid image reference \"" + std::string(text) + "\": " + why);
}

bool alnum_lower(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
bool valid_component(std::string_view c) {
    if (c.empty() || !alnum_lower(c.front()) || !alnum_lower(c.back())) return false;
    for (std::size_t i = 0; i < c.size();) {
        if (alnum_lower(c[i])) {
            ++i;
            continue;
        }
        std::size_t j = i;
        if (c[i] == '.') {
            j = i + 1;
        } else if (c[i] == '_') {
            j = i + 1;
            if (j < c.size() && c[j] == '_') ++j;
        } else if (c[i] == '-') {
            while (j < c.size() && c[j] == '-') ++j;
        } else {
            return false;
        }
        if (j >= c.size() || !alnum_lower(c[j])) return false;
        i = j;
    }
    return true;
}

bool valid_domain(std::string_view d) {
    if (d.empty()) return false;
    std::string_view host = d;
    if (const auto colon = d.rfind(':'); colon != std::string_view::npos && d.front() != '[') {
        host = d.substr(0, colon);
        const auto port = d.substr(colon + 1);
        if (port.empty() || port.size() > 5) return false;
        for (char c : port)
            if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    }
    if (host.empty()) return false;
    for (char c : host)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '[' ||
              c == ']' || c == ':'))
            return false;
    return true;
}

bool valid_tag(std::string_view t) {
    if (t.empty() || t.size() > 128) return false;
    auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
    if (!word(t.front())) return false;
    for (char c : t)
        if (!(word(c) || c == '.' || c == '-')) return false;
    return true;
}

}  // namespace

std::string Reference::str() const {
    std::string s = name();
    if (!tag.empty()) s += ":" + tag;
    if (!digest.empty()) s += "@" + digest;
    return s;
}

Reference parse_reference(std::string_view text) {
    if (text.empty()) throw bad(text, "empty");
    if (text.size() > 4096) throw bad(text.substr(0, 64), "too long");
    Reference ref;
    std::string_view rest = text;
    if (const auto at = rest.find('@'); at != std::string_view::npos) {
        ref.digest = std::string(rest.substr(at + 1));
        rest = rest.substr(0, at);
        if (!is_sha256_digest(ref.digest))
            throw bad(text, "digest must be sha256:<64 lower-case hex digits>");
    }
    // A tag is after the last ':' that comes after the last '/'.
    const auto slash = rest.rfind('/');
    const auto colon = rest.rfind(':');
    if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
        ref.tag = std::string(rest.substr(colon + 1));
        rest = rest.substr(0, colon);
        if (!valid_tag(ref.tag)) throw bad(text, "invalid tag \"" + ref.tag + "\"");
    }
    if (rest.empty()) throw bad(text, "no repository name");
    // The first component is a domain when it has a '.' or ':', is localhost,
    // or has upper-case letters (which a path component may not).
    const auto first_slash = rest.find('/');
    if (first_slash != std::string_view::npos) {
        const auto first = rest.substr(0, first_slash);
        const bool is_domain =
            first.find_first_of(".:") != std::string_view::npos || first == "localhost" ||
            std::any_of(first.begin(), first.end(), [](char c) { return std::isupper(static_cast<unsigned char>(c)); });
        if (is_domain) {
            if (!valid_domain(first)) throw bad(text, "invalid registry \"" + std::string(first) + "\"");
            ref.domain = std::string(first);
            rest = rest.substr(first_slash + 1);
        }
    }
    if (rest.empty()) throw bad(text, "no repository name");
    std::size_t start = 0;
    while (true) {
        const auto end = rest.find('/', start);
        const auto comp = rest.substr(start, end == std::string_view::npos ? rest.npos : end - start);
        if (!valid_component(comp))
            throw bad(text, "invalid repository name component \"" + std::string(comp) +
                                "\" (lower-case letters, digits and separators . _ __ -)");
        if (end == std::string_view::npos) break;
        start = end + 1;
    }
    ref.path = std::string(rest);
    if (ref.name().size() > 255) throw bad(text, "repository name longer than 255 characters");
    return ref;
}

Reference qualify(Reference ref, const std::string& domain) {
    if (ref.domain.empty()) ref.domain = domain;
    if (ref.domain == "index.docker.io" || ref.domain == "registry-1.docker.io") ref.domain = "docker.io";
    if (ref.domain == kDefaultDomain && ref.path.find('/') == std::string::npos)
        ref.path = "library/" + ref.path;
    return ref;
}

Reference with_default_tag(Reference ref) {
    if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
    return ref;
}

Reference normalize_reference(std::string_view text) {
    return with_default_tag(qualify(parse_reference(text), kDefaultDomain));
}

}  // namespace crisd::image
