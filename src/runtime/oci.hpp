// One OCI container run by crisd-conmon, the way every crisd container runs:
// the pieces that app containers (runtime/containers.hpp) and a pod's infra
// container (runtime/infra.hpp) share. conmon is placed in
// crisd-conmon-<id>.scope by crisd; the runtime's systemd cgroup driver puts
// the container's processes in crisd-<id>.scope.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace crisd::monitor {
struct Config;
}
namespace crisd::systemd {
class Manager;
}

namespace crisd::runtime {

// The OCI runtime a container was made with.
struct RuntimeRef {
    std::string handler;  // "runc", for messages
    std::string path;     // the binary
    std::string root;     // its --root
};

// The masked and read-only paths every unprivileged container gets unless the
// CRI names its own (as CRI-O's defaults).
const std::vector<std::string>& default_masked_paths();
const std::vector<std::string>& default_readonly_paths();

// The runtime's global arguments: --root <root> --systemd-cgroup.
std::vector<std::string> runtime_global_args(const RuntimeRef& rt);

// Runs `<runtime> <global args> <args>` (kill, delete, update) without
// crisd's NOTIFY_SOCKET and LISTEN_*; returns its output, or throws Error
// (Unknown) with the runtime's own words.
std::string run_runtime(const RuntimeRef& rt, const std::vector<std::string>& args);

// The runtime knows the container: its state directory <root>/<id> exists
// (never made, or deleted already, when not).
bool runtime_knows(const RuntimeRef& rt, const std::string& id);

// A live process whose command line names `id` (the crisd-conmon of that container).
bool monitor_alive(pid_t pid, const std::string& id);

// Where crisd-conmon goes.
struct MonitorScope {
    std::string slice;        // the pod's slice
    std::string description;  // shown by systemctl status
};

// Spawns crisd-conmon for `mc`, calls `spawned(monitor pid)` (to record it
// before anything else exists), places conmon in crisd-conmon-<id>.scope,
// lets it run `runtime create` and waits for the container's pid. Throws the
// runtime's words (monitor::RuntimeError) or an Error with context; what was
// made is undone by destroy().
pid_t launch(systemd::Manager& systemd, const monitor::Config& mc, const MonitorScope& scope,
             const std::function<void(pid_t)>& spawned);

// Undoes launch(): `runtime delete --force`, waits for conmon to leave
// (SIGKILL after 2 s), stops and resets crisd-<id>.scope and
// crisd-conmon-<id>.scope. Idempotent; a container that never existed is fine.
void destroy(systemd::Manager& systemd, const RuntimeRef& rt, const std::string& id, pid_t monitor_pid);

}  // namespace crisd::runtime
