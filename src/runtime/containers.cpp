#include "runtime/containers.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <sstream>

#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "common/ids.hpp"
#include "common/fd.hpp"
#include "common/files.hpp"
#include "image/image.hpp"
#include "image/rootfs.hpp"
#include "log/log.hpp"
#include "monitor/monitor.hpp"
#include "runtime/handlers.hpp"
#include "runtime/oci.hpp"
#include "runtime/pods.hpp"
#include "systemd/systemd.hpp"

namespace crisd::runtime {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

std::string reservation_key(const ContainerRecord& r) {
    return r.config.metadata.name + "_" + r.pod_name + "_" + r.pod_namespace + "_" + r.pod_uid + "_" +
           std::to_string(r.config.metadata.attempt);
}

void make_dirs(const std::string& path, fs::perms mode = fs::perms::unknown) {
    std::error_code ec;
    fs::create_directories(path, ec);
    if (ec) throw sys_error("creating " + path, ec.value());
    if (mode != fs::perms::unknown) fs::permissions(path, mode, ec);
}

// The CRI limits as properties of crisd-<id>.scope (zero: not set).
systemd::Resources scope_resources(const ContainerResources& res, const CgroupFeatures& node) {
    systemd::Resources sd;
    // MemorySwapMax is swap alone (cgroup v2); the CRI's limit is memory + swap.
    if (node.unified && node.swap) {
        if (res.memory_swap_limit == -1)
            sd.memory_swap_max = systemd::kUnlimited;
        else if (res.memory_swap_limit > 0 && res.memory_limit > 0)
            sd.memory_swap_max = static_cast<std::uint64_t>(res.memory_swap_limit - res.memory_limit);
    }
    if (res.cpu_shares > 0) sd.cpu_shares = static_cast<std::uint64_t>(res.cpu_shares);
    if (res.cpu_quota > 0) sd.cpu_quota_us = static_cast<std::uint64_t>(res.cpu_quota);
    if (res.cpu_period > 0) sd.cpu_period_us = static_cast<std::uint64_t>(res.cpu_period);
    if (res.memory_limit > 0) sd.memory_max = static_cast<std::uint64_t>(res.memory_limit);
    if (!res.cpuset_cpus.empty()) sd.cpuset_cpus = res.cpuset_cpus;
    if (!res.cpuset_mems.empty()) sd.cpuset_mems = res.cpuset_mems;
    return sd;
}

}  // namespace

struct ContainerManager::Container {
    std::mutex op;          // one operation at a time
    mutable std::mutex mu;  // guards rec and starting
    ContainerRecord rec;
    bool starting = false;  // an exit seen meanwhile is applied by start(), after Started
    // The cached writable layer usage; held while it is measured (so a
    // second stats call waits for that walk instead of making its own),
    // never together with mu or op.
    std::mutex layer_mu;
    std::optional<WritableLayer> layer;
    std::chrono::steady_clock::time_point layer_at;
    bool layer_truncated_logged = false;  // the bounded walk stopped short once (logged once)
    ContainerRecord get() const {
        std::lock_guard l(mu);
        return rec;
    }
};

ContainerManager::ContainerManager(ContainerOptions options, const Handlers& handlers, PodManager& pods,
                                   image::Images& images, image::Rootfs& rootfs, systemd::Manager& systemd)
    : opts_(std::move(options)),
      handlers_(handlers),
      pods_(pods),
      images_(images),
      rootfs_(rootfs),
      systemd_(systemd),
      bounding_(bounding_set()),
      seccomp_(opts_.seccomp_profile),
      cgroups_(cgroup_features()) {
    make_dirs(opts_.root + "/containers");
    make_dirs(opts_.runroot + "/containers");
    make_dirs(exit_dir());
}

ContainerManager::~ContainerManager() {
    stopping_ = true;
    if (watcher_.joinable()) watcher_.join();
}

std::string ContainerManager::record_path(const std::string& id) const {
    return opts_.root + "/containers/" + id + ".json";
}

void ContainerManager::save(const ContainerRecord& r) const {
    with_context("saving the record of container " + r.id,
                 [&] { write_file_atomic(record_path(r.id), to_json(r).dump(-1, ' ', false, json::error_handler_t::replace), 0600, true); });
}

std::shared_ptr<ContainerManager::Container> ContainerManager::find(const std::string& id) const {
    if (id.empty()) throw Error(Code::InvalidArgument, "container id is empty");
    std::lock_guard lock(mu_);
    auto it = containers_.find(id);
    if (it != containers_.end()) return it->second;
    std::shared_ptr<Container> found;
    for (auto i = containers_.lower_bound(id); i != containers_.end() && i->first.rfind(id, 0) == 0; ++i) {
        if (found) throw Error(Code::InvalidArgument, "container id prefix " + id + " is ambiguous");
        found = i->second;
    }
    if (!found) throw Error(Code::NotFound, "container " + id + " not found");
    return found;
}

std::shared_ptr<ContainerManager::Container> ContainerManager::find_exact(const std::string& id) const {
    std::lock_guard lock(mu_);
    const auto it = containers_.find(id);
    return it == containers_.end() ? nullptr : it->second;
}

RuntimeRef ContainerManager::runtime_of(const ContainerRecord& r) {
    return {r.runtime_handler, r.runtime_path, r.runtime_root};
}

std::vector<std::string> ContainerManager::runtime_args(const ContainerRecord& r) const {
    return runtime_global_args(runtime_of(r));
}

// Runs the OCI runtime (kill, delete) and returns its output; Error with its
// words when it fails.
std::string ContainerManager::run_runtime(const ContainerRecord& r, const std::vector<std::string>& args) const {
    return runtime::run_runtime(runtime_of(r), args);
}

// Exited with no exit status to go by: 255, reason Error, `message` says why.
void ContainerManager::ended_unknown(ContainerRecord& r, const std::string& message) {
    r.state = ContainerState::Exited;
    r.exit_code = 255;
    r.oom_killed = false;
    r.reason = "Error";
    r.message = message;
    r.finished_at = now_unix_ns();
}

