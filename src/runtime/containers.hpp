// Containers: the one owner of container state. Creates a container in a
// ready pod (rootfs, OCI config, crisd-conmon in crisd-conmon-<id>.scope, the
// runtime's `create` run by conmon), starts, stops and removes it, answers
// status and list from memory, keeps a record per container on disk
// (<root>/containers/<id>.json, written atomically) and finds every container
// again after a restart, reading the exit files of those that ended meanwhile.
//
// Cgroups: the OCI runtime's systemd driver (runc/crun --systemd-cgroup,
// cgroupsPath "<slice>:crisd:<id>") puts the container's processes into
// crisd-<id>.scope in the pod's slice, with the limits as unit properties.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <optional>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/caller.hpp"
#include "common/events.hpp"
#include "common/fd.hpp"
#include "runtime/container.hpp"
#include "runtime/oci.hpp"
#include "runtime/pods.hpp"

namespace crisd::image {
class Images;
class Rootfs;
}  // namespace crisd::image
namespace crisd::systemd {
class Manager;
}
namespace crisd::monitor {
struct ExecResult;
}

namespace crisd::runtime {

class Handlers;
class PodManager;

struct ContainerOptions {
    std::string root;     // records in <root>/containers
    std::string runroot;  // bundles in <runroot>/containers/<id>, exit files in <runroot>/exits
    std::string conmon_path;  // "" = the installed one
    // The RuntimeDefault seccomp profile (crisd.runtime.seccomp_profile).
    std::string seccomp_profile = "/usr/share/containers/seccomp.json";
};

// A container lifecycle event (GetContainerEvents); types as the CRI's.
struct ContainerEvent {
    enum class Type { Created = 0, Started = 1, Stopped = 2, Deleted = 3 };
    Type type;
    std::int64_t at = 0;    // ns since the epoch
    ContainerRecord container;  // after the event
};

using ContainerEvents = EventQueue<ContainerEvent>;

class ContainerManager {
public:
    ContainerManager(ContainerOptions options, const Handlers& handlers, PodManager& pods,
                     image::Images& images, image::Rootfs& rootfs, systemd::Manager& systemd);
    ~ContainerManager();
    ContainerManager(const ContainerManager&) = delete;
    ContainerManager& operator=(const ContainerManager&) = delete;

    // Reads the records of an earlier crisd, undoes unfinished creations,
    // reads exit files; plugs the pod hooks in; starts the exit watcher.
    void load();

    // CreateContainer. The name is reserved first: a retry of a creation in
    // flight waits for its result as long as its own `caller` waits (then
    // Cancelled / DeadlineExceeded; the creation goes on), and gets the
    // container once it exists when the first caller had gone. Creations in
    // one pod are serialised by the pod's lock, waited for no longer than
    // `caller` waits.
    std::string create(const std::string& pod_id, const ContainerConfig& config, const Caller& caller = {});
    void start(const std::string& id);
    // SIGTERM (or the image's stop signal), SIGKILL after `timeout`. Idempotent.
    void stop(const std::string& id, std::chrono::seconds timeout);
    // Idempotent: an unknown id is fine.
    void remove(const std::string& id);
    ContainerRecord status(const std::string& id) const;
    std::vector<ContainerRecord> list(const ContainerFilter& filter) const;
    std::size_t count() const;
    // Where crisd-conmon writes the exit files (<runroot>/exits/<id>).
    std::string exit_dir() const { return opts_.runroot + "/exits"; }

    // ExecSync. stdout and stderr together are kept up to
    // kExecSyncOutputCap bytes, first come first kept (as CRI-O's conmon
    // --log-global-size-max does): the reply must fit the kubelet's 16 MiB
    // gRPC receive limit, with room for the rest of the message.
    static constexpr std::int64_t kExecSyncOutputCap = 16 * 1024 * 1024 - 64 * 1024;
    monitor::ExecResult exec_sync(const std::string& id, const std::vector<std::string>& cmd,
                                  std::chrono::milliseconds timeout);
    void reopen_log(const std::string& id);
    // UpdateContainerResources: the limits set on crisd-<id>.scope
    // (SetUnitProperties); zero values are left as they are. CPU values, and
    // on cgroup v1 memory + swap, also through the runtime's `update`;
    // `unified` (v2) through `update --resources`. Hugepage limits stay as
    // created. Checked like CreateContainer's (InvalidArgument).
    void update_resources(const std::string& id, const ContainerResources& resources);

