#include "runtime/pods.hpp"

#include <poll.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <set>

#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "common/ids.hpp"
#include "common/files.hpp"
#include "log/log.hpp"
#include "monitor/monitor.hpp"
#include "network/network.hpp"
#include "runtime/handlers.hpp"
#include "runtime/infra.hpp"
#include "runtime/namespaces.hpp"
#include "systemd/systemd.hpp"

namespace crisd::runtime {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string node_hostname() {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0) return "localhost";
    return buf;
}

bool valid_slice(const std::string& s) {
    const std::string suffix = ".slice";
    return s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0 &&
           s.find('/') == std::string::npos;
}

}  // namespace

struct PodManager::Pod {
    std::timed_mutex op;    // serialises stop/remove/container creation in this pod (slow work)
    mutable std::mutex mu;  // guards rec and removed (never held across slow work)
    std::mutex save_mu;     // orders the record writes of concurrent changes (stop, infra exit)
    PodRecord rec;
    bool removed = false;
    bool stopping = false;  // StopPodSandbox ends the infra container: not a death to report

    PodRecord snapshot() const {
        std::lock_guard lock(mu);
        return rec;
    }
};

// ---- manager ----

PodManager::PodManager(PodOptions options, const Handlers& handlers, network::Network& network,
                       systemd::Manager& systemd)
    : opts_(std::move(options)), handlers_(handlers), network_(network), systemd_(systemd) {
    for (const auto& d : {opts_.root + "/pods", opts_.runroot + "/pods", opts_.runroot + "/ns"}) {
        std::error_code ec;
        fs::create_directories(d, ec);
        if (ec) throw sys_error("creating " + d, ec.value());
    }
    // The exit files go where the containers' go; each manager reads its own ids.
    infra_ = std::make_unique<Infra>(
        InfraOptions{opts_.runroot + "/exits", opts_.conmon_path, opts_.pause_path}, systemd_);
}

PodManager::~PodManager() {
    stopping_ = true;
    if (watcher_.joinable()) watcher_.join();
}

std::string PodManager::record_path(const std::string& id) const {
    return opts_.root + "/pods/" + id + ".json";
}

void PodManager::save(const PodRecord& r) const {
    with_context("saving the record of pod " + r.id,
                 [&] { write_file_atomic(record_path(r.id), to_json(r).dump(), 0600, true); });
}

void PodManager::load() {
    for (const auto& [path, text] : read_records(opts_.root + "/pods")) {
        PodRecord rec;
        try {
            rec = record_from_json(json::parse(text));
        } catch (const std::exception& e) {
            spdlog::error("ignoring the pod record {}: {}", path, e.what());
            continue;
        }
        const log::Fields fields{{"POD_ID", rec.id}};
        if (rec.creating) {
            // crisd went away in the middle of RunPodSandbox: undo it.
            spdlog::info("pod {} ({}/{}) was being created when crisd stopped; removing it", rec.id,
                         rec.config.metadata.ns, rec.config.metadata.name);
            try {
                teardown(rec);
            } catch (const Error& e) {
                spdlog::error("cleaning up the unfinished pod {}: {}", rec.id, e.what());
            }
            continue;
        }
        if (rec.state == PodState::Ready) {
            // After a reboot the namespaces (in the runroot, a tmpfs) are gone:
            // nothing can join the pod any more.
            for (const auto* p : {&rec.netns, &rec.ipcns, &rec.utsns}) {
                if (p->empty() || ::access(p->c_str(), F_OK) == 0) continue;
                spdlog::warn("pod {}: {} is gone; the pod is not ready", rec.id, *p);
                rec.state = PodState::NotReady;
                break;
            }
            // The infra container ended, or its monitor is gone, while crisd was away.
            if (rec.state == PodState::Ready && infra_->exited(rec)) {
                spdlog::warn("pod {}: its infra container is not running; the pod is not ready", rec.id);
                rec.state = PodState::NotReady;
            }
            if (rec.state != PodState::Ready) {
                try {
                    save(rec);
                } catch (const Error& e) {
                    spdlog::warn("{}", e.what());
                }
            }
        }
        auto pod = std::make_shared<Pod>();
        pod->rec = rec;
        names_.restore(reservation_key(rec.config.metadata), rec.id);
        std::lock_guard lock(mu_);
        pods_[rec.id] = pod;
        spdlog::info("found pod {} ({}/{}), {}{}", rec.id, rec.config.metadata.ns, rec.config.metadata.name,
                     rec.state == PodState::Ready ? "ready" : "not ready",
                     rec.infra.present() && rec.infra.pid > 0
                         ? ", infra container pid " + std::to_string(rec.infra.pid)
                         : "");
    }
    watch_infra();
}