bool ContainerManager::apply_exit(ContainerRecord& r) {
    if (r.state == ContainerState::Exited) return false;
    std::optional<monitor::ExitStatus> s;
    try {
        s = monitor::read_exit_file(exit_dir(), r.id);
    } catch (const Error& e) {
        // conmon writes it by rename, so this is damage, not a half-written
        // file: the container has ended, how is unknown.
        spdlog::error("container {}: {}", r.id.substr(0, 12), e.what());
        ended_unknown(r, std::string("crisd-conmon's exit file could not be read (") + e.what() +
                             "); the exit status is unknown");
        return true;
    }
    if (!s) return false;
    r.state = ContainerState::Exited;
    r.exit_code = s->exit_code;
    r.oom_killed = s->oom_killed;
    r.finished_at = s->exited_at_ns;
    r.reason = s->oom_killed ? "OOMKilled" : s->exit_code == 0 ? "Completed" : "Error";
    if (r.started_at == 0) r.started_at = r.finished_at;
    return true;
}

void ContainerManager::on_exit(const std::string& id) {
    const auto c = find_exact(id);
    if (!c) return;
    {
        std::lock_guard l(c->mu);
        if (c->starting) return;
        if (apply_exit(c->rec)) {
            emit(ContainerEvent::Type::Stopped, c->rec);
            const log::Fields f{{"CONTAINER_ID", id}};
            spdlog::info("container {} ({}) exited with code {}{}", id.substr(0, 12), c->rec.config.metadata.name,
                         c->rec.exit_code, c->rec.oom_killed ? " (OOM killed)" : "");
            try {
                save(c->rec);
            } catch (const Error& e) {
                spdlog::error("{}", e.what());
            }
        }
    }
    // After the container's lock is released (see exit_mu_).
    { std::lock_guard g(exit_mu_); }
    exit_cv_.notify_all();
}

ContainerManager::Waited ContainerManager::wait_exited(Container& c, std::chrono::milliseconds timeout) {
    // The watcher applies the exit and wakes us. Once a second the exit file
    // is read too (outside exit_mu_, errors only logged), so that a wake-up
    // that never comes costs time, not the stop; and a conmon that is gone
    // ends the wait (nothing would write the exit).
    const auto exited = [&] {
        std::lock_guard l(c.mu);
        return c.rec.state == ContainerState::Exited;
    };
    const auto r = c.get();
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        {
            std::unique_lock g(exit_mu_);
            const auto now = std::chrono::steady_clock::now();
            if (exit_cv_.wait_for(g, std::min<std::chrono::steady_clock::duration>(deadline - now, 1s), exited))
                return Waited::Exited;
        }
        try {
            if (monitor::read_exit_file(exit_dir(), r.id)) return Waited::Exited;
        } catch (const Error& e) {
            spdlog::warn("{}", e.what());
            return Waited::Exited;  // apply_exit records it as unreadable
        }
        if (!monitor_alive(r.monitor_pid, r.id)) return Waited::MonitorGone;
        if (std::chrono::steady_clock::now() >= deadline) return Waited::TimedOut;
    }
}

void ContainerManager::watch_monitor(const ContainerRecord& r) {
    if (r.state == ContainerState::Exited || r.monitor_pid <= 0) return;
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, r.monitor_pid, 0));
    const int err = errno;
    auto fd = std::make_shared<UniqueFd>(pidfd);
    // Opened first, then checked: a pid reused by another process since is
    // not taken for the monitor. A conmon gone already is seen by poll() as
    // readable at once, as is one that ends later.
    if (!*fd) {
        if (err != ESRCH) {
            spdlog::warn("container {}: cannot watch its crisd-conmon (pid {}): {}", r.id.substr(0, 12),
                         r.monitor_pid, std::strerror(err));
            return;
        }
    } else if (!monitor_alive(r.monitor_pid, r.id)) {
        fd->reset();
    }
    if (!*fd) {
        // Gone already: an fd that poll() reports at once (the read end of
        // a pipe whose write end is closed).
        int p[2];
        if (::pipe2(p, O_CLOEXEC) != 0) return;
        ::close(p[1]);
        fd->reset(p[0]);
    }
    std::lock_guard l(watch_mu_);
    monitors_[r.id] = std::move(fd);
}

void ContainerManager::unwatch_monitor(const std::string& id) {
    std::lock_guard l(watch_mu_);
    monitors_.erase(id);  // the watcher's copy closes it when it drops it
}

void ContainerManager::on_monitor_exit(const std::string& id) {
    unwatch_monitor(id);
    const auto c = find_exact(id);
    if (!c) return;
    {
        std::lock_guard l(c->mu);
        if (c->starting) return;  // start() looks at its monitor when it is done
    }
    on_exit(id);  // conmon wrote the exit file before it left: the usual end
    const auto r = c->get();
    if (r.state != ContainerState::Exited)
        monitor_gone(*c, "crisd-conmon (pid " + std::to_string(r.monitor_pid) +
                             ") died without recording the container's exit (killed, or out of memory in the "
                             "pod's slice); the container's processes were killed and its exit status is unknown");
}

void ContainerManager::monitor_gone(Container& c, const std::string& message) {
    const auto r = c.get();
    if (r.state == ContainerState::Exited) return;
    const log::Fields f{{"CONTAINER_ID", r.id}};
    // The container's processes are not conmon's children any more and would
    // run on unseen: end them (every process of crisd-<id>.scope).
    try {
        systemd_.kill_unit(r.scope(), SIGKILL);
    } catch (const Error& e) {
        if (e.code() != Code::NotFound) spdlog::warn("killing what is left of container {}: {}", r.id.substr(0, 12), e.what());
    }
    {
        std::lock_guard l(c.mu);
        if (c.rec.state == ContainerState::Exited) return;
        if (!apply_exit(c.rec)) {  // an exit file after all: that is the truth
            ended_unknown(c.rec, message);
            spdlog::warn("container {} ({}): {}", r.id.substr(0, 12), r.config.metadata.name, message);
        }
        try {
            save(c.rec);
        } catch (const Error& e) {
            spdlog::error("{}", e.what());
        }
        emit(ContainerEvent::Type::Stopped, c.rec);
    }
    unwatch_monitor(r.id);
    { std::lock_guard g(exit_mu_); }
    exit_cv_.notify_all();
}

