// Pod sandboxes: the one owner of pod state. Runs a pod (slice, namespaces,
// files for its containers, /dev/shm, CNI), stops and removes it, answers
// status and list from memory, keeps a record per pod on disk
// (<root>/pods/<id>.json, written atomically) and finds every pod again after
// a restart. A lock per pod; no lock is held across slow work that another
// pod waits for.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/events.hpp"
#include "runtime/pod.hpp"

namespace crisd::network {
class Network;
}
namespace crisd::systemd {
class Manager;
}

namespace crisd::runtime {

class Handlers;
class Infra;

struct PodOptions {
    std::string root;     // crisd.root: records in <root>/pods
    std::string runroot;  // crisd.runroot: <runroot>/ns/<id>, <runroot>/pods/<id>
    std::int64_t shm_size = 64 * 1024 * 1024;
    std::string host_etc = "/etc";  // where host-network pods copy hosts/resolv.conf from
    // The infra container of pods with PID mode POD (runtime/infra.hpp).
    std::string conmon_path;  // "" = the installed crisd-conmon
    std::string pause_path;   // "" = the installed crisd-pause
    std::chrono::seconds infra_stop_timeout{10};
};

// A pod lifecycle event, as the kubelet's evented PLEG reads them.
struct PodEvent {
    enum class Type { Created = 0, Started = 1, Stopped = 2, Deleted = 3 };
    Type type;
    std::int64_t at = 0;  // ns since the epoch
    PodRecord pod;        // the pod after the event
};

using PodEvents = EventQueue<PodEvent>;

class PodManager {
public:
    PodManager(PodOptions options, const Handlers& handlers, network::Network& network,
               systemd::Manager& systemd);
    ~PodManager();
    PodManager(const PodManager&) = delete;
    PodManager& operator=(const PodManager&) = delete;

    // Reads the records of an earlier crisd; undoes creations it did not finish;
    // starts watching the infra containers (a pod whose infra container ends
    // is not ready any more).
    void load();

    // RunPodSandbox. A retry of a creation in flight waits for its result as
    // long as its own `caller` waits (then Cancelled / DeadlineExceeded, and
    // the creation goes on). `caller` is asked again once the pod exists:
    // when it stopped waiting, its retry gets this pod instead of a conflict.
    std::string run(const PodConfig& config, const Caller& caller = {});
    // StopPodSandbox: idempotent; an unknown id is stopped already (no error,
    // as the CRI asks of a pod whose resources are reclaimed).
    void stop(const std::string& id);
    // RemovePodSandbox: stops the pod first; an id that is gone is fine.
    void remove(const std::string& id);
    // PodSandboxStatus: NotFound for an unknown id.
    PodRecord status(const std::string& id) const;
    std::vector<PodRecord> list(const PodFilter& filter) const;
    std::size_t count() const;

    // For the containers of a pod (the container service plugs in here).
    // Runs `fn` with the pod's record while holding the pod's operation lock,
    // so that the pod is not stopped or removed meanwhile. NotFound for an
    // unknown or removed pod, FailedPrecondition for a pod that is not ready;
    // Cancelled / DeadlineExceeded when `caller` goes away while another
    // request holds the lock.
    void with_ready_pod(const std::string& id, const std::function<void(const PodRecord&)>& fn,
                        const Caller& caller = {});
    // Called with the pod's operation lock held: `stop` before the pod's
    // network goes (stop its containers), `remove` before its namespaces and
    // files go (remove its containers). An error fails StopPodSandbox /
    // RemovePodSandbox, which the kubelet retries.
    struct Hooks {
        std::function<void(const PodRecord&)> stop;
        std::function<void(const PodRecord&)> remove;
    };
    void set_hooks(Hooks hooks);  // before serving

    // Called after every change of the set of pods or their states.
    void set_on_change(std::function<void()> fn);
    // A stream of pod events (until the returned object is dropped).
    std::shared_ptr<PodEvents> subscribe();

private:
    struct Pod;
    std::shared_ptr<Pod> find(const std::string& id_or_prefix) const;
    void save(const PodRecord& r) const;
    std::string record_path(const std::string& id) const;
    void stop_locked(Pod& pod);
    void teardown(PodRecord& r);  // undoes everything a record says exists
    void emit(PodEvent::Type type, const PodRecord& r);
    // The pod's infra container ended: the pod is not ready (saved, event).
    void check_infra(const std::string& id);
    void watch_infra();

    const PodOptions opts_;
    const Handlers& handlers_;
    network::Network& network_;
    systemd::Manager& systemd_;
    NameRegistry names_{"pod sandbox"};
    Hooks hooks_;

    mutable std::mutex mu_;  // guards pods_ only
    std::map<std::string, std::shared_ptr<Pod>> pods_;

    std::mutex listeners_mu_;  // guards on_change_
    std::function<void()> on_change_;
    EventHub<PodEvent> events_;

    std::unique_ptr<Infra> infra_;
    std::atomic<bool> stopping_{false};
    std::thread watcher_;  // exit files of infra containers
};

}  // namespace crisd::runtime