void PodManager::watch_infra() {
    if (watcher_.joinable()) return;
    monitor::ExitWatcher watcher(infra_->exit_dir());
    // Everything that ended before the watch existed.
    std::vector<std::string> ids;
    {
        std::lock_guard lock(mu_);
        for (const auto& [id, pod] : pods_) ids.push_back(id);
    }
    auto check = [this](const std::string& id) {
        try {
            check_infra(id);  // container ids are not found: ignored
        } catch (const std::exception& e) {
            spdlog::error("checking the infra container of pod {}: {}", id, e.what());
        }
    };
    for (const auto& id : ids) check(id);
    watcher_ = std::thread([this, check, w = std::move(watcher)]() mutable {
        while (!stopping_) {
            pollfd p{w.fd(), POLLIN, 0};
            if (::poll(&p, 1, 100) > 0) {
                const auto ids = w.take();
                infra_->exits_seen();  // wakes a StopPodSandbox waiting for its infra container
                for (const auto& id : ids) check(id);
            }
        }
    });
}

void PodManager::check_infra(const std::string& id) {
    std::shared_ptr<Pod> pod;
    {
        std::lock_guard lock(mu_);
        const auto it = pods_.find(id);
        if (it == pods_.end()) return;
        pod = it->second;
    }
    const auto before = pod->snapshot();
    if (before.state != PodState::Ready || !before.infra.present() || !infra_->exited(before)) return;
    std::lock_guard saving(pod->save_mu);
    PodRecord rec;
    {
        std::lock_guard lock(pod->mu);
        if (pod->removed || pod->stopping || pod->rec.state != PodState::Ready) return;
        pod->rec.state = PodState::NotReady;
        rec = pod->rec;
    }
    const log::Fields fields{{"POD_ID", rec.id}};
    const auto status = monitor::read_exit_file(infra_->exit_dir(), rec.infra.id);
    spdlog::warn("pod {} ({}/{}): its infra container (PID 1 of the pod's PID namespace) {}; the pod is not ready",
                 rec.id, rec.config.metadata.ns, rec.config.metadata.name,
                 status ? "exited with code " + std::to_string(status->exit_code) : "is gone");
    try {
        save(rec);
    } catch (const Error& e) {
        spdlog::error("{}", e.what());
    }
    emit(PodEvent::Type::Stopped, rec);
}

std::shared_ptr<PodManager::Pod> PodManager::find(const std::string& id) const {
    if (id.empty()) throw Error(Code::InvalidArgument, "a pod sandbox id is required");
    std::lock_guard lock(mu_);
    if (auto it = pods_.find(id); it != pods_.end()) return it->second;
    std::shared_ptr<Pod> found;
    for (auto it = pods_.lower_bound(id); it != pods_.end() && it->first.compare(0, id.size(), id) == 0;
         ++it) {
        if (found)
            throw Error(Code::InvalidArgument, "pod sandbox id prefix \"" + id + "\" is ambiguous");
        found = it->second;
    }
    if (!found) throw Error(Code::NotFound, "pod sandbox \"" + id + "\" not found");
    return found;
}

