// A pod sandbox as crisd keeps it: its CRI config (without proto types), its
// record on disk, and the pure parts of running one (filters, the files
// written for its containers, sysctl classification, name reservation).
// PodManager (runtime/pods.hpp) does the work.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/caller.hpp"
#include "network/network.hpp"

namespace crisd::runtime {

// The CRI's NamespaceMode, same numbers.
enum class NamespaceMode : int { Pod = 0, Container = 1, Node = 2, Target = 3 };

struct PodMetadata {
    std::string name;
    std::string uid;
    std::string ns;  // Kubernetes namespace
    std::uint32_t attempt = 0;
};

struct DnsConfig {
    std::vector<std::string> servers;
    std::vector<std::string> searches;
    std::vector<std::string> options;
    bool empty() const { return servers.empty() && searches.empty() && options.empty(); }
};

struct PodConfig {
    PodMetadata metadata;
    std::string hostname;
    std::string log_directory;
    DnsConfig dns;
    std::vector<network::PortMapping> port_mappings;
    std::map<std::string, std::string> labels;
    std::map<std::string, std::string> annotations;
    std::string cgroup_parent;  // a systemd slice name ("" = crisd.slice)
    std::map<std::string, std::string> sysctls;
    // The kubelet's defaults: network and IPC per pod, PID per container.
    NamespaceMode network = NamespaceMode::Pod;
    NamespaceMode pid = NamespaceMode::Container;
    NamespaceMode ipc = NamespaceMode::Pod;
    bool privileged = false;
    std::string runtime_handler;  // "" = the default handler

    bool host_network() const { return network == NamespaceMode::Node; }
    bool host_ipc() const { return ipc == NamespaceMode::Node; }
    bool host_pid() const { return pid == NamespaceMode::Node; }
};

// The CRI's PodSandboxState, same numbers.
enum class PodState : int { Ready = 0, NotReady = 1 };

// The infra container of a pod that shares one PID namespace between its
// containers (PID mode POD): crisd-pause as PID 1 of that namespace, run by
// crisd-conmon like any container (runtime/infra.hpp). Its id is the pod's.
struct InfraRecord {
    std::string id;            // "" = the pod has no infra container
    std::string bundle;        // <run_dir>/infra: config.json, rootfs/, sock/
    std::string runtime_path;  // the pod's handler
    std::string runtime_root;
    std::int32_t pid = 0;          // the pause process, PID 1 of the pod's PID namespace
    std::int32_t monitor_pid = 0;  // its crisd-conmon
    std::int64_t started_at = 0;   // ns since the epoch; 0 until it runs

    bool present() const { return !id.empty(); }
    // What the pod's containers join ("" while it does not run).
    std::string pid_namespace() const { return pid > 0 ? "/proc/" + std::to_string(pid) + "/ns/pid" : ""; }
};

// What crisd made for a pod; everything Stop and Remove need to undo it,
// also after a restart. Paths are empty for what the pod does not have.
struct PodRecord {
    std::string id;  // 64 hex
    PodConfig config;
    PodState state = PodState::NotReady;
    bool creating = true;          // true until RunPodSandbox finished
    std::int64_t created_at = 0;   // ns since the epoch
    std::string runtime_handler;   // resolved handler name
    std::string slice;             // systemd slice of the pod's scopes
    bool slice_owned = false;      // crisd created `slice` for this pod: stopped at removal
    std::string run_dir;           // <runroot>/pods/<id>: resolv.conf, hosts, hostname, shm
    std::string ns_dir;            // <runroot>/ns/<id>
    std::string netns;             // <ns_dir>/net, "" for host network
    std::string ipcns;             // <ns_dir>/ipc, "" for host IPC
    std::string utsns;             // <ns_dir>/uts, "" for host network
    std::string shm;               // <run_dir>/shm (a tmpfs), "" for host IPC
    bool network_attached = false; // CNI ADD done, DEL not yet
    std::vector<std::string> ips;  // primary first
    InfraRecord infra;             // PID mode POD only

    std::string resolv_conf() const { return run_dir + "/resolv.conf"; }
    std::string hosts() const { return run_dir + "/hosts"; }
    std::string hostname_file() const { return run_dir + "/hostname"; }
    // The CNI view of the pod (for Network::attach/detach).
    network::PodNetwork pod_network() const;
};

nlohmann::json to_json(const PodRecord& r);
PodRecord record_from_json(const nlohmann::json& j);  // throws Error(DataLoss)

struct PodFilter {
    std::string id;  // a full id or a prefix of one; "" = any
    std::optional<PodState> state;
    std::map<std::string, std::string> label_selector;  // every pair must match
};
bool matches(const PodFilter& f, const PodRecord& r);

// The name the CRI metadata reserves: name_namespace_uid_attempt.
std::string reservation_key(const PodMetadata& m);

// Files written for the pod's containers.
std::string render_resolv_conf(const DnsConfig& dns);
// /etc/hosts: localhost entries, then the hostname on each pod IP.
std::string render_hosts(const std::string& hostname, const std::vector<std::string>& ips);

// Where a sysctl takes effect.
enum class SysctlScope { Network, Ipc };
// The sysctl's name normalised to dots and its scope; InvalidArgument for a
// name that is not namespaced (so it would change the node) or malformed.
std::pair<std::string, SysctlScope> classify_sysctl(const std::string& name);
// /proc/sys/... for a normalised name.
std::string sysctl_path(const std::string& dotted);
// Checks a pod's sysctls against its namespace options (a net.* sysctl needs
// a pod network namespace, an IPC one a pod IPC namespace); InvalidArgument.
void check_sysctls(const PodConfig& config);

// Names reserved by pods (or containers), and creations still in flight for
// them: a second request for a name being created waits for the first and
// gets its result; a name held by a finished one is ALREADY_EXISTS naming the
// holder, unless the first caller gave up before it got its answer (the
// kubelet's retry after its own timeout), which then gets it.
class NameRegistry {
public:
    // `kind` names what is reserved in messages ("pod sandbox", "container").
    explicit NameRegistry(std::string kind) : kind_(std::move(kind)) {}

    // What reserve() says.
    struct Claim {
        bool owner = false;  // the caller creates it under `id`
        std::string id;      // the new id (owner) or the existing one's
    };
    // Reserves `key` for `new_id`, or waits for the creation in flight and
    // returns its id (rethrowing its error), or throws AlreadyExists. The wait
    // ends when `caller` goes away (Cancelled, DeadlineExceeded); the creation
    // in flight goes on undisturbed.
    Claim reserve(const std::string& key, const std::string& new_id, const Caller& caller = {});
    // The creation under `key` ended: with an error (the name is free again)
    // or with the object, which `unclaimed` hands to the next request of the
    // same name (its caller went away).
    void finish(const std::string& key, std::exception_ptr error, bool unclaimed);
    // The owner gave up before it made anything (its caller went away while
    // it waited its turn): the name is free, and a request waiting for it
    // reserves it itself instead of getting an error that was not its own.
    void abandon(const std::string& key);
    void release(const std::string& key);  // removed
    // Restores a name at startup.
    void restore(const std::string& key, const std::string& id);

private:
    struct Flight {
        bool done = false;
        bool abandoned = false;
        int waiters = 0;
        std::string id;
        std::exception_ptr error;
    };
    struct Entry {
        std::string id;
        std::shared_ptr<Flight> flight;  // null once finished
        bool unclaimed = false;
    };
    const std::string kind_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::map<std::string, Entry> entries_;
};

}  // namespace crisd::runtime