std::optional<std::string> ContainerManager::runtime_state(const ContainerRecord& r) const {
    if (!runtime_knows(runtime_of(r), r.id)) return std::nullopt;
    try {
        const auto out = run_runtime(r, {"state", r.id});
        // Only the JSON object (a runtime may print warnings around it).
        const auto open = out.find('{'), close = out.rfind('}');
        if (open == std::string::npos || close == std::string::npos || close < open) return std::nullopt;
        return json::parse(out.substr(open, close - open + 1)).value("status", std::string());
    } catch (const std::exception& e) {
        spdlog::debug("container {}: runtime state: {}", r.id.substr(0, 12), e.what());
        return std::nullopt;
    }
}

void ContainerManager::watch_exits() {
    monitor::ExitWatcher watcher(exit_dir());
    // Everything that exited before the watch existed.
    {
        std::vector<std::string> ids;
        {
            std::lock_guard lock(mu_);
            for (const auto& [id, _] : containers_) ids.push_back(id);
        }
        for (const auto& id : ids) on_exit(id);
    }
    watcher_ = std::thread([this, w = std::move(watcher)]() mutable {
        // Nothing that goes wrong for one container may end the thread (or,
        // uncaught, crisd): logged, and the loop goes on.
        const auto guarded = [](const char* what, const std::string& id, auto&& fn) {
            try {
                fn();
            } catch (const std::exception& e) {
                spdlog::error("{} of container {}: {}", what, id.substr(0, 12), e.what());
            }
        };
        std::vector<pollfd> fds;
        std::vector<std::pair<std::string, std::shared_ptr<UniqueFd>>> watched;
        while (!stopping_) {
            try {
                watched.clear();
                {
                    std::lock_guard l(watch_mu_);
                    watched.assign(monitors_.begin(), monitors_.end());
                }
                fds.assign(1, pollfd{w.fd(), POLLIN, 0});
                for (const auto& [_, fd] : watched) fds.push_back(pollfd{fd->get(), POLLIN, 0});
                if (::poll(fds.data(), fds.size(), 100) > 0) {
                    if (fds[0].revents != 0)
                        for (const auto& id : w.take()) guarded("the exit", id, [&] { on_exit(id); });
                    for (std::size_t i = 1; i < fds.size(); ++i)
                        if (fds[i].revents != 0) {
                            const auto& id = watched[i - 1].first;
                            guarded("the end of the monitor", id, [&] { on_monitor_exit(id); });
                        }
                }
                if (changed_.exchange(false)) {
                    std::lock_guard lock(change_mu_);
                    if (on_change_) on_change_();
                }
            } catch (const std::exception& e) {
                spdlog::error("the container exit watcher: {}", e.what());
                std::this_thread::sleep_for(100ms);
            }
        }
    });
}

void ContainerManager::load() {
    for (const auto& [path, text] : read_records(opts_.root + "/containers")) {
        ContainerRecord rec;
        try {
            rec = container_from_json(json::parse(text));
        } catch (const std::exception& e) {
            spdlog::error("ignoring the container record {}: {}", path, e.what());
            continue;
        }
        const log::Fields f{{"CONTAINER_ID", rec.id}};
        if (rec.creating) {
            spdlog::info("undoing the unfinished creation of container {}", rec.id.substr(0, 12));
            try {
                teardown(rec);
            } catch (const Error& e) {
                spdlog::error("undoing container {}: {}", rec.id, e.what());
            }
            continue;
        }
        bool changed = apply_exit(rec);  // an unreadable exit file too: never stops crisd's start
        if (rec.state != ContainerState::Exited && !monitor_alive(rec.monitor_pid, rec.id)) {
            // Its monitor is gone without an exit file (a reboot, or SIGKILL):
            // what may still run of it is ended.
            try {
                systemd_.kill_unit(rec.scope(), SIGKILL);
            } catch (const Error& e) {
                if (e.code() != Code::NotFound) spdlog::warn("killing what is left of container {}: {}", rec.id, e.what());
            }
            ended_unknown(rec, "crisd-conmon was gone at crisd's start; the exit status is unknown");
            changed = true;
        } else if (rec.state == ContainerState::Created) {
            // crisd died between `runtime start` and the record's save: the
            // runtime knows whether it runs.
            const auto st = runtime_state(rec);
            if (st && (*st == "running" || *st == "stopped" || *st == "paused")) {
                spdlog::info("container {} was started before crisd went away; it is running", rec.id.substr(0, 12));
                rec.state = ContainerState::Running;
                rec.started_at = now_unix_ns();  // the moment is unknown: not before now
                changed = true;
            }
        }
        if (changed) {
            try {
                save(rec);
            } catch (const Error& e) {
                spdlog::error("{}", e.what());
            }
        }
        names_.restore(reservation_key(rec), rec.id);
        watch_monitor(rec);
        auto c = std::make_shared<Container>();
        c->rec = std::move(rec);
        std::lock_guard lock(mu_);
        containers_[c->rec.id] = c;
    }
    spdlog::info("found {} container(s)", count());
    pods_.set_hooks({
        [this](const PodRecord& pod) {
            ContainerFilter filter;
            filter.pod_id = pod.id;
            for (const auto& r : list(filter)) {
                // A pod's stop is immediate (the kubelet stops the containers first, with their grace).
                if (r.pod_id != pod.id) continue;
                try {
                    stop(r.id, 0s);
                } catch (const Error& e) {
                    if (e.code() != Code::NotFound) throw;  // removed meanwhile: stopped enough
                }
            }
        },
        [this](const PodRecord& pod) {
            ContainerFilter filter;
            filter.pod_id = pod.id;
            for (const auto& r : list(filter))
                if (r.pod_id == pod.id) remove(r.id);
        },
    });
    watch_exits();
}

std::size_t ContainerManager::count() const {
    std::lock_guard lock(mu_);
    return containers_.size();
}

