#include "network/network.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>

#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "common/files.hpp"
#include "log/log.hpp"
#include "network/cni.hpp"

namespace crisd::network {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr unsigned long kNsfsMagic = 0x6e736673;  // NSFS_MAGIC: a namespace file

const char* const kLoopbackConf =
    R"({"cniVersion":"1.0.0","name":"cni-loopback","plugins":[{"type":"loopback"}]})";

std::optional<json> read_json(const std::string& path) {
    const auto text = read_file_if_exists(path);
    if (!text) return std::nullopt;
    try {
        return json::parse(*text);
    } catch (const json::exception& e) {
        spdlog::warn("ignoring the unreadable CNI cache file {}: {}", path, e.what());
        return std::nullopt;
    }
}

cni::Attachment attachment_for(const PodNetwork& pod) {
    cni::Attachment att;
    att.container_id = pod.pod_id;
    att.netns = pod.netns;
    att.ifname = "eth0";
    att.args = {{"IgnoreUnknown", "1"},
                {"K8S_POD_NAMESPACE", pod.ns},
                {"K8S_POD_NAME", pod.name},
                {"K8S_POD_INFRA_CONTAINER_ID", pod.pod_id},
                {"K8S_POD_UID", pod.uid}};
    json ports = json::array();
    for (const auto& p : pod.port_mappings) {
        if (p.host_port <= 0) continue;  // only hostPort mappings reach portmap
        json m = {{"hostPort", p.host_port},
                  {"containerPort", p.container_port},
                  {"protocol", p.protocol}};
        if (!p.host_ip.empty()) m["hostIP"] = p.host_ip;
        ports.push_back(m);
    }
    if (!ports.empty()) att.capability_args["portMappings"] = ports;
    return att;
}

json attachment_json(const cni::Attachment& att) {
    return {{"containerId", att.container_id},
            {"netns", att.netns},
            {"ifName", att.ifname},
            {"args", att.args},
            {"capabilityArgs", att.capability_args}};
}

cni::Attachment attachment_from(const json& j) {
    cni::Attachment att;
    att.container_id = j.at("containerId").get<std::string>();
    att.netns = j.at("netns").get<std::string>();
    att.ifname = j.at("ifName").get<std::string>();
    att.args = j.at("args").get<std::vector<std::pair<std::string, std::string>>>();
    att.capability_args = j.at("capabilityArgs");
    return att;
}

// ADD through every plugin of the list, chaining prevResult. On failure the
// plugins are DELeted in reverse order and the error rethrown.
json add_list(const cni::ConfigList& list, const cni::Attachment& att, cni::Invocation inv) {
    json result = nullptr;
    inv.command = "ADD";
    try {
        for (const auto& plugin : list.plugins) result = cni::invoke(list, plugin, att, inv, result);
    } catch (const Error&) {
        cni::Invocation del = inv;
        del.command = "DEL";
        for (auto it = list.plugins.rbegin(); it != list.plugins.rend(); ++it) {
            try {
                cni::invoke(list, *it, att, del, result);
            } catch (const Error& e) {
                spdlog::warn("rolling back a failed CNI ADD: {}", e.what());
            }
        }
        throw;
    }
    return result;
}

void del_list(const cni::ConfigList& list, const cni::Attachment& att, cni::Invocation inv,
              const json& prev) {
    inv.command = "DEL";
    const json prev_result = cni::version_has_check(list.cni_version) ? prev : json(nullptr);
    for (auto it = list.plugins.rbegin(); it != list.plugins.rend(); ++it)
        cni::invoke(list, *it, att, inv, prev_result);
}

}  // namespace

struct Network::Loaded {
    std::optional<cni::ConfigList> list;
    Condition condition;
};

Network::Network(const config::Config::Network& cfg, std::string state_dir)
    : cfg_(cfg), state_dir_(std::move(state_dir)) {
    std::error_code ec;
    fs::create_directories(state_dir_ + "/results", ec);
    if (ec) throw sys_error("creating " + state_dir_ + "/results", ec.value());
    reload();
}

Network::~Network() {
    if (watcher_.joinable()) {
        const std::uint64_t one = 1;
        if (::write(stop_.get(), &one, sizeof one) < 0) spdlog::warn("stopping the CNI watcher failed");
        watcher_.join();
    }
}