    // The container's writable layer (its overlay upper directory), for the
    // kubelet's ephemeral-storage accounting and eviction. Walking it costs
    // (a hundred containers, a stats call every few seconds each): measured
    // at most once per kWritableLayerTtl per container and cached, never
    // under the container's locks.
    struct WritableLayer {
        std::string mountpoint;  // the file system's (ImageFsInfo's container filesystem)
        std::uint64_t used_bytes = 0;
        std::uint64_t inodes_used = 0;
        std::int64_t timestamp = 0;  // when it was measured
    };
    static constexpr std::chrono::seconds kWritableLayerTtl{5};

    // ContainerStats: read from the cgroup files of crisd-<id>.scope (v1:
    // cpuacct and memory hierarchies; v2: the unified one), and the writable
    // layer. Fields that cannot be read stay unset.
    struct Stats {
        std::int64_t timestamp = 0;
        std::optional<std::uint64_t> cpu_ns;          // cumulative
        std::optional<std::uint64_t> memory_usage;    // bytes
        std::optional<std::uint64_t> working_set;     // usage - inactive_file
        std::optional<std::uint64_t> rss;
        std::optional<std::uint64_t> processes;       // pids.current
        std::optional<WritableLayer> writable_layer;
    };
    Stats stats(const std::string& id) const;
    // The scope's cgroup path ("/a.slice/a-b.slice/crisd-<id>.scope").
    static std::string scope_cgroup(const std::string& slice, const std::string& id);
    // A slice's cgroup path ("a-b.slice" -> "/a.slice/a-b.slice").
    static std::string slice_cgroup(const std::string& slice);
    // Usage read from the cgroup files of one cgroup path (v1 or v2).
    static Stats cgroup_stats(const std::string& cgroup);

    // PodSandboxStats: CPU, memory and processes of the pod's slice when the
    // pod has one of its own (cgroup_parent), else the sum of its containers'
    // scopes; the stats of its running containers; the counters of the
    // interfaces in its network namespace (read from a running container's
    // /proc/<pid>/net/dev; none for host network or with no container running).
    struct Interface {
        std::string name;
        std::uint64_t rx_bytes = 0, rx_errors = 0, tx_bytes = 0, tx_errors = 0;
    };
    struct PodStats {
        PodRecord pod;
        Stats usage;
        std::string default_interface = "eth0";
        std::vector<Interface> interfaces;
        std::vector<std::pair<ContainerRecord, Stats>> containers;
    };
    PodStats pod_stats(const std::string& pod_id) const;
    std::vector<PodStats> list_pod_stats(const PodFilter& filter) const;

    // A stream of container events (until the returned object is dropped).
    std::shared_ptr<ContainerEvents> subscribe();

    // PodSandboxStatus as the kubelet's evented PLEG reads it: when the reply
    // has a timestamp, the kubelet takes the pod's containers from this reply
    // alone (kuberuntime_manager GetPodStatus).
    struct PodStatus {
        // ns since the epoch, taken before the pod and its containers are
        // read: never newer than what the reply shows (the kubelet's cache
        // drops an event older than the status it has).
        std::int64_t timestamp = 0;
        PodRecord pod;
        std::vector<ContainerRecord> containers;  // every container of the pod, as ContainerStatus shows it
    };
    PodStatus pod_status(const std::string& pod_id) const;

    // GetContainerEvents: the pod events and the container events in one
    // stream, in the order they happened, each with what the evented PLEG
    // needs to update its cache without asking again.
    struct RuntimeEvent {
        ContainerEvent::Type type = ContainerEvent::Type::Created;
        std::int64_t at = 0;  // ns since the epoch
        std::string id;       // the container's; the pod's for a pod event
        // The pod as a pod event left it; for a container event the pod as
        // it is now (none once it is removed).
        std::optional<PodRecord> pod;
        // A container event: that container as the event left it, then the
        // pod's other containers as they are now. A pod event: every
        // container of the pod as it is now.
        std::vector<ContainerRecord> containers;
    };
    class RuntimeEvents {
    public:
        // Blocks up to `timeout` for the next event.
        std::optional<RuntimeEvent> next(std::chrono::milliseconds timeout);