std::string PodManager::run(const PodConfig& config, const Caller& caller) {
    const auto& md = config.metadata;
    if (md.name.empty() || md.ns.empty() || md.uid.empty())
        throw Error(Code::InvalidArgument, "pod sandbox metadata needs a name, a namespace and a uid");
    if (config.network == NamespaceMode::Target || config.pid == NamespaceMode::Target ||
        config.ipc == NamespaceMode::Target)
        throw Error(Code::InvalidArgument, "namespace mode TARGET is for containers, not pods");
    if (!config.cgroup_parent.empty() && !valid_slice(config.cgroup_parent))
        throw Error(Code::InvalidArgument,
                    "cgroup_parent \"" + config.cgroup_parent +
                        "\" is not a systemd slice name: crisd uses the systemd cgroup driver "
                        "(e.g. kubepods-burstable-pod<uid>.slice)");
    if (config.hostname.size() > 64)
        throw Error(Code::InvalidArgument, "hostname \"" + config.hostname + "\" is longer than 64 characters");
    check_sysctls(config);
    const std::string handler =
        config.runtime_handler.empty() ? handlers_.default_name() : config.runtime_handler;
    const Handler& h = handlers_.get(handler);  // NotFound for a handler without a table
    if (config.pid == NamespaceMode::Pod && !h.problem.empty())
        throw Error(Code::FailedPrecondition, "pod " + md.ns + "/" + md.name +
                                                  " shares one PID namespace, which needs an infra container: "
                                                  "runtime handler " + h.name + ": " + h.problem);

    const std::string key = reservation_key(md);
    const auto claim = names_.reserve(key, random_id(), caller);
    if (!claim.owner) {  // a retry: the first request's pod
        spdlog::info("RunPodSandbox of {}/{} gets pod {}, made for an earlier request of the same name",
                     md.ns, md.name, claim.id);
        return claim.id;
    }

    PodRecord rec;
    rec.id = claim.id;
    rec.config = config;
    rec.runtime_handler = handler;
    rec.created_at = now_unix_ns();
    rec.slice = config.cgroup_parent.empty() ? "crisd.slice" : config.cgroup_parent;
    rec.run_dir = opts_.runroot + "/pods/" + rec.id;
    rec.ns_dir = opts_.runroot + "/ns/" + rec.id;
    const log::Fields fields{{"POD_ID", rec.id}};
    try {
        // The record first, so that a crash from here on is undone at the next start.
        save(rec);
        try {
            if (!config.cgroup_parent.empty())
                with_context("creating the pod's slice " + config.cgroup_parent,
                             [&] { rec.slice_owned = systemd_.ensure_slice(config.cgroup_parent); });
            if (rec.slice_owned) save(rec);  // so that a crash from here on stops it too

            std::error_code ec;
            fs::create_directories(rec.run_dir, ec);
            if (ec) throw sys_error("creating " + rec.run_dir, ec.value());

            NamespaceSpec ns;
            ns.dir = rec.ns_dir;
            ns.net = !config.host_network();
            ns.ipc = !config.host_ipc();
            ns.uts = !config.host_network();  // host-network pods keep the node's hostname
            ns.hostname = config.hostname.empty() ? md.name.substr(0, 63) : config.hostname;
            for (const auto& [name, value] : config.sysctls)
                ns.sysctls.emplace_back(classify_sysctl(name).first, value);
            // Recorded (and saved) before they exist, so that a failure below
            // or a crash (teardown at the next start) removes them.
            rec.netns = ns.net ? rec.ns_dir + "/net" : "";
            rec.ipcns = ns.ipc ? rec.ns_dir + "/ipc" : "";
            rec.utsns = ns.uts ? rec.ns_dir + "/uts" : "";
            rec.shm = config.host_ipc() ? "" : rec.run_dir + "/shm";
            save(rec);
            if (ns.net || ns.ipc || ns.uts) create_namespaces(ns);
            if (!rec.shm.empty()) mount_shm(rec.shm, opts_.shm_size);

            // resolv.conf and hostname do not depend on the network.
            if (config.dns.empty()) {
                write_file_atomic(rec.resolv_conf(),
                                  read_file_if_exists(opts_.host_etc + "/resolv.conf").value_or(""), 0644,
                                  false);
            } else {
                write_file_atomic(rec.resolv_conf(), render_resolv_conf(config.dns), 0644, false);
            }
            const std::string hostname = config.host_network() ? node_hostname() : ns.hostname;
            write_file_atomic(rec.hostname_file(), hostname + "\n", 0644, false);

            if (!config.host_network()) {
                rec.network_attached = true;  // from here on, a failure runs DEL
                save(rec);
                rec.ips = network_.attach(rec.pod_network());
            }
            if (config.host_network()) {
                write_file_atomic(
                    rec.hosts(),
                    read_file_if_exists(opts_.host_etc + "/hosts").value_or(render_hosts(hostname, {})),
                    0644, false);
            } else {
                write_file_atomic(rec.hosts(), render_hosts(hostname, rec.ips), 0644, false);
            }
            if (config.pid == NamespaceMode::Pod) {
                // PID 1 of the PID namespace the pod's containers share.
                rec.infra.id = rec.id;
                rec.infra.bundle = rec.run_dir + "/infra";
                save(rec);  // recorded before it exists: a failure below or a crash removes it
                with_context("starting the infra container", [&] { infra_->start(rec, h, [&] { save(rec); }); });
            }
            rec.state = PodState::Ready;
            rec.creating = false;
            save(rec);
        } catch (...) {  // whatever failed, nothing half-made stays
            try {
                teardown(rec);
            } catch (const std::exception& e) {
                spdlog::error("cleaning up after a failed RunPodSandbox of {}/{}: {}", md.ns, md.name,
                              e.what());
            }
            throw;
        }
    } catch (const Error& e) {
        const Error wrapped = e.wrap("running pod sandbox " + md.ns + "/" + md.name);
        names_.finish(key, std::make_exception_ptr(wrapped), false);
        throw wrapped;
    } catch (...) {  // a retry waiting on the name gets the same failure
        names_.finish(key, std::current_exception(), false);
        throw;
    }
    auto pod = std::make_shared<Pod>();
    pod->rec = rec;
    {
        std::lock_guard lock(mu_);
        pods_[rec.id] = pod;
    }
    names_.finish(key, nullptr, caller.gone());
    spdlog::info("pod {} ({}/{}) is ready{}", rec.id, md.ns, md.name,
                 rec.ips.empty() ? "" : " with IP " + rec.ips.front());
    emit(PodEvent::Type::Created, rec);
    emit(PodEvent::Type::Started, rec);
    if (rec.infra.present()) check_infra(rec.id);  // an exit before the pod was listed
    return rec.id;
}

