#include "runtime/handlers.hpp"

#include <unistd.h>

#include <sstream>

#include "common/error.hpp"

namespace crisd::runtime {
namespace {

bool executable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }

std::string search(const std::string& name, const std::string& search_path) {
    std::stringstream ss(search_path);
    std::string dir;
    while (std::getline(ss, dir, ':')) {
        if (dir.empty()) continue;
        const std::string candidate = dir + "/" + name;
        if (executable(candidate)) return candidate;
    }
    return "";
}

}  // namespace

Handlers::Handlers(const config::Config::Runtime& cfg, const std::string& search_path)
    : default_(cfg.default_runtime) {
    for (const auto& [name, h] : cfg.runtimes) {
        Handler handler{name, "", h.runtime_root, ""};
        if (!h.runtime_path.empty()) {
            if (executable(h.runtime_path))
                handler.path = h.runtime_path;
            else
                handler.problem = "runtime_path " + h.runtime_path + " is not an executable file";
        } else {
            handler.path = search(name, search_path);
            if (handler.path.empty())
                handler.problem = "no executable named " + name + " in " + search_path;
        }
        handlers_.emplace(name, std::move(handler));
    }
}

const Handler& Handlers::get(const std::string& name) const {
    const std::string& key = name.empty() ? default_ : name;
    auto it = handlers_.find(key);
    if (it == handlers_.end()) {
        std::string known;
        for (const auto& [n, _] : handlers_) known += (known.empty() ? "" : ", ") + n;
        throw Error(Code::NotFound, "no runtime handler \"" + key + "\" is configured (known: " +
                                        known + ")");
    }
    return it->second;
}

std::vector<std::string> Handlers::names() const {
    std::vector<std::string> out;
    for (const auto& [n, _] : handlers_) out.push_back(n);
    return out;
}

Condition Handlers::readiness() const {
    const Handler& h = get(default_);
    if (h.problem.empty()) return {"RuntimeReady", true, "", ""};
    return {"RuntimeReady", false, "RuntimeBinaryMissing",
            "default runtime handler " + h.name + ": " + h.problem};
}

}  // namespace crisd::runtime
