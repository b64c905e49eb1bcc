#include "runtime/oci.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <string_view>

#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/files.hpp"
#include "monitor/monitor.hpp"
#include "systemd/systemd.hpp"

extern char** environ;

namespace crisd::runtime {

using namespace std::chrono_literals;

const std::vector<std::string>& default_masked_paths() {
    static const std::vector<std::string> paths{
        "/proc/acpi",       "/proc/kcore",       "/proc/keys",    "/proc/latency_stats",
        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
        "/sys/firmware",    "/sys/dev/block",    "/proc/interrupts"};
    return paths;
}

const std::vector<std::string>& default_readonly_paths() {
    static const std::vector<std::string> paths{"/proc/asound", "/proc/bus", "/proc/fs",
                                                "/proc/irq",    "/proc/sys", "/proc/sysrq-trigger"};
    return paths;
}

std::vector<std::string> runtime_global_args(const RuntimeRef& rt) {
    return {"--root", rt.root, "--systemd-cgroup"};
}

std::string run_runtime(const RuntimeRef& rt, const std::vector<std::string>& args) {
    std::vector<std::string> argv{rt.path};
    for (const auto& a : runtime_global_args(rt)) argv.push_back(a);
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw_errno("pipe");
    UniqueFd rd(p[0]), wr(p[1]);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, wr.get(), 1);
    posix_spawn_file_actions_adddup2(&fa, wr.get(), 2);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    std::vector<char*> env;  // without crisd's NOTIFY_SOCKET and LISTEN_*
    for (char** e = environ; *e; ++e) {
        const std::string_view v(*e);
        if (!v.starts_with("NOTIFY_SOCKET=") && !v.starts_with("LISTEN_")) env.push_back(*e);
    }
    env.push_back(nullptr);
    pid_t pid = -1;
    const int err = ::posix_spawn(&pid, argv[0].c_str(), &fa, &attr, cargv.data(), env.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (err != 0) throw_sys("running " + argv[0], err);
    wr = UniqueFd();
    std::string out;
    char buf[4096];
    for (;;) {
        const ssize_t n = ::read(rd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::string cmd;
        for (const auto& a : args) cmd += (cmd.empty() ? "" : " ") + a;
        throw Error(Code::Unknown, rt.handler + " " + cmd + ": " + out);
    }
    return out;
}

bool monitor_alive(pid_t pid, const std::string& id) {
    if (pid <= 0) return false;
    const auto cmdline = read_file_if_exists("/proc/" + std::to_string(pid) + "/cmdline");
    return cmdline && cmdline->find(id) != std::string::npos;
}

pid_t launch(systemd::Manager& systemd, const monitor::Config& mc, const MonitorScope& where,
             const std::function<void(pid_t)>& spawned) {
    auto l = monitor::Launch::spawn(mc);
    if (spawned) spawned(l.monitor_pid());
    systemd::ScopeSpec scope;
    scope.name = "crisd-conmon-" + mc.id + ".scope";
    scope.slice = where.slice;
    scope.description = where.description;
    scope.pids = {l.monitor_pid()};
    scope.delegate = false;
    scope.kill_signal = SIGTERM;  // conmon ignores it; it leaves with its container
    with_context("placing crisd-conmon in " + scope.name, [&] { systemd.start_scope(scope); });
    l.release();
    return l.wait_created(60s);
}

bool runtime_knows(const RuntimeRef& rt, const std::string& id) {
    struct stat st {};
    return ::stat((rt.root + "/" + id).c_str(), &st) == 0;
}

void destroy(systemd::Manager& systemd, const RuntimeRef& rt, const std::string& id, pid_t monitor_pid) {
    // Without the runtime's state there is nothing to delete.
    if (!rt.path.empty() && runtime_knows(rt, id)) {
        try {
            run_runtime(rt, {"delete", "--force", id});
        } catch (const Error& e) {
            spdlog::warn("{}", e.what());
        }
    }
    // conmon leaves with its container; wait a little for it.
    for (int i = 0; i < 100 && monitor_alive(monitor_pid, id); ++i) ::usleep(20000);
    if (monitor_alive(monitor_pid, id)) ::kill(monitor_pid, SIGKILL);
    for (const auto& unit : {"crisd-" + id + ".scope", "crisd-conmon-" + id + ".scope"}) {
        try {
            systemd.stop_unit(unit);
            systemd.reset_failed(unit);
        } catch (const Error& e) {
            if (e.code() != Code::Unavailable) spdlog::warn("stopping {}: {}", unit, e.what());
        }
    }
}

}  // namespace crisd::runtime
