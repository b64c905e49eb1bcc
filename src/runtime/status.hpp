// The runtime's status as the CRI Status (verbose) reports it and
// io.crisd.Daemon1 publishes it: one function, used by both.
#pragma once

#include <mutex>
#include <string>

#include "status/status.hpp"

namespace crisd::network {
class Network;
}

namespace crisd::runtime {

class Handlers;

// What the kubelet tells the runtime with UpdateRuntimeConfig: the node's pod
// CIDR (one, or an IPv4 and an IPv6 one separated by a comma). crisd keeps
// it for the verbose status; the CNI config decides the pod addresses.
class RuntimeConfigState {
public:
    void set_pod_cidr(const std::string& cidr);  // logs a change
    std::string pod_cidr() const;

private:
    mutable std::mutex mu_;
    std::string pod_cidr_;
};

// The cgroup driver the kubelet must use with crisd (the CRI RuntimeConfig,
// same numbers as the CRI's CgroupDriver): always systemd, since every
// container runs with the runtime's --systemd-cgroup in a scope systemd owns.
enum class CgroupDriver : int { Systemd = 0, Cgroupfs = 1 };
CgroupDriver cgroup_driver();

// RuntimeReady and NetworkReady, the runtime handlers, and the verbose info
// ("config": the default handler, each handler's binary, root, problem, and
// the pod CIDR when `config` is given).
status::RuntimeStatus runtime_status(const Handlers& handlers, const network::Network& network,
                                     const RuntimeConfigState* config = nullptr);

}  // namespace crisd::runtime