void PodManager::stop_locked(Pod& pod) {
    PodRecord rec = pod.snapshot();
    const log::Fields fields{{"POD_ID", rec.id}};
    if (hooks_.stop) with_context("stopping the containers of pod " + rec.id, [&] { hooks_.stop(rec); });
    // The infra container after the containers that share its PID namespace.
    // Its exit is this stop's doing; if the stop fails after it, the check
    // at the end still takes the pod's readiness away.
    struct Stopping {
        PodManager& self;
        Pod& pod;
        Stopping(PodManager& s, Pod& p) : self(s), pod(p) {
            std::lock_guard lock(pod.mu);
            pod.stopping = true;
        }
        ~Stopping() {
            {
                std::lock_guard lock(pod.mu);
                pod.stopping = false;
            }
            try {
                self.check_infra(pod.snapshot().id);
            } catch (const std::exception& e) {
                spdlog::error("checking the infra container of pod {}: {}", pod.snapshot().id, e.what());
            }
        }
    };
    std::optional<Stopping> stopping;
    if (rec.infra.present()) {
        stopping.emplace(*this, pod);
        with_context("stopping the infra container of pod " + rec.id,
                     [&] { infra_->stop(rec, opts_.infra_stop_timeout); });
    }
    if (rec.state == PodState::NotReady && !rec.network_attached) return;
    if (rec.network_attached) {
        with_context("stopping pod sandbox " + rec.id,
                     [&] { network_.detach(rec.pod_network()); });
    }
    bool was_ready = false;
    std::lock_guard saving(pod.save_mu);
    {
        std::lock_guard lock(pod.mu);
        was_ready = pod.rec.state == PodState::Ready;
        pod.rec.network_attached = false;
        pod.rec.ips.clear();
        pod.rec.state = PodState::NotReady;
        rec = pod.rec;
    }
    save(rec);
    spdlog::info("pod {} ({}/{}) stopped", rec.id, rec.config.metadata.ns, rec.config.metadata.name);
    // Once per Ready -> NotReady: an infra container that ended said it already.
    if (was_ready) emit(PodEvent::Type::Stopped, rec);
}