std::string ContainerManager::create(const std::string& pod_id, const ContainerConfig& config, const Caller& caller) {
    if (config.metadata.name.empty()) throw Error(Code::InvalidArgument, "container metadata needs a name");
    if (config.image.empty()) throw Error(Code::InvalidArgument, "container " + config.metadata.name + ": no image");
    const auto pod = pods_.status(pod_id);  // NotFound
    ContainerRecord rec;
    rec.pod_id = pod.id;
    rec.config = config;
    rec.pod_name = pod.config.metadata.name;
    rec.pod_namespace = pod.config.metadata.ns;
    rec.pod_uid = pod.config.metadata.uid;
    // The name before the pod's lock: a retry of a creation in flight (the
    // kubelet's, after its own timeout) waits for that creation's result, as
    // long as its own caller waits, and never queues on the pod's lock
    // behind it.
    const auto key = reservation_key(rec);
    const auto claim = names_.reserve(key, random_id(), caller);
    if (!claim.owner) {
        spdlog::info("CreateContainer of {} in pod {}/{} gets container {}, made for an earlier request",
                     config.metadata.name, rec.pod_namespace, rec.pod_name, claim.id);
        return claim.id;
    }
    rec.id = claim.id;
    const log::Fields f{{"CONTAINER_ID", rec.id}, {"POD_ID", pod.id}};
    bool began = false;
    try {
        pods_.with_ready_pod(
            pod.id,
            [&](const PodRecord& ready) {
                began = true;
                create_in_pod(rec, ready);
            },
            caller);
    } catch (...) {
        // Gave up (or the pod went) before anything was made: a waiting retry
        // tries itself. Any failure of the creation: the retry gets it.
        if (began)
            names_.finish(key, std::current_exception(), false);
        else
            names_.abandon(key);
        throw;
    }
    names_.finish(key, nullptr, caller.gone());
    return rec.id;
}

void ContainerManager::create_in_pod(ContainerRecord& rec, const PodRecord& pod) {
    const auto& config = rec.config;
    const Handler& handler = handlers_.get(pod.runtime_handler);
    if (!handler.problem.empty())
        throw Error(Code::FailedPrecondition, "runtime handler " + handler.name + ": " + handler.problem);
    const auto image = images_.status(config.image);
    if (!image) throw Error(Code::NotFound, "image " + config.image + " is not present; pull it first");
    rec.image_id = image->id;
    rec.image_ref = image->ref_digest.empty() ? image->id : image->ref_digest;  // the requested repository's
    rec.runtime_handler = handler.name;
    rec.runtime_path = handler.path;
    rec.runtime_root = handler.root;
    rec.slice = pod.slice;
    rec.bundle = opts_.runroot + "/containers/" + rec.id;
    rec.created_at = now_unix_ns();
    if (!pod.config.log_directory.empty() && !config.log_path.empty())
        rec.log_path = pod.config.log_directory + "/" + config.log_path;
    if (rec.config.resources.oom_score_adj < 0) {
        static std::atomic<bool> said{false};
        if (!said.exchange(true))
            spdlog::warn("a negative oom_score_adj ({}) needs CAP_SYS_RESOURCE; containers get 0 instead "
                         "(said once)",
                         rec.config.resources.oom_score_adj);
        rec.config.resources.oom_score_adj = 0;
    }

    // Limits, capabilities and the seccomp profile before anything is made:
    // a bad value is the caller's error and leaves nothing behind.
    with_context("container " + config.metadata.name, [&] { check_resources(config.resources, cgroups_); });
    note_ignored_limits(config.resources);
    const auto caps = capabilities(config, bounding_);
    const auto seccomp = with_context("container " + config.metadata.name, [&] {
        return seccomp_.for_container(config.seccomp, config.privileged, {caps.begin(), caps.end()});
    });
    // The PID namespace to join (TARGET: a container of this pod), checked
    // before anything is made.
    std::optional<ContainerRecord> target;
    if (config.pid == NamespaceMode::Target && !config.pid_target.empty()) {
        try {
            target = find(config.pid_target)->get();
        } catch (const Error& e) {
            if (e.code() != Code::NotFound) throw;
        }
    }
    pid_namespace(config, pod, target ? &*target : nullptr);

    // The record first: a crash from here on is undone at the next start.
    save(rec);
    try {
        rootfs_.create(rec.id, rec.image_id);
        rec.rootfs = rootfs_.mount(rec.id);
        const auto image_config = parse_image_config(image->config_json);
        if (!config.stop_signal.empty())
            rec.stop_signal = signal_number(config.stop_signal);
        else if (!image_config.stop_signal.empty())
            rec.stop_signal = signal_number(image_config.stop_signal);
        SpecInputs in;
        in.record = &rec;
        in.pod = &pod;
        in.pid_target = target ? &*target : nullptr;
        in.image = image_config;
        in.args = process_args(config, image_config);
        in.user = resolve_user(config, image_config, rec.rootfs);
        in.caps = caps;
        in.seccomp = seccomp;
        in.cgroups = cgroups_;
        const auto spec = oci_spec(in);
        make_dirs(rec.bundle, fs::perms::owner_all);
        make_dirs(rec.socket_dir(), fs::perms::owner_all);
        // Invalid UTF-8 from an image (an env value, a home directory) is replaced,
        // not a json exception.
        write_file_atomic(rec.bundle + "/config.json", spec.dump(2, ' ', false, json::error_handler_t::replace),
                          0600, false);
        if (!rec.log_path.empty()) make_dirs(fs::path(rec.log_path).parent_path().string());

        monitor::Config mc;
        mc.conmon_path = opts_.conmon_path;
        mc.id = rec.id;
        mc.name = config.metadata.name;
        mc.pod_name = rec.pod_name;
        mc.pod_namespace = rec.pod_namespace;
        mc.bundle = rec.bundle;
        mc.runtime_path = rec.runtime_path;
        mc.runtime_args = runtime_args(rec);
        mc.log_path = rec.log_path;
        mc.exit_dir = exit_dir();
        mc.socket_dir = rec.socket_dir();
        mc.terminal = config.tty;
        mc.stdin = config.stdin;
        mc.stdin_once = config.stdin_once;
        const MonitorScope where{rec.slice, "crisd-conmon of container " + config.metadata.name + " in pod " +
                                                rec.pod_namespace + "/" + rec.pod_name};
        rec.pid = launch(systemd_, mc, where, [&](pid_t monitor) {
            rec.monitor_pid = monitor;
            save(rec);
        });
        // The runtime made crisd-<id>.scope; the limits go on it as unit
        // properties before the container's process runs (crun's systemd
        // driver leaves them out on a cgroup v1 host), with a description
        // that names the container instead of the runtime's "libcontainer
        // container <id>" (one SetUnitProperties call for both).
        auto sd = scope_resources(rec.config.resources, cgroups_);
        const bool limits = !sd.empty();
        sd.description = "crisd container " + config.metadata.name + " in pod " + rec.pod_namespace + "/" +
                         rec.pod_name;
        if (limits) {
            with_context("setting the limits of " + rec.scope(), [&] { systemd_.set_properties(rec.scope(), sd); });
        } else {
            try {  // only a name for operators: never worth failing the container
                systemd_.set_properties(rec.scope(), sd);
            } catch (const Error& e) {
                spdlog::warn("describing {}: {}", rec.scope(), e.what());
            }
        }
        rec.state = ContainerState::Created;
        rec.creating = false;
        save(rec);
    } catch (...) {  // whatever failed, nothing half-made stays
        try {
            teardown(rec);
        } catch (const std::exception& e) {
            spdlog::error("cleaning up after a failed CreateContainer of {}: {}", config.metadata.name, e.what());
        }
        throw;
    }
    auto c = std::make_shared<Container>();
    c->rec = rec;
    {
        std::lock_guard lock(mu_);
        containers_[rec.id] = c;
    }
    watch_monitor(rec);
    emit(ContainerEvent::Type::Created, rec);
    spdlog::info("created container {} ({}) in pod {}/{} with {}, seccomp {}", rec.id.substr(0, 12),
                 config.metadata.name, rec.pod_namespace, rec.pod_name, rec.runtime_handler,
                 config.privileged ? "unconfined (privileged)" : to_string(config.seccomp));
}