void Network::reload() {
    auto loaded = std::make_shared<Loaded>();
    std::vector<std::string> problems;
    auto lists = cni::load_dir(cfg_.network_dir, problems);
    for (const auto& p : problems) spdlog::warn("CNI config skipped: {}", p);
    const cni::ConfigList* chosen = nullptr;
    for (const auto& l : lists) {
        if (cfg_.cni_default_network.empty() || l.name == cfg_.cni_default_network) {
            chosen = &l;
            break;
        }
    }
    loaded->condition = {"NetworkReady", false, "NetworkPluginNotReady", ""};
    if (!chosen) {
        loaded->condition.message =
            cfg_.cni_default_network.empty()
                ? "no valid CNI network config in " + cfg_.network_dir
                : "no CNI network named \"" + cfg_.cni_default_network + "\" in " + cfg_.network_dir;
        if (!problems.empty()) loaded->condition.message += " (" + problems.front() + ")";
    } else {
        std::string missing;
        for (const auto& p : chosen->plugins) {
            const auto type = p["type"].get<std::string>();
            if (cni::find_plugin(type, cfg_.plugin_dirs).empty())
                missing += (missing.empty() ? "" : ", ") + type;
        }
        if (cni::find_plugin("loopback", cfg_.plugin_dirs).empty())
            missing += std::string(missing.empty() ? "" : ", ") + "loopback";
        if (!missing.empty()) {
            loaded->condition.message = "CNI network \"" + chosen->name + "\" (" + chosen->file +
                                        ") needs plugins that are not installed: " + missing;
        } else {
            loaded->condition = {"NetworkReady", true, "", ""};
            loaded->list = *chosen;
        }
    }
    std::lock_guard lock(mu_);
    const bool was_ready = loaded_ && loaded_->condition.status;
    const std::string old_name = loaded_ && loaded_->list ? loaded_->list->name : "";
    if (loaded->condition.status && (!was_ready || old_name != loaded->list->name))
        spdlog::info("CNI network \"{}\" from {} is in use", loaded->list->name, loaded->list->file);
    else if (!loaded->condition.status && (was_ready || !loaded_))
        spdlog::warn("network not ready: {}", loaded->condition.message);
    loaded_ = std::move(loaded);
}

void Network::watch() {
    std::error_code ec;
    fs::create_directories(cfg_.network_dir, ec);
    if (ec) throw sys_error("creating the CNI config directory " + cfg_.network_dir, ec.value());
    inotify_.reset(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
    if (!inotify_) throw_errno("inotify_init1");
    if (::inotify_add_watch(inotify_.get(), cfg_.network_dir.c_str(),
                            IN_CREATE | IN_DELETE | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM |
                                IN_MODIFY | IN_DELETE_SELF | IN_MOVE_SELF) < 0)
        throw_errno("watching " + cfg_.network_dir);
    stop_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!stop_) throw_errno("eventfd");
    reload();  // what changed before the watch started
    watcher_ = std::thread([this] { watch_loop(); });
}

