#include "runtime/status.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "network/network.hpp"
#include "runtime/handlers.hpp"

namespace crisd::runtime {

void RuntimeConfigState::set_pod_cidr(const std::string& cidr) {
    std::lock_guard lock(mu_);
    if (cidr == pod_cidr_) return;
    spdlog::info("UpdateRuntimeConfig: the node's pod CIDR is now \"{}\" (was \"{}\"); pod addresses "
                 "come from the CNI config",
                 cidr, pod_cidr_);
    pod_cidr_ = cidr;
}

std::string RuntimeConfigState::pod_cidr() const {
    std::lock_guard lock(mu_);
    return pod_cidr_;
}

CgroupDriver cgroup_driver() { return CgroupDriver::Systemd; }

status::RuntimeStatus runtime_status(const Handlers& handlers, const network::Network& network,
                                     const RuntimeConfigState* config) {
    status::RuntimeStatus st;
    st.conditions = {handlers.readiness(), network.readiness()};
    st.runtime_handlers = handlers.names();
    nlohmann::json runtimes = nlohmann::json::object();
    for (const auto& name : handlers.names()) {
        const auto& h = handlers.get(name);
        runtimes[name] = {{"path", h.path}, {"root", h.root}, {"problem", h.problem}};
    }
    nlohmann::json info{{"defaultRuntime", handlers.default_name()}, {"runtimes", runtimes}};
    if (config) info["podCIDR"] = config->pod_cidr();
    st.info["config"] = info.dump();
    return st;
}

}  // namespace crisd::runtime
