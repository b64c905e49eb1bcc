#include "runtime/infra.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/files.hpp"
#include "common/ids.hpp"
#include "crisd_build.hpp"
#include "monitor/monitor.hpp"
#include "runtime/handlers.hpp"
#include "runtime/oci.hpp"
#include "systemd/systemd.hpp"

namespace crisd::runtime {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kPauseInContainer = "/pause";

RuntimeRef runtime_of(const PodRecord& pod) {
    return {pod.runtime_handler, pod.infra.runtime_path, pod.infra.runtime_root};
}

std::string rootfs_of(const PodRecord& pod) { return pod.infra.bundle + "/rootfs"; }
std::string socket_dir_of(const PodRecord& pod) { return pod.infra.bundle + "/sock"; }

void make_dir(const std::string& path, mode_t mode) {
    if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) throw_errno("creating " + path);
    if (::chmod(path.c_str(), mode) != 0) throw_errno("setting the mode of " + path);
}

}  // namespace

std::string default_pause_path() { return std::string(CRISD_LIBEXECDIR) + "/crisd/crisd-pause"; }

json infra_spec(const PodRecord& pod, const std::string& pause_path) {
    json none = json::array();
    json process = {
        {"terminal", false},
        {"user", {{"uid", kInfraUser}, {"gid", kInfraUser}}},
        {"args", {kPauseInContainer}},
        {"env", {"PATH=/"}},
        {"cwd", "/"},
        {"capabilities",
         {{"bounding", none}, {"effective", none}, {"permitted", none}, {"inheritable", none}, {"ambient", none}}},
        {"noNewPrivileges", true},
    };
    json mounts = json::array({
        {{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}, {"options", {"nosuid", "noexec", "nodev"}}},
        {{"destination", "/dev"}, {"type", "tmpfs"}, {"source", "tmpfs"},
         {"options", {"nosuid", "noexec", "strictatime", "mode=755", "size=64k"}}},
        {{"destination", "/sys"}, {"type", "sysfs"}, {"source", "sysfs"},
         {"options", {"nosuid", "noexec", "nodev", "ro"}}},
        // The one file of its root: the node's pause binary, read-only.
        {{"destination", kPauseInContainer}, {"type", "bind"}, {"source", pause_path},
         {"options", {"bind", "ro", "nosuid", "nodev", "rprivate"}}},
    });
    // The pod's namespaces by path, and a new PID namespace: the point of it.
    json namespaces = json::array({{{"type", "mount"}}, {{"type", "pid"}}});
    if (!pod.netns.empty()) namespaces.push_back({{"type", "network"}, {"path", pod.netns}});
    if (!pod.ipcns.empty()) namespaces.push_back({{"type", "ipc"}, {"path", pod.ipcns}});
    if (!pod.utsns.empty()) namespaces.push_back({{"type", "uts"}, {"path", pod.utsns}});
    json linux_j = {
        {"namespaces", namespaces},
        {"resources", {{"devices", json::array({{{"allow", false}, {"access", "rwm"}}})}}},
        {"cgroupsPath", pod.slice + ":crisd:" + pod.infra.id},
        {"maskedPaths", default_masked_paths()},
        {"readonlyPaths", default_readonly_paths()},
    };
    return {
        {"ociVersion", "1.0.2"},
        {"process", process},
        {"root", {{"path", rootfs_of(pod)}, {"readonly", true}}},
        {"mounts", mounts},
        {"annotations",
         {{"io.kubernetes.cri.container-type", "sandbox"},
          {"io.kubernetes.cri.sandbox-id", pod.id},
          {"io.kubernetes.cri.sandbox-name", pod.config.metadata.name},
          {"io.kubernetes.cri.sandbox-namespace", pod.config.metadata.ns}}},
        {"linux", linux_j},
    };
}

Infra::Infra(InfraOptions options, systemd::Manager& systemd) : opts_(std::move(options)), systemd_(systemd) {
    std::error_code ec;
    fs::create_directories(opts_.exit_dir, ec);
    if (ec) throw sys_error("creating " + opts_.exit_dir, ec.value());
}