void Network::watch_loop() {
    pollfd fds[2] = {{inotify_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    for (;;) {
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            spdlog::error("CNI config watch: {}", std::strerror(errno));
            return;
        }
        if (fds[1].revents) return;
        char buf[4096];
        while (::read(inotify_.get(), buf, sizeof buf) > 0) {
        }
        // Editors write in steps; let a burst of events settle before reading.
        ::poll(nullptr, 0, 50);
        while (::read(inotify_.get(), buf, sizeof buf) > 0) {
        }
        try {
            reload();
        } catch (const std::exception& e) {
            spdlog::error("reloading CNI config: {}", e.what());
        }
    }
}

Condition Network::readiness() const {
    std::lock_guard lock(mu_);
    return loaded_->condition;
}

std::string Network::network_name() const {
    std::lock_guard lock(mu_);
    return loaded_->list ? loaded_->list->name : "";
}

std::string Network::cache_path(const std::string& pod_id) const {
    if (pod_id.empty() || pod_id.find('/') != std::string::npos || pod_id[0] == '.')
        throw Error(Code::InvalidArgument, "invalid pod sandbox id \"" + pod_id + "\"");
    return state_dir_ + "/results/" + pod_id + ".json";
}

std::vector<std::string> Network::attach(const PodNetwork& pod) {
    const log::Fields fields{{"POD_ID", pod.pod_id}};
    std::shared_ptr<const Loaded> loaded;
    {
        std::lock_guard lock(mu_);
        loaded = loaded_;
    }
    if (!loaded->list)
        throw Error(Code::FailedPrecondition, "pod network not ready: " + loaded->condition.message);
    const cni::ConfigList& list = *loaded->list;
    const std::string cache = cache_path(pod.pod_id);
    const cni::Invocation inv{"ADD", cfg_.plugin_dirs,
                              std::chrono::seconds(cfg_.plugin_timeout)};

    // The pod's loopback first, as every runtime does.
    cni::Attachment lo = attachment_for(pod);
    lo.ifname = "lo";
    lo.capability_args = json::object();
    add_list(cni::ConfigList::parse(kLoopbackConf, "", false), lo, inv);

    const cni::Attachment att = attachment_for(pod);
    json result;
    try {
        result = add_list(list, att, inv);
    } catch (const Error& e) {
        throw e.wrap("setting up the network of pod " + pod.ns + "/" + pod.name);
    }
    // Cached before anything else can fail, so that DEL finds it.
    const json record = {{"kind", "crisdCniCacheV1"},
                         {"configFile", list.file},
                         {"config", list.raw},
                         {"attachment", attachment_json(att)},
                         {"result", result}};
    try {
        write_file_atomic(cache, record.dump());
    } catch (const Error& e) {
        try {
            del_list(list, att, inv, result);
        } catch (const Error& d) {
            spdlog::warn("rolling back CNI ADD after a cache failure: {}", d.what());
        }
        throw e.wrap("caching the CNI result of pod " + pod.ns + "/" + pod.name);
    }
    auto ips = cni::result_ips(result);
    std::string shown;
    for (const auto& ip : ips) shown += (shown.empty() ? "" : ", ") + ip;
    spdlog::info("pod {}/{} attached to CNI network {} with IPs {}", pod.ns, pod.name, list.name,
                 shown);
    return ips;
}

void Network::check(const PodNetwork& pod) {
    const auto record = read_json(cache_path(pod.pod_id));
    if (!record) throw Error(Code::NotFound, "pod " + pod.pod_id + " has no CNI attachment");
    const auto list = cni::ConfigList::from_json(record->at("config"), record->value("configFile", ""));
    if (!cni::version_has_check(list.cni_version) || list.disable_check) return;
    const cni::Attachment att = attachment_from(record->at("attachment"));
    cni::Invocation inv{"CHECK", cfg_.plugin_dirs, std::chrono::seconds(cfg_.plugin_timeout)};
    for (const auto& plugin : list.plugins) cni::invoke(list, plugin, att, inv, record->at("result"));
}

void Network::detach(const PodNetwork& pod) {
    const log::Fields fields{{"POD_ID", pod.pod_id}};
    const std::string cache = cache_path(pod.pod_id);
    const auto record = read_json(cache);
    if (!record) return;  // never attached, or already detached
    const auto list = cni::ConfigList::from_json(record->at("config"), record->value("configFile", ""));
    cni::Attachment att = attachment_from(record->at("attachment"));
    // Gone: no path, no file, or a file that no longer holds a namespace (its
    // bind mount was undone; plugins fail on it with "unknown FS magic").
    struct statfs fs {};
    const bool netns_gone = att.netns.empty() || ::statfs(att.netns.c_str(), &fs) != 0 ||
                            static_cast<unsigned long>(fs.f_type) != kNsfsMagic;
    if (netns_gone) att.netns.clear();  // plugins clean up host-side state without it
    cni::Invocation inv{"DEL", cfg_.plugin_dirs, std::chrono::seconds(cfg_.plugin_timeout)};
    try {
        del_list(list, att, inv, record->at("result"));
    } catch (const Error& e) {
        if (!netns_gone) throw e.wrap("tearing down the network of pod " + pod.ns + "/" + pod.name);
        spdlog::warn("CNI DEL for pod {} without its network namespace: {}", pod.pod_id, e.what());
    }
    if (::unlink(cache.c_str()) != 0 && errno != ENOENT) throw_errno("removing " + cache);
    spdlog::info("pod {}/{} detached from CNI network {}", pod.ns, pod.name, list.name);
}

std::vector<std::string> Network::pod_ips(const std::string& pod_id) const {
    const auto record = read_json(cache_path(pod_id));
    if (!record || !record->contains("result")) return {};
    return cni::result_ips(record->at("result"));
}

}  // namespace crisd::network