void ContainerManager::teardown(ContainerRecord& r) {
    destroy(systemd_, runtime_of(r), r.id, r.monitor_pid);
    rootfs_.remove(r.id);
    std::error_code ec;
    if (!r.bundle.empty()) fs::remove_all(r.bundle, ec);
    fs::remove(exit_dir() + "/" + r.id, ec);
    fs::remove(record_path(r.id), ec);
}

void ContainerManager::start(const std::string& id) {
    auto c = find(id);
    std::lock_guard op(c->op);
    const auto r = c->get();
    if (r.state != ContainerState::Created)
        throw Error(Code::FailedPrecondition, "container " + r.id + " is not in the created state");
    const log::Fields f{{"CONTAINER_ID", r.id}};
    const auto started = now_unix_ns();
    {
        std::lock_guard l(c->mu);
        c->starting = true;
    }
    std::exception_ptr failed;
    bool runtime_refused = false;  // the runtime's own error: `start` did not happen
    try {
        monitor::start(r.socket_dir(), 60s);
    } catch (const monitor::RuntimeError&) {
        failed = std::current_exception();
        runtime_refused = true;
    } catch (const Error&) {  // a timeout, a dropped connection: it may have started all the same
        failed = std::current_exception();
    }
    // After a failure the runtime says what happened: a container that runs
    // (or ran: "stopped", an exit file) is recorded as started, whatever the
    // reply said, so that the kubelet never starts a second copy.
    bool ran = !failed;
    std::optional<std::string> state;
    if (failed) {
        state = runtime_state(r);
        ran = (state && *state != "created") || ::access((exit_dir() + "/" + r.id).c_str(), F_OK) == 0;
        spdlog::warn("starting container {} failed; the runtime says it is {}", r.id.substr(0, 12),
                     state ? *state : "unknown");
    }
    bool running = false;
    {
        std::lock_guard l(c->mu);
        c->starting = false;
        if (ran) {
            c->rec.started_at = started;
            if (c->rec.state == ContainerState::Created) c->rec.state = ContainerState::Running;
            save(c->rec);
            emit(ContainerEvent::Type::Started, c->rec);
        }
        if (apply_exit(c->rec)) {  // it ended while being started
            save(c->rec);
            emit(ContainerEvent::Type::Stopped, c->rec);
        }
        running = c->rec.state == ContainerState::Running;
    }
    if (!monitor_alive(r.monitor_pid, r.id)) {
        monitor_gone(*c, "crisd-conmon (pid " + std::to_string(r.monitor_pid) +
                             ") died while the container was being started; its processes were killed");
        running = false;
    } else if (failed && !ran && !runtime_refused) {
        // Still "created" after an unanswered start: the start may yet
        // happen behind a record that says created. It never will: killed,
        // and the exit watcher records its end.
        try {
            run_runtime(r, {"kill", r.id, std::to_string(SIGKILL)});
        } catch (const Error& e) {
            spdlog::debug("{}", e.what());
        }
    }
    if (failed && !running) std::rethrow_exception(failed);
    if (failed)
        spdlog::warn("container {} ({}) runs although its start was not confirmed; recorded as running",
                     r.id.substr(0, 12), r.config.metadata.name);
    else
        spdlog::info("started container {} ({})", r.id.substr(0, 12), r.config.metadata.name);
}

void ContainerManager::stop(const std::string& id, std::chrono::seconds timeout) {
    auto c = find(id);
    std::lock_guard op(c->op);
    stop_locked(*c, timeout);
}

void ContainerManager::kill_remaining(const ContainerRecord& r) const {
    if (!runtime_knows(runtime_of(r), r.id)) return;  // deleted: nothing left
    try {
        run_runtime(r, {"kill", "--all", r.id, std::to_string(SIGKILL)});
    } catch (const Error& e) {
        spdlog::debug("{}", e.what());  // "container not running": nothing was left
    }
}

void ContainerManager::stop_locked(Container& c, std::chrono::seconds timeout) {
    const auto r = c.get();
    const log::Fields f{{"CONTAINER_ID", r.id}};
    if (r.state == ContainerState::Exited) {
        // Its first process has ended; in a PID namespace it does not own,
        // what it started runs on (PID POD/TARGET/NODE).
        if (r.shares_pid_namespace()) kill_remaining(r);
        return;
    }
    const std::string gone_message =
        "crisd-conmon (pid " + std::to_string(r.monitor_pid) +
        ") is gone without recording the container's exit; its processes were killed and its exit status is unknown";
    if (!monitor_alive(r.monitor_pid, r.id)) {  // nothing would ever write the exit: no waiting
        monitor_gone(c, gone_message);
        return;
    }
    auto signal = [&](int sig) {
        try {
            if (r.shares_pid_namespace())  // its other processes would outlive its first one
                run_runtime(r, {"kill", "--all", r.id, std::to_string(sig)});
            else
                run_runtime(r, {"kill", r.id, std::to_string(sig)});
        } catch (const Error& e) {
            spdlog::debug("{}", e.what());  // it may have exited already
        }
    };
    auto waited = Waited::TimedOut;
    if (timeout.count() > 0 && r.state == ContainerState::Running) {
        signal(r.stop_signal);
        waited = wait_exited(c, timeout);
    }
    if (waited == Waited::TimedOut) {
        if (timeout.count() > 0)
            spdlog::info("container {} did not stop within {} s of signal {}; killing it", r.id.substr(0, 12),
                         timeout.count(), r.stop_signal);
        signal(SIGKILL);
        waited = wait_exited(c, 30s);
    }
    if (waited == Waited::MonitorGone) {
        monitor_gone(c, gone_message);
        return;
    }
    if (waited == Waited::TimedOut)
        throw Error(Code::DeadlineExceeded, "container " + r.id + " did not exit after SIGKILL");
    std::lock_guard l(c.mu);
    if (apply_exit(c.rec)) {
        save(c.rec);
        emit(ContainerEvent::Type::Stopped, c.rec);
    }
    spdlog::info("stopped container {} ({})", r.id.substr(0, 12), r.config.metadata.name);
}