    private:
        friend class ContainerManager;
        RuntimeEvents(const ContainerManager& owner, std::shared_ptr<EventQueue<PodEvent>> pods,
                      std::shared_ptr<ContainerEvents> containers)
            : owner_(owner), pods_(std::move(pods)), containers_(std::move(containers)) {}
        const ContainerManager& owner_;
        std::shared_ptr<EventQueue<PodEvent>> pods_;
        std::shared_ptr<ContainerEvents> containers_;
        std::optional<PodEvent> pod_;
        std::optional<ContainerEvent> container_;
    };
    std::unique_ptr<RuntimeEvents> subscribe_all();
    // Called (from the exit watcher's thread, within 100 ms) after changes of
    // the set of containers or their states.
    void set_on_change(std::function<void()> fn);

private:
    struct Container;
    std::shared_ptr<Container> find(const std::string& id_or_prefix) const;
    // The container with exactly this id, or null (the exit watcher's lookups).
    std::shared_ptr<Container> find_exact(const std::string& id) const;
    void save(const ContainerRecord& r) const;
    std::string record_path(const std::string& id) const;
    void create_in_pod(ContainerRecord& rec, const PodRecord& pod);
    PodStats pod_stats_of(const PodRecord& pod) const;
    void teardown(ContainerRecord& r);
    std::optional<WritableLayer> writable_layer(Container& c, const std::string& id) const;
    // The stats of one container as stats() gives them.
    Stats stats_of(const std::shared_ptr<Container>& c) const;
    void stop_locked(Container& c, std::chrono::seconds timeout);
    // In a PID namespace it does not own, a container's first process can end
    // while others it started run on: they are killed (`kill --all`).
    void kill_remaining(const ContainerRecord& r) const;
    void on_exit(const std::string& id);
    // From the exit file; true when it changed r. An exit file that cannot
    // be read ends the container too (255, a message saying so).
    bool apply_exit(ContainerRecord& r);
    static void ended_unknown(ContainerRecord& r, const std::string& message);
    void watch_exits();
    // The runtime's `state` status ("created", "running", "stopped",
    // "paused"), or nullopt when the runtime does not know the container.
    std::optional<std::string> runtime_state(const ContainerRecord& r) const;

    // Each container's crisd-conmon, as a pidfd that the exit watcher's one
    // thread polls next to its inotify fd (no thread per container). A
    // conmon that ends without an exit file (killed, OOM in the pod's slice)
    // ends its container: monitor_gone().
    std::mutex watch_mu_;  // guards monitors_ only
    std::map<std::string, std::shared_ptr<UniqueFd>> monitors_;
    void watch_monitor(const ContainerRecord& r);
    void unwatch_monitor(const std::string& id);
    void on_monitor_exit(const std::string& id);
    // crisd-conmon is gone and no exit file says how the container ended:
    // its processes are killed (so that EXITED is true and no new attempt
    // runs next to them) and it is Exited with 255, reason Error, `message`.
    void monitor_gone(Container& c, const std::string& message);
    static RuntimeRef runtime_of(const ContainerRecord& r);
    std::vector<std::string> runtime_args(const ContainerRecord& r) const;
    std::string run_runtime(const ContainerRecord& r, const std::vector<std::string>& args) const;

    const ContainerOptions opts_;
    const Handlers& handlers_;
    PodManager& pods_;
    image::Images& images_;
    image::Rootfs& rootfs_;
    systemd::Manager& systemd_;
    NameRegistry names_{"container"};
    std::set<std::string> bounding_;
    SeccompProfiles seccomp_;
    const CgroupFeatures cgroups_;
    void note_ignored_limits(const ContainerResources& res) const;

    mutable std::mutex mu_;  // guards containers_ only
    std::map<std::string, std::shared_ptr<Container>> containers_;

    void emit(ContainerEvent::Type type, const ContainerRecord& r);
    EventHub<ContainerEvent> events_;
    std::mutex change_mu_;  // guards on_change_; never taken with a container's lock held
    std::function<void()> on_change_;
    std::atomic<bool> changed_{false};

    // The watcher thread's one inotify instance wakes StopContainer calls
    // waiting for an exit (no inotify instance per stop: a node drain stops
    // a hundred at once, and fs.inotify.max_user_instances is 128).
    std::mutex exit_mu_;  // taken alone or before a container's mu, never after
    std::condition_variable exit_cv_;
    // Waits until `c` is Exited (or its exit file is there), up to
    // `timeout`; stops early when its crisd-conmon is gone, which would
    // never write the exit.
    enum class Waited { Exited, MonitorGone, TimedOut };
    Waited wait_exited(Container& c, std::chrono::milliseconds timeout);

    std::atomic<bool> stopping_{false};
    std::thread watcher_;
};

}  // namespace crisd::runtime