void PodManager::stop(const std::string& id) {
    std::shared_ptr<Pod> pod;
    try {
        pod = find(id);
    } catch (const Error& e) {
        // api.proto: StopPodSandbox "must not return an error if all relevant
        // resources have already been reclaimed" (CRI-O answers OK too).
        if (e.code() != Code::NotFound) throw;
        spdlog::debug("StopPodSandbox of {}: no such pod; stopped already", id);
        return;
    }
    std::lock_guard op(pod->op);
    {
        std::lock_guard lock(pod->mu);
        if (pod->removed) return;
    }
    stop_locked(*pod);
}

void PodManager::remove(const std::string& id) {
    std::shared_ptr<Pod> pod;
    try {
        pod = find(id);
    } catch (const Error& e) {
        if (e.code() == Code::NotFound) return;  // removed already: not an error (CRI)
        throw;
    }
    std::lock_guard op(pod->op);
    {
        std::lock_guard lock(pod->mu);
        if (pod->removed) return;
    }
    stop_locked(*pod);
    PodRecord rec = pod->snapshot();
    const log::Fields fields{{"POD_ID", rec.id}};
    if (hooks_.remove)
        with_context("removing the containers of pod " + rec.id, [&] { hooks_.remove(rec); });
    with_context("removing pod sandbox " + rec.id, [&] { teardown(rec); });
    {
        std::lock_guard lock(pod->mu);
        pod->removed = true;
    }
    {
        std::lock_guard lock(mu_);
        pods_.erase(rec.id);
    }
    names_.release(reservation_key(rec.config.metadata));
    spdlog::info("pod {} ({}/{}) removed", rec.id, rec.config.metadata.ns, rec.config.metadata.name);
    emit(PodEvent::Type::Deleted, rec);
}

