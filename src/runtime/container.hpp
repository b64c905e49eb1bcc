// A container as crisd keeps it: its CRI config (without proto types), its
// record on disk, and the pure part of creating one: the OCI config.json the
// runtime gets. ContainerManager (runtime/containers.hpp) does the work.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/pod.hpp"
#include "runtime/seccomp.hpp"

namespace crisd::runtime {

struct ContainerMetadata {
    std::string name;
    std::uint32_t attempt = 0;
};

// The CRI's MountPropagation, same numbers.
enum class Propagation : int { Private = 0, HostToContainer = 1, Bidirectional = 2 };

struct Mount {
    std::string container_path;
    std::string host_path;
    bool readonly = false;
    Propagation propagation = Propagation::Private;
};

struct Device {
    std::string container_path;
    std::string host_path;
    std::string permissions;  // "rwm"
};

struct ContainerResources {
    std::int64_t cpu_period = 0;
    std::int64_t cpu_quota = 0;
    std::int64_t cpu_shares = 0;
    std::int64_t memory_limit = 0;
    std::int64_t oom_score_adj = 0;
    std::string cpuset_cpus;
    std::string cpuset_mems;
    // memory + swap (OCI memory.swap, memory.memsw on cgroup v1): 0 = not
    // set, -1 = unlimited. Applied only where the node accounts swap.
    std::int64_t memory_swap_limit = 0;
    std::map<std::string, std::uint64_t> hugepage_limits;  // page size ("2MB") -> bytes
    std::map<std::string, std::string> unified;            // cgroup v2 files -> values
};

struct ContainerConfig {
    ContainerMetadata metadata;
    std::string image;  // the CRI's image spec
    std::vector<std::string> command;
    std::vector<std::string> args;
    std::string working_dir;
    std::vector<std::pair<std::string, std::string>> envs;
    std::vector<Mount> mounts;
    std::vector<Device> devices;
    std::map<std::string, std::string> labels;
    std::map<std::string, std::string> annotations;
    std::string log_path;  // relative to the pod's log directory
    bool stdin = false;
    bool stdin_once = false;
    bool tty = false;
    ContainerResources resources;
    // security context
    bool privileged = false;
    bool readonly_rootfs = false;
    bool no_new_privs = false;
    std::optional<std::int64_t> run_as_user;
    std::string run_as_username;
    std::optional<std::int64_t> run_as_group;
    std::vector<std::int64_t> supplemental_groups;
    std::vector<std::string> add_capabilities;   // "NET_ADMIN" or "CAP_NET_ADMIN" or "ALL"
    std::vector<std::string> drop_capabilities;
    std::vector<std::string> masked_paths;       // empty: the default set
    std::vector<std::string> readonly_paths;     // empty: the default set
    SeccompRequest seccomp;                      // none for a privileged container
    // PID namespace: CONTAINER (its own), POD (the pod's infra container's),
    // NODE, or TARGET (that of the container `pid_target`, in the same pod).
    NamespaceMode pid = NamespaceMode::Container;
    std::string pid_target;
    std::string stop_signal;  // the CRI's ("SIGTERM"); "" = the image's, else SIGTERM
};

// The CRI's ContainerState, same numbers.
enum class ContainerState : int { Created = 0, Running = 1, Exited = 2, Unknown = 3 };

struct ContainerRecord {
    std::string id;  // 64 hex
    std::string pod_id;
    ContainerConfig config;
    ContainerState state = ContainerState::Created;
    bool creating = true;
    std::string image_id;   // "sha256:..."
    std::string image_ref;  // a repo digest when known, else the image id
    std::string runtime_handler;
    std::string runtime_path;
    std::string runtime_root;
    std::string slice;
    std::string bundle;      // <runroot>/containers/<id>
    std::string rootfs;      // the mounted root
    std::string log_path;    // full path, "" for none
    std::int32_t pid = 0;
    std::int32_t monitor_pid = 0;
    int stop_signal = 15;
    std::int64_t created_at = 0;
    std::int64_t started_at = 0;
    std::int64_t finished_at = 0;
    int exit_code = 0;
    bool oom_killed = false;
    std::string reason;
    std::string message;
    // pod metadata, for names and filters
    std::string pod_name;
    std::string pod_namespace;
    std::string pod_uid;

