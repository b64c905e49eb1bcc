// OCI runtime handlers (runc, crun, ...) from [crisd.runtime.runtimes.NAME]:
// which binary each one runs, and whether it is usable.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/condition.hpp"
#include "config/config.hpp"

namespace crisd::runtime {

struct Handler {
    std::string name;
    std::string path;  // resolved binary; empty when not found
    std::string root;
    std::string problem;  // why the handler cannot be used, empty when it can
};

class Handlers {
public:
    // `search_path` is a PATH-style list used for handlers without runtime_path.
    Handlers(const config::Config::Runtime& cfg, const std::string& search_path);

    // The handler for a CRI runtime_handler ("" is the default). Throws
    // NotFound for a name that has no table in the config.
    const Handler& get(const std::string& name) const;
    const std::string& default_name() const noexcept { return default_; }
    std::vector<std::string> names() const;

    // RuntimeReady: the default handler's binary exists and is executable.
    Condition readiness() const;

private:
    std::map<std::string, Handler> handlers_;
    std::string default_;
};

}  // namespace crisd::runtime