void PodManager::teardown(PodRecord& rec) {
    // Every step runs even when one before it failed; the first error is
    // reported and the record stays for a retry.
    std::optional<Error> first;
    auto step = [&](auto&& fn) {
        try {
            fn();
        } catch (const Error& e) {
            spdlog::warn("pod {}: {}", rec.id, e.what());
            if (!first) first = e;
        }
    };
    if (rec.infra.present()) {
        step([&] { infra_->remove(rec); });
        if (!first) rec.infra = InfraRecord{};
    }
    if (!rec.netns.empty() && rec.network_attached) {
        step([&] { network_.detach(rec.pod_network()); });
        if (!first) rec.network_attached = false;
    }
    // The paths the record names, and the ones a pod can have whatever its
    // record says (a record written by an older crisd that died between the
    // mounts and the next save names none): a path never mounted, or never
    // made, is fine.
    std::set<std::string> shm{rec.shm}, nsfiles{rec.netns, rec.ipcns, rec.utsns};
    if (!rec.run_dir.empty()) shm.insert(rec.run_dir + "/shm");
    if (!rec.ns_dir.empty())
        for (const char* kind : {"net", "ipc", "uts"}) nsfiles.insert(rec.ns_dir + "/" + kind);
    for (const auto& p : shm)
        if (!p.empty()) step([&] { remove_mount(p, true); });
    for (const auto& p : nsfiles)
        if (!p.empty()) step([&] { remove_mount(p, false); });
    if (!rec.ns_dir.empty()) {
        step([&] {
            if (::rmdir(rec.ns_dir.c_str()) != 0 && errno != ENOENT) throw_errno("removing " + rec.ns_dir);
        });
    }
    // A slice crisd created for this pod (no kubelet made it): nothing else
    // stops it. Never while anything still runs in it (another pod, one
    // being made, a nested slice).
    if (rec.slice_owned) {
        step([&] {
            if (systemd_.stop_slice_if_empty(rec.slice)) spdlog::info("pod {}: stopped its slice {}", rec.id, rec.slice);
        });
        if (!first) rec.slice_owned = false;
    }
    if (first) {
        try {
            save(rec);
        } catch (const Error& e) {
            spdlog::warn("{}", e.what());
        }
        throw *first;
    }
    // Only plain files are left in the run dir now (resolv.conf, hosts, hostname).
    std::error_code ec;
    fs::remove_all(rec.run_dir, ec);
    if (ec) throw sys_error("removing " + rec.run_dir, ec.value());
    if (::unlink(record_path(rec.id).c_str()) != 0 && errno != ENOENT)
        throw_errno("removing " + record_path(rec.id));
}

void PodManager::with_ready_pod(const std::string& id, const std::function<void(const PodRecord&)>& fn,
                                const Caller& caller) {
    auto pod = find(id);
    std::unique_lock op(pod->op, std::defer_lock);
    while (!op.try_lock_for(std::chrono::milliseconds(100)))
        caller.check("waiting for pod sandbox " + id + ", which another request is working on");
    const PodRecord rec = pod->snapshot();
    {
        std::lock_guard lock(pod->mu);
        if (pod->removed) throw Error(Code::NotFound, "pod sandbox \"" + id + "\" not found");
    }
    if (rec.state != PodState::Ready)
        throw Error(Code::FailedPrecondition, "pod sandbox " + rec.id + " is not ready");
    fn(rec);
}

void PodManager::set_hooks(Hooks hooks) { hooks_ = std::move(hooks); }

PodRecord PodManager::status(const std::string& id) const { return find(id)->snapshot(); }

std::vector<PodRecord> PodManager::list(const PodFilter& filter) const {
    std::vector<std::shared_ptr<Pod>> pods;
    {
        std::lock_guard lock(mu_);
        pods.reserve(pods_.size());
        for (const auto& [id, pod] : pods_)
            if (filter.id.empty() || id.compare(0, filter.id.size(), filter.id) == 0)
                pods.push_back(pod);
    }
    std::vector<PodRecord> out;
    for (const auto& pod : pods) {
        auto rec = pod->snapshot();
        if (matches(filter, rec)) out.push_back(std::move(rec));
    }
    return out;
}

std::size_t PodManager::count() const {
    std::lock_guard lock(mu_);
    return pods_.size();
}

void PodManager::set_on_change(std::function<void()> fn) {
    std::lock_guard lock(listeners_mu_);
    on_change_ = std::move(fn);
}

std::shared_ptr<PodEvents> PodManager::subscribe() { return events_.subscribe(); }

void PodManager::emit(PodEvent::Type type, const PodRecord& r) {
    const PodEvent event{type, now_unix_ns(), r};
    // Under the lock, so that set_on_change(nullptr) returns only when no
    // call to the old function is running.
    std::lock_guard lock(listeners_mu_);
    events_.publish(event);
    if (on_change_) on_change_();
}

}  // namespace crisd::runtime
