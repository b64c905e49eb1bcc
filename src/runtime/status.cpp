#include "runtime/status.hpp"

#include <nlohmann/json.hpp>

#include "network/network.hpp"
#include "runtime/handlers.hpp"

namespace crisd::runtime {

status::RuntimeStatus runtime_status(const Handlers& handlers, const network::Network& network) {
    status::RuntimeStatus st;
    st.conditions = {handlers.readiness(), network.readiness()};
    st.runtime_handlers = handlers.names();
    nlohmann::json runtimes = nlohmann::json::object();
    for (const auto& name : handlers.names()) {
        const auto& h = handlers.get(name);
        runtimes[name] = {{"path", h.path}, {"root", h.root}, {"problem", h.problem}};
    }
    st.info["config"] =
        nlohmann::json{{"defaultRuntime", handlers.default_name()}, {"runtimes", runtimes}}.dump();
    return st;
}

}  // namespace crisd::runtime