void ContainerManager::remove(const std::string& id) {
    std::shared_ptr<Container> c;
    try {
        c = find(id);
    } catch (const Error& e) {
        if (e.code() == Code::NotFound) return;
        throw;
    }
    std::lock_guard op(c->op);
    stop_locked(*c, 0s);
    auto r = c->get();
    const log::Fields f{{"CONTAINER_ID", r.id}};
    unwatch_monitor(r.id);
    teardown(r);
    names_.release(reservation_key(r));
    {
        std::lock_guard lock(mu_);
        containers_.erase(r.id);
    }
    emit(ContainerEvent::Type::Deleted, r);
    spdlog::info("removed container {} ({})", r.id.substr(0, 12), r.config.metadata.name);
}

ContainerRecord ContainerManager::status(const std::string& id) const { return find(id)->get(); }

std::vector<ContainerRecord> ContainerManager::list(const ContainerFilter& filter) const {
    std::vector<std::shared_ptr<Container>> all;
    {
        std::lock_guard lock(mu_);
        for (const auto& [_, c] : containers_) all.push_back(c);
    }
    std::vector<ContainerRecord> out;
    for (const auto& c : all) {
        auto r = c->get();
        if (matches(filter, r)) out.push_back(std::move(r));
    }
    return out;
}

monitor::ExecResult ContainerManager::exec_sync(const std::string& id, const std::vector<std::string>& cmd,
                                                std::chrono::milliseconds timeout) {
    if (cmd.empty()) throw Error(Code::InvalidArgument, "ExecSync: the command is empty");
    const auto r = find(id)->get();
    if (r.state != ContainerState::Running)
        throw Error(Code::FailedPrecondition, "container " + r.id + " is not running");
    return monitor::exec_sync(r.socket_dir(), cmd, timeout, kExecSyncOutputCap, kExecSyncOutputCap);
}

void ContainerManager::reopen_log(const std::string& id) {
    const auto r = find(id)->get();
    if (r.state != ContainerState::Running)
        throw Error(Code::FailedPrecondition, "container " + r.id + " is not running");
    monitor::reopen_log(r.socket_dir());
}

}  // namespace crisd::runtime

namespace crisd::runtime {

void ContainerManager::update_resources(const std::string& id, const ContainerResources& res) {
    auto c = find(id);
    std::lock_guard op(c->op);
    const auto r = c->get();
    if (r.state != ContainerState::Running && r.state != ContainerState::Created)
        throw Error(Code::FailedPrecondition, "container " + r.id + " is not running");
    // Checked against the limits it will have (a swap limit alone is checked
    // against the memory limit the container has now).
    auto effective = res;
    if (effective.memory_limit == 0) effective.memory_limit = r.config.resources.memory_limit;
    with_context("container " + r.id, [&] { check_resources(effective, cgroups_); });
    note_ignored_limits(res);
    // crun's cgroup v1 CPU settings are its own cgroupfs writes, which systemd
    // does not redo: the runtime's `update` sets the CPU values too (seen:
    // cpu.cfs_quota_us kept the old value with crun after SetUnitProperties).
    std::vector<std::string> update_args;
    // cgroup v1 with swap accounting: memory.memsw is the runtime's (systemd
    // has no property for it) and memory.limit_in_bytes may not exceed it, so
    // the runtime sets both, in the order the kernel needs, before systemd
    // records MemoryMax.
    if (!cgroups_.unified && cgroups_.swap && (res.memory_limit > 0 || res.memory_swap_limit != 0)) {
        const auto memory = res.memory_limit > 0 ? res.memory_limit : r.config.resources.memory_limit;
        // No swap limit given: unlimited stays unlimited, else no swap (= memory).
        const auto swap = res.memory_swap_limit != 0                ? res.memory_swap_limit
                          : r.config.resources.memory_swap_limit == -1 ? -1
                          : memory > 0                                 ? memory
                                                                       : -1;
        if (memory > 0) update_args.insert(update_args.end(), {"--memory", std::to_string(memory)});
        update_args.insert(update_args.end(), {"--memory-swap", std::to_string(swap)});
    }
    if (res.cpu_quota > 0) update_args.insert(update_args.end(), {"--cpu-quota", std::to_string(res.cpu_quota)});
    if (res.cpu_period > 0) update_args.insert(update_args.end(), {"--cpu-period", std::to_string(res.cpu_period)});
    if (res.cpu_shares > 0) update_args.insert(update_args.end(), {"--cpu-share", std::to_string(res.cpu_shares)});
    if (!res.cpuset_cpus.empty()) update_args.insert(update_args.end(), {"--cpuset-cpus", res.cpuset_cpus});
    if (!res.cpuset_mems.empty()) update_args.insert(update_args.end(), {"--cpuset-mems", res.cpuset_mems});
    if (!update_args.empty() && r.state == ContainerState::Running) {
        std::vector<std::string> args{"update"};
        args.insert(args.end(), update_args.begin(), update_args.end());
        args.push_back(r.id);
        run_runtime(r, args);
    }
    // cgroup v2: `unified` goes to the runtime as a resources file.
    if (cgroups_.unified && !res.unified.empty() && r.state == ContainerState::Running) {
        const auto file = r.bundle + "/update-resources.json";
        write_file_atomic(file, json{{"unified", res.unified}}.dump(), 0600, false);
        run_runtime(r, {"update", "--resources", file, r.id});
        std::error_code ec;
        fs::remove(file, ec);
    }
    const auto sd = scope_resources(res, cgroups_);
    if (!sd.empty())
        with_context("updating the limits of " + r.scope(), [&] { systemd_.set_properties(r.scope(), sd); });
    std::lock_guard l(c->mu);
    auto& cur = c->rec.config.resources;
    if (res.cpu_shares > 0) cur.cpu_shares = res.cpu_shares;
    if (res.cpu_quota > 0) cur.cpu_quota = res.cpu_quota;
    if (res.cpu_period > 0) cur.cpu_period = res.cpu_period;
    if (res.memory_limit > 0) cur.memory_limit = res.memory_limit;
    if (!res.cpuset_cpus.empty()) cur.cpuset_cpus = res.cpuset_cpus;
    if (!res.cpuset_mems.empty()) cur.cpuset_mems = res.cpuset_mems;
    if (res.memory_swap_limit != 0) cur.memory_swap_limit = res.memory_swap_limit;
    // hugetlb limits are set at creation only: neither systemd nor the
    // runtimes' `update` change them (the kubelet sends the same ones again).
    if (!res.hugepage_limits.empty() && res.hugepage_limits != cur.hugepage_limits)
        spdlog::warn("container {}: hugepage_limits are not changed on a running container; they stay as created",
                     r.id.substr(0, 12));
    for (const auto& [k, v] : res.unified) cur.unified[k] = v;
    save(c->rec);
    spdlog::info("updated the limits of container {}", r.id.substr(0, 12));
}

}  // namespace crisd::runtime

