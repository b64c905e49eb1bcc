#include "image/policy.hpp"

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/files.hpp"

namespace crisd::image {
namespace {

using json = nlohmann::json;

// The scope of transports.docker that applies to `name` ("host/path"), or null.
const json* docker_scope(const json& docker, const std::string& name) {
    if (!docker.is_object()) return nullptr;
    // host/a/b, host/a, host
    std::string n = name;
    while (true) {
        if (const auto it = docker.find(n); it != docker.end()) return &*it;
        const auto slash = n.rfind('/');
        if (slash == std::string::npos) break;
        n = n.substr(0, slash);
    }
    // *.example.com for host example.com's sub-domains, most specific first.
    const std::string host = name.substr(0, name.find('/'));
    for (std::size_t dot = host.find('.'); dot != std::string::npos; dot = host.find('.', dot + 1)) {
        if (const auto it = docker.find("*" + host.substr(dot)); it != docker.end()) return &*it;
    }
    return nullptr;
}

}  // namespace

void check_policy(const std::string& text, const std::string& origin, const Reference& ref) {
    json j;
    try {
        j = json::parse(text);
    } catch (const json::exception& e) {
        throw Error(Code::FailedPrecondition, origin + ": not valid JSON: " + e.what());
    }
    const json* reqs = nullptr;
    std::string scope = "default";
    if (const auto t = j.find("transports"); t != j.end() && t->is_object())
        if (const auto d = t->find("docker"); d != t->end())
            if ((reqs = docker_scope(*d, ref.name()))) scope = "transports.docker scope for " + ref.name();
    if (!reqs) {
        const auto d = j.find("default");
        if (d == j.end()) throw Error(Code::FailedPrecondition, origin + ": no \"default\" policy");
        reqs = &*d;
    }
    if (!reqs->is_array() || reqs->empty())
        throw Error(Code::FailedPrecondition, origin + ": the " + scope + " policy is not a non-empty list");
    for (const auto& r : *reqs) {
        const std::string type = r.is_object() ? r.value("type", "") : "";
        if (type == "insecureAcceptAnything") continue;
        if (type == "reject")
            throw Error(Code::PermissionDenied, origin + " rejects " + ref.str() + " (" + scope + ")");
        throw Error(Code::FailedPrecondition, origin + " requires \"" + type + "\" for " + ref.str() + " (" + scope +
                                                  "); crisd does not verify image signatures");
    }
}

void check_policy_file(const std::string& path, const Reference& ref) {
    const auto text = read_file_if_exists(path);
    if (!text) return;
    check_policy(*text, path, ref);
}

}  // namespace crisd::image
