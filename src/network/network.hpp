// Pod networking through CNI: the network config in use (watched, so that
// NetworkReady follows the config dir without a restart), ADD/CHECK/DEL for a
// pod's network namespace, and the ADD results cached on disk so that DEL and
// the pod's IPs survive a crisd restart.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/condition.hpp"
#include "common/fd.hpp"
#include "config/config.hpp"

namespace crisd::network {

struct PortMapping {
    std::string protocol = "tcp";  // tcp, udp, sctp
    std::int32_t container_port = 0;
    std::int32_t host_port = 0;
    std::string host_ip;
};

struct PodNetwork {
    std::string pod_id;  // the sandbox id: CNI_CONTAINERID
    std::string name;
    std::string ns;  // Kubernetes namespace
    std::string uid;
    std::string netns;  // path of the pod's network namespace file
    std::vector<PortMapping> port_mappings;
};

class Network {
public:
    // `state_dir` holds the cached results (crisd.root/network).
    Network(const config::Config::Network& cfg, std::string state_dir);
    ~Network();
    Network(const Network&) = delete;
    Network& operator=(const Network&) = delete;

    // NetworkReady: a valid config whose plugins are all present.
    Condition readiness() const;
    // The network in use ("" when none).
    std::string network_name() const;

    // Reads the config dir again (watch() calls it on every change).
    void reload();
    // Watches the config dir with inotify from a thread of its own.
    void watch();

    // CNI ADD of the pod (after the loopback plugin for "lo"); returns the
    // pod's IPs, primary first. A failed ADD is rolled back with DEL and
    // leaves no cached result.
    std::vector<std::string> attach(const PodNetwork& pod);
    // CNI CHECK of an attached pod (no-op for configs older than 0.4.0 or
    // with disableCheck).
    void check(const PodNetwork& pod);
    // CNI DEL with the config and result cached at ADD. Idempotent: a pod that
    // is not attached is a no-op; a missing namespace is tolerated.
    void detach(const PodNetwork& pod);

    // The IPs cached for an attached pod (empty when not attached).
    std::vector<std::string> pod_ips(const std::string& pod_id) const;

private:
    std::string cache_path(const std::string& pod_id) const;
    void watch_loop();

    const config::Config::Network cfg_;
    const std::string state_dir_;

    mutable std::mutex mu_;  // guards loaded_
    struct Loaded;
    std::shared_ptr<const Loaded> loaded_;

    UniqueFd inotify_, stop_;
    std::thread watcher_;
};

}  // namespace crisd::network