    std::string scope() const { return "crisd-" + id + ".scope"; }
    std::string monitor_scope() const { return "crisd-conmon-" + id + ".scope"; }
    std::string socket_dir() const { return bundle + "/sock"; }
    // Without a PID namespace of its own, the end of its first process does
    // not end the others: signals go to every process of the container.
    bool shares_pid_namespace() const { return config.pid != NamespaceMode::Container; }
};

nlohmann::json to_json(const ContainerRecord& r);
ContainerRecord container_from_json(const nlohmann::json& j);  // throws Error(DataLoss)

struct ContainerFilter {
    std::string id;  // a full id or a prefix
    std::optional<ContainerState> state;
    std::string pod_id;  // full or prefix
    std::map<std::string, std::string> label_selector;
};
bool matches(const ContainerFilter& f, const ContainerRecord& r);

// The image's config section as the OCI config needs it.
struct ImageConfig {
    std::vector<std::string> entrypoint;
    std::vector<std::string> cmd;
    std::vector<std::string> env;
    std::string working_dir;
    std::string user;
    std::string stop_signal;
};
ImageConfig parse_image_config(const std::string& config_json);

// Kubernetes' rule: a CRI command replaces the image's ENTRYPOINT and drops its
// CMD; CRI args replace the CMD. InvalidArgument when nothing is left to run.
std::vector<std::string> process_args(const ContainerConfig& c, const ImageConfig& image);

// A signal by name ("SIGTERM", "TERM", "15"); InvalidArgument otherwise.
int signal_number(const std::string& name);

// Resolves user and groups: CRI run_as_user / run_as_username / run_as_group,
// else the image's USER (uid[:gid] or name[:group]), names looked up in
// <rootfs>/etc/passwd and /etc/group. NotFound for a name that is not there.
struct ResolvedUser {
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
    std::vector<std::uint32_t> additional_gids;
    std::string home = "/";
};
ResolvedUser resolve_user(const ContainerConfig& c, const ImageConfig& image, const std::string& rootfs);

// The capabilities a container gets: CRI-O's default set, then add (ALL: the
// bounding set) and drop (ALL: none), limited to `bounding`.
std::vector<std::string> capabilities(const ContainerConfig& c, const std::set<std::string>& bounding);
// This process's bounding set ("CAP_CHOWN", ...), from /proc/self/status.
std::set<std::string> bounding_set();

// What the node's cgroups can do; read once by ContainerManager.
struct CgroupFeatures {
    bool unified = false;  // cgroup v2 only (not a hybrid layout)
    bool swap = false;     // swap accounting: memory.memsw (v1), memory.swap.max (v2)
    bool hugetlb = false;  // the hugetlb controller
    std::set<std::string> hugepage_sizes;  // "2MB", "1GB": the node's hugepage sizes
};
CgroupFeatures cgroup_features(const std::string& cgroup_root = "/sys/fs/cgroup",
                               const std::string& hugepages_dir = "/sys/kernel/mm/hugepages");

// Checks limits the node cannot take: `unified` on a node that is not
// cgroup v2 only, a swap limit below the memory limit, a hugepage size that
// is malformed or (with hugetlb) not the node's. InvalidArgument.
void check_resources(const ContainerResources& r, const CgroupFeatures& node);
// The container's PID namespace in its OCI config: nullopt = the node's (no
// entry), "" = a new one, else the path of the one it joins: the infra
// container's for POD, the target container's (`target`, looked up by the
// caller) for TARGET. InvalidArgument / FailedPrecondition / NotFound when the
// namespace to join is not there.
std::optional<std::string> pid_namespace(const ContainerConfig& c, const PodRecord& pod,
                                         const ContainerRecord* target);

struct SpecInputs {
    const ContainerRecord* record = nullptr;
    const PodRecord* pod = nullptr;
    const ContainerRecord* pid_target = nullptr;  // for PID mode TARGET
    ImageConfig image;
    ResolvedUser user;
    std::vector<std::string> args;
    std::vector<std::string> caps;
    std::optional<nlohmann::json> seccomp;  // linux.seccomp; none: unconfined
    CgroupFeatures cgroups;
};
// config.json for the runtime. Mount sources are checked here (NotFound).
nlohmann::json oci_spec(const SpecInputs& in);

}  // namespace crisd::runtime