void Infra::start(PodRecord& pod, const Handler& handler, const std::function<void()>& save) {
    if (!handler.problem.empty())
        throw Error(Code::FailedPrecondition, "runtime handler " + handler.name + ": " + handler.problem);
    const std::string pause = opts_.pause_path.empty() ? default_pause_path() : opts_.pause_path;
    if (::access(pause.c_str(), X_OK) != 0)
        throw_errno("the pause program " + pause + " is not there (is crisd installed completely?)");
    pod.infra.runtime_path = handler.path;
    pod.infra.runtime_root = handler.root;
    save();  // from here on, remove() knows which runtime to ask

    // The bundle: config.json, conmon's sockets, and a root that holds only
    // the mount points (the runtime makes it read-only).
    make_dir(pod.infra.bundle, 0700);
    make_dir(socket_dir_of(pod), 0700);
    const auto rootfs = rootfs_of(pod);
    make_dir(rootfs, 0755);
    for (const char* d : {"/proc", "/dev", "/sys"}) make_dir(rootfs + d, 0755);
    {
        UniqueFd f(::open((rootfs + kPauseInContainer).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0755));
        if (!f) throw_errno("creating " + rootfs + kPauseInContainer);
    }
    write_file_atomic(pod.infra.bundle + "/config.json", infra_spec(pod, pause).dump(2), 0600, false);

    monitor::Config mc;
    mc.conmon_path = opts_.conmon_path;
    mc.id = pod.infra.id;
    mc.name = "POD";  // the kubelet's and CRI-O's name for a pod's infra container
    mc.pod_name = pod.config.metadata.name;
    mc.pod_namespace = pod.config.metadata.ns;
    mc.bundle = pod.infra.bundle;
    mc.runtime_path = handler.path;
    mc.runtime_args = runtime_global_args(runtime_of(pod));
    mc.exit_dir = opts_.exit_dir;
    mc.socket_dir = socket_dir_of(pod);
    const MonitorScope where{pod.slice, "crisd-conmon of the infra container of pod " + pod.config.metadata.ns +
                                            "/" + pod.config.metadata.name};
    pod.infra.pid = launch(systemd_, mc, where, [&](pid_t monitor) {
        pod.infra.monitor_pid = monitor;
        save();
    });
    save();
    // The runtime named its scope "libcontainer container <id>".
    systemd::Resources described;
    described.description = "crisd infra container of pod " + pod.config.metadata.ns + "/" + pod.config.metadata.name;
    try {  // only a name for operators: never worth failing the pod
        systemd_.set_properties("crisd-" + pod.infra.id + ".scope", described);
    } catch (const Error& e) {
        spdlog::warn("describing crisd-{}.scope: {}", pod.infra.id, e.what());
    }
    monitor::start(socket_dir_of(pod), 60s);
    pod.infra.started_at = now_unix_ns();
    save();
    spdlog::info("pod {} ({}/{}): infra container running, pid {}, with {}", pod.id, pod.config.metadata.ns,
                 pod.config.metadata.name, pod.infra.pid, handler.name);
}

bool Infra::exited(const PodRecord& pod) const {
    if (!pod.infra.present()) return false;
    try {
        if (monitor::read_exit_file(opts_.exit_dir, pod.infra.id)) return true;
    } catch (const Error& e) {
        spdlog::error("pod {}: {}", pod.id, e.what());
        return true;  // conmon writes it when the pause process has ended
    }
    return !monitor_alive(pod.infra.monitor_pid, pod.infra.id);
}

void Infra::exits_seen() {
    {
        std::lock_guard lock(exit_mu_);
        ++exits_seen_;
    }
    exit_cv_.notify_all();
}

bool Infra::wait_exited(const PodRecord& pod, std::chrono::milliseconds timeout) {
    // Woken by exits_seen(); the exit file is read again at least once a
    // second, so a wake-up that never comes (no watcher) costs time only.
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        std::uint64_t seen = 0;
        {
            std::lock_guard lock(exit_mu_);
            seen = exits_seen_;
        }
        if (exited(pod)) return true;
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline) return false;
        std::unique_lock lock(exit_mu_);
        exit_cv_.wait_for(lock, std::min<std::chrono::steady_clock::duration>(deadline - now, 1s),
                          [&] { return exits_seen_ != seen; });
    }
}

void Infra::stop(const PodRecord& pod, std::chrono::seconds timeout) {
    if (!pod.infra.present() || pod.infra.pid <= 0 || exited(pod)) return;
    const auto rt = runtime_of(pod);
    auto signal = [&](int sig) {
        try {
            run_runtime(rt, {"kill", pod.infra.id, std::to_string(sig)});
        } catch (const Error& e) {
            spdlog::debug("{}", e.what());  // it may have exited already
        }
    };
    signal(SIGTERM);
    if (wait_exited(pod, timeout)) return;
    spdlog::info("pod {}: the infra container did not stop within {} s; killing it", pod.id, timeout.count());
    signal(SIGKILL);
    if (!wait_exited(pod, 30s))
        throw Error(Code::DeadlineExceeded, "the infra container of pod " + pod.id + " did not exit after SIGKILL");
}

void Infra::remove(const PodRecord& pod) {
    if (!pod.infra.present()) return;
    destroy(systemd_, runtime_of(pod), pod.infra.id, pod.infra.monitor_pid);
    std::error_code ec;
    if (!pod.infra.bundle.empty()) fs::remove_all(pod.infra.bundle, ec);
    if (ec) throw sys_error("removing " + pod.infra.bundle, ec.value());
    if (::unlink((opts_.exit_dir + "/" + pod.infra.id).c_str()) != 0 && errno != ENOENT)
        throw_errno("removing the exit file of the infra container of pod " + pod.id);
}

}  // namespace crisd::runtime