namespace crisd::runtime {

std::shared_ptr<ContainerEvents> ContainerManager::subscribe() { return events_.subscribe(); }

namespace {

std::vector<ContainerRecord> containers_of(const ContainerManager& m, const std::string& pod_id) {
    ContainerFilter filter;
    filter.pod_id = pod_id;
    auto all = m.list(filter);
    std::erase_if(all, [&](const ContainerRecord& r) { return r.pod_id != pod_id; });  // a prefix matched more
    return all;
}

}  // namespace

ContainerManager::PodStatus ContainerManager::pod_status(const std::string& pod_id) const {
    PodStatus out;
    out.timestamp = now_unix_ns();
    out.pod = pods_.status(pod_id);
    out.containers = containers_of(*this, out.pod.id);
    return out;
}

std::unique_ptr<ContainerManager::RuntimeEvents> ContainerManager::subscribe_all() {
    return std::unique_ptr<RuntimeEvents>(new RuntimeEvents(*this, pods_.subscribe(), events_.subscribe()));
}

std::optional<ContainerManager::RuntimeEvent> ContainerManager::RuntimeEvents::next(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (!pod_) pod_ = pods_->next(0ms);
        if (!container_) container_ = containers_->next(0ms);
        if (pod_ && (!container_ || pod_->at <= container_->at)) {
            RuntimeEvent e;
            e.type = static_cast<ContainerEvent::Type>(pod_->type);
            e.at = pod_->at;
            e.id = pod_->pod.id;
            e.pod = std::move(pod_->pod);
            pod_.reset();
            if (e.type != ContainerEvent::Type::Deleted) e.containers = containers_of(owner_, e.id);
            return e;
        }
        if (container_) {
            RuntimeEvent e;
            e.type = container_->type;
            e.at = container_->at;
            e.id = container_->container.id;
            const auto pod_id = container_->container.pod_id;
            e.containers.push_back(std::move(container_->container));
            container_.reset();
            try {
                e.pod = owner_.pods_.status(pod_id);
            } catch (const Error& err) {
                if (err.code() != Code::NotFound) throw;
            }
            for (auto& r : containers_of(owner_, pod_id))
                if (r.id != e.id) e.containers.push_back(std::move(r));
            return e;
        }
        // Nothing queued: wait on the pod queue a little, then look at both again.
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline) return std::nullopt;
        pod_ = pods_->next(std::min(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now), 50ms));
    }
}

// Limits the node cannot apply, said once each (CRI-O and containerd leave
// them out the same way, so a kubelet's pod still runs).
void ContainerManager::note_ignored_limits(const ContainerResources& res) const {
    static std::atomic<bool> swap_said{false}, huge_said{false};
    if (res.memory_swap_limit != 0 && !cgroups_.swap && !swap_said.exchange(true))
        spdlog::warn("memory_swap_limit_in_bytes is ignored: this node does not account swap in its memory "
                     "cgroups (no memory.memsw / memory.swap.max; said once)");
    if (!res.hugepage_limits.empty() && !cgroups_.hugetlb && !huge_said.exchange(true))
        spdlog::warn("hugepage_limits are ignored: this node has no hugetlb cgroup controller (said once)");
}

void ContainerManager::emit(ContainerEvent::Type type, const ContainerRecord& r) {
    const ContainerEvent event{type, now_unix_ns(), r};
    events_.publish(event);
    // on_change_ runs on the watcher thread, with no container's lock held
    // (emit is called under them, and on_change_ reads every container).
    changed_ = true;
}

void ContainerManager::set_on_change(std::function<void()> fn) {
    std::lock_guard lock(change_mu_);
    on_change_ = std::move(fn);
}

}  // namespace crisd::runtime

