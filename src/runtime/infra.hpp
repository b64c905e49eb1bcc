// The infra container of a pod whose containers share one PID namespace
// (PID mode POD, Kubernetes' shareProcessNamespace). Other pods have none:
// crisd holds their network, IPC and UTS namespaces without any process
// (runtime/namespaces.hpp). A PID namespace needs a PID 1, so such a pod gets
// crisd-pause as one: run by crisd-conmon in crisd-conmon-<id>.scope, its
// process in crisd-<id>.scope, both in the pod's slice, with the pod's
// runtime handler; it joins the pod's network, IPC and UTS namespaces and
// creates the PID namespace that the pod's containers then join
// (/proc/<pid>/ns/pid). Its id is the pod's id.
//
// It needs no image: its root is <run_dir>/infra/rootfs, an empty directory
// made read-only by the runtime, into which the runtime bind-mounts the pause
// binary read-only (inside the container's mount namespace: no mount on the
// node). No capabilities, no_new_privs, user 65535.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/pod.hpp"

namespace crisd::systemd {
class Manager;
}

namespace crisd::runtime {

struct Handler;

// <libexecdir>/crisd/crisd-pause of this build.
std::string default_pause_path();

// The infra container's user (and group).
inline constexpr std::uint32_t kInfraUser = 65535;

// config.json of the pod's infra container (pod.infra.bundle set). Pure.
nlohmann::json infra_spec(const PodRecord& pod, const std::string& pause_path);

struct InfraOptions {
    std::string exit_dir;     // where conmon writes the exit file (<runroot>/exits)
    std::string conmon_path;  // "" = the installed crisd-conmon
    std::string pause_path;   // "" = the installed crisd-pause
};

class Infra {
public:
    Infra(InfraOptions options, systemd::Manager& systemd);

    const std::string& exit_dir() const { return opts_.exit_dir; }

    // Creates and starts the pause process of `pod` (pod.infra.id and bundle
    // set; the rest is filled in). `save` is called whenever pod.infra gains
    // something that remove() must undo. On failure it throws (the runtime's
    // words in the message) and the caller calls remove().
    void start(PodRecord& pod, const Handler& handler, const std::function<void()>& save);
    // SIGTERM (crisd-pause exits 0), SIGKILL after `timeout`. Idempotent.
    void stop(const PodRecord& pod, std::chrono::seconds timeout);
    // Deletes the container, both scopes, the bundle and the exit file.
    // Idempotent; fine for a half-made one.
    void remove(const PodRecord& pod);
    // The pause process has ended (its exit file is there, or unreadable, or
    // its crisd-conmon is gone). False for a pod without an infra container.
    bool exited(const PodRecord& pod) const;

    // Exit files appeared in exit_dir(): wakes stop() calls waiting for one.
    // PodManager's watcher thread calls it, so that a stop needs no inotify
    // instance of its own (a node drain stops many pods at once, and
    // fs.inotify.max_user_instances is 128).
    void exits_seen();

private:
    // Waits until the infra container of `pod` has exited, up to `timeout`.
    bool wait_exited(const PodRecord& pod, std::chrono::milliseconds timeout);

    const InfraOptions opts_;
    systemd::Manager& systemd_;
    std::mutex exit_mu_;
    std::condition_variable exit_cv_;
    std::uint64_t exits_seen_ = 0;  // guarded by exit_mu_
};

}  // namespace crisd::runtime