namespace crisd::runtime {
namespace {

std::optional<std::uint64_t> read_u64(const std::string& path) {
    const auto text = read_file_if_exists(path);
    if (!text) return std::nullopt;
    try {
        return std::stoull(*text);
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

// "key value" lines (memory.stat, cpu.stat).
std::optional<std::uint64_t> stat_field(const std::string& path, const std::string& key) {
    const auto text = read_file_if_exists(path);
    if (!text) return std::nullopt;
    std::size_t pos = 0;
    while (pos < text->size()) {
        auto end = text->find('\n', pos);
        if (end == std::string::npos) end = text->size();
        const std::string line = text->substr(pos, end - pos);
        if (line.rfind(key + " ", 0) == 0) {
            try {
                return std::stoull(line.substr(key.size() + 1));
            } catch (const std::exception&) {
                return std::nullopt;
            }
        }
        pos = end + 1;
    }
    return std::nullopt;
}

}  // namespace

std::string ContainerManager::slice_cgroup(const std::string& slice) {
    std::string path;
    const std::string name = slice.substr(0, slice.size() - std::string(".slice").size());
    std::size_t dash = 0;
    while (true) {
        dash = name.find('-', dash);
        path += "/" + (dash == std::string::npos ? name : name.substr(0, dash)) + ".slice";
        if (dash == std::string::npos) break;
        ++dash;
    }
    return path;
}

std::string ContainerManager::scope_cgroup(const std::string& slice, const std::string& id) {
    return slice_cgroup(slice) + "/crisd-" + id + ".scope";
}

ContainerManager::Stats ContainerManager::cgroup_stats(const std::string& cg) {
    Stats s;
    s.timestamp = now_unix_ns();
    const std::string root = "/sys/fs/cgroup";
    if (fs::exists(root + "/memory" + cg)) {  // v1
        s.cpu_ns = read_u64(root + "/cpuacct" + cg + "/cpuacct.usage");
        s.memory_usage = read_u64(root + "/memory" + cg + "/memory.usage_in_bytes");
        s.rss = stat_field(root + "/memory" + cg + "/memory.stat", "total_rss");
        const auto inactive = stat_field(root + "/memory" + cg + "/memory.stat", "total_inactive_file");
        if (s.memory_usage)
            s.working_set = inactive && *inactive < *s.memory_usage ? *s.memory_usage - *inactive : *s.memory_usage;
        s.processes = read_u64(root + "/pids" + cg + "/pids.current");
    } else if (fs::exists(root + cg + "/memory.current")) {  // v2
        if (const auto us = stat_field(root + cg + "/cpu.stat", "usage_usec")) s.cpu_ns = *us * 1000;
        s.memory_usage = read_u64(root + cg + "/memory.current");
        s.rss = stat_field(root + cg + "/memory.stat", "anon");
        const auto inactive = stat_field(root + cg + "/memory.stat", "inactive_file");
        if (s.memory_usage)
            s.working_set = inactive && *inactive < *s.memory_usage ? *s.memory_usage - *inactive : *s.memory_usage;
        s.processes = read_u64(root + cg + "/pids.current");
    }
    return s;
}

std::optional<ContainerManager::WritableLayer> ContainerManager::writable_layer(Container& c,
                                                                                const std::string& id) const {
    std::lock_guard l(c.layer_mu);
    const auto now = std::chrono::steady_clock::now();
    if (c.layer && now - c.layer_at < kWritableLayerTtl) return c.layer;
    const auto info = rootfs_.get(id);
    if (!info) return std::nullopt;
    const auto u = disk_usage(info->upper);
    if (!u.complete && !c.layer_truncated_logged) {
        c.layer_truncated_logged = true;
        const log::Fields f{{"CONTAINER_ID", id}};
        spdlog::warn("container {}: its writable layer is deeper or larger than crisd measures (512 levels, 4 "
                     "million entries); its usage is reported as what was counted",
                     id.substr(0, 12));
    }
    c.layer = WritableLayer{rootfs_.dir(), u.bytes, u.inodes, now_unix_ns()};
    c.layer_at = now;
    return c.layer;
}

ContainerManager::Stats ContainerManager::stats_of(const std::shared_ptr<Container>& c) const {
    const auto r = c->get();
    Stats s;
    if (r.state == ContainerState::Running) {
        s = cgroup_stats(scope_cgroup(r.slice, r.id));
    } else {
        s.timestamp = now_unix_ns();
    }
    s.writable_layer = writable_layer(*c, r.id);  // kept after the container ended, until removal
    return s;
}

ContainerManager::Stats ContainerManager::stats(const std::string& id) const { return stats_of(find(id)); }

namespace {

// /proc/<pid>/net/dev: "  eth0: rx_bytes packets errs drop fifo frame compressed multicast tx_bytes packets errs ..."
std::vector<ContainerManager::Interface> net_dev(pid_t pid) {
    std::vector<ContainerManager::Interface> out;
    const auto text = read_file_if_exists("/proc/" + std::to_string(pid) + "/net/dev");
    if (!text) return out;
    std::istringstream in(*text);
    std::string line;
    while (std::getline(in, line)) {
        const auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string name = line.substr(0, colon);
        name.erase(0, name.find_first_not_of(' '));
        if (name.empty() || name == "lo" || name.find('|') != std::string::npos) continue;
        std::istringstream f(line.substr(colon + 1));
        std::uint64_t v[16] = {};
        int n = 0;
        while (n < 16 && f >> v[n]) ++n;
        if (n < 16) continue;
        out.push_back({name, v[0], v[2], v[8], v[10]});
    }
    return out;
}

}  // namespace

ContainerManager::PodStats ContainerManager::pod_stats_of(const PodRecord& pod) const {
    PodStats out;
    out.pod = pod;
    ContainerFilter filter;
    filter.pod_id = pod.id;
    filter.state = ContainerState::Running;
    pid_t net_pid = 0;
    for (const auto& r : list(filter)) {
        if (r.pod_id != pod.id) continue;
        std::shared_ptr<Container> c;
        try {
            c = find(r.id);
        } catch (const Error&) {
            continue;  // removed meanwhile
        }
        out.containers.emplace_back(r, stats_of(c));
        if (!net_pid && r.pid > 0) net_pid = r.pid;
    }
    if (!pod.config.cgroup_parent.empty()) {
        out.usage = cgroup_stats(slice_cgroup(pod.slice));
    } else {
        // crisd.slice is shared by every pod without a slice: sum the containers.
        out.usage.timestamp = now_unix_ns();
        const auto add = [](std::optional<std::uint64_t>& sum, const std::optional<std::uint64_t>& v) {
            if (v) sum = sum.value_or(0) + *v;
        };
        for (const auto& [_, s] : out.containers) {
            add(out.usage.cpu_ns, s.cpu_ns);
            add(out.usage.memory_usage, s.memory_usage);
            add(out.usage.working_set, s.working_set);
            add(out.usage.rss, s.rss);
            add(out.usage.processes, s.processes);
        }
    }
    if (!pod.config.host_network() && !pod.netns.empty() && net_pid) out.interfaces = net_dev(net_pid);
    return out;
}

ContainerManager::PodStats ContainerManager::pod_stats(const std::string& pod_id) const {
    return pod_stats_of(pods_.status(pod_id));
}

std::vector<ContainerManager::PodStats> ContainerManager::list_pod_stats(const PodFilter& filter) const {
    std::vector<PodStats> out;
    for (const auto& pod : pods_.list(filter)) out.push_back(pod_stats_of(pod));
    return out;
}

}  // namespace crisd::runtime
