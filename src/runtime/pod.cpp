#include "runtime/pod.hpp"

#include <algorithm>

#include "common/error.hpp"

namespace crisd::runtime {
namespace {

using json = nlohmann::json;

const char* mode_name(NamespaceMode m) {
    switch (m) {
    case NamespaceMode::Pod: return "POD";
    case NamespaceMode::Container: return "CONTAINER";
    case NamespaceMode::Node: return "NODE";
    case NamespaceMode::Target: return "TARGET";
    }
    return "POD";
}

NamespaceMode mode_from(const std::string& s) {
    if (s == "POD") return NamespaceMode::Pod;
    if (s == "CONTAINER") return NamespaceMode::Container;
    if (s == "NODE") return NamespaceMode::Node;
    if (s == "TARGET") return NamespaceMode::Target;
    throw Error(Code::DataLoss, "unknown namespace mode \"" + s + "\"");
}

bool starts_with(const std::string& s, const std::string& prefix) {
    return s.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

network::PodNetwork PodRecord::pod_network() const {
    network::PodNetwork n;
    n.pod_id = id;
    n.name = config.metadata.name;
    n.ns = config.metadata.ns;
    n.uid = config.metadata.uid;
    n.netns = netns;
    n.port_mappings = config.port_mappings;
    return n;
}

json to_json(const PodRecord& r) {
    const auto& c = r.config;
    json ports = json::array();
    for (const auto& p : c.port_mappings)
        ports.push_back({{"protocol", p.protocol},
                         {"containerPort", p.container_port},
                         {"hostPort", p.host_port},
                         {"hostIP", p.host_ip}});
    return {
        {"kind", "crisdPodV1"},
        {"id", r.id},
        {"state", r.state == PodState::Ready ? "SANDBOX_READY" : "SANDBOX_NOTREADY"},
        {"creating", r.creating},
        {"createdAt", r.created_at},
        {"runtimeHandler", r.runtime_handler},
        {"slice", r.slice},
        {"sliceOwned", r.slice_owned},
        {"runDir", r.run_dir},
        {"nsDir", r.ns_dir},
        {"netns", r.netns},
        {"ipcns", r.ipcns},
        {"utsns", r.utsns},
        {"shm", r.shm},
        {"networkAttached", r.network_attached},
        {"ips", r.ips},
        {"infra",
         {{"id", r.infra.id},
          {"bundle", r.infra.bundle},
          {"runtimePath", r.infra.runtime_path},
          {"runtimeRoot", r.infra.runtime_root},
          {"pid", r.infra.pid},
          {"monitorPid", r.infra.monitor_pid},
          {"startedAt", r.infra.started_at}}},
        {"config",
         {{"metadata",
           {{"name", c.metadata.name},
            {"uid", c.metadata.uid},
            {"namespace", c.metadata.ns},
            {"attempt", c.metadata.attempt}}},
          {"hostname", c.hostname},
          {"logDirectory", c.log_directory},
          {"dns", {{"servers", c.dns.servers}, {"searches", c.dns.searches}, {"options", c.dns.options}}},
          {"portMappings", ports},
          {"labels", c.labels},
          {"annotations", c.annotations},
          {"cgroupParent", c.cgroup_parent},
          {"sysctls", c.sysctls},
          {"namespaces",
           {{"network", mode_name(c.network)}, {"pid", mode_name(c.pid)}, {"ipc", mode_name(c.ipc)}}},
          {"privileged", c.privileged},
          {"runtimeHandler", c.runtime_handler}}},
    };
}

PodRecord record_from_json(const json& j) {
    try {
        if (j.value("kind", "") != "crisdPodV1")
            throw Error(Code::DataLoss, "not a crisd pod record (kind \"" + j.value("kind", "") + "\")");
        PodRecord r;
        r.id = j.at("id").get<std::string>();
        const auto state = j.at("state").get<std::string>();
        if (state != "SANDBOX_READY" && state != "SANDBOX_NOTREADY")
            throw Error(Code::DataLoss, "unknown pod state \"" + state + "\"");
        r.state = state == "SANDBOX_READY" ? PodState::Ready : PodState::NotReady;
        r.creating = j.at("creating").get<bool>();
        r.created_at = j.at("createdAt").get<std::int64_t>();
        r.runtime_handler = j.at("runtimeHandler").get<std::string>();
        r.slice = j.at("slice").get<std::string>();
        r.slice_owned = j.value("sliceOwned", false);  // absent in records of older crisd
        r.run_dir = j.at("runDir").get<std::string>();
        r.ns_dir = j.at("nsDir").get<std::string>();
        r.netns = j.at("netns").get<std::string>();
        r.ipcns = j.at("ipcns").get<std::string>();
        r.utsns = j.at("utsns").get<std::string>();
        r.shm = j.at("shm").get<std::string>();
        r.network_attached = j.at("networkAttached").get<bool>();
        r.ips = j.at("ips").get<std::vector<std::string>>();
        if (const auto it = j.find("infra"); it != j.end()) {  // records before infra containers have none
            const auto& in = *it;
            r.infra.id = in.at("id").get<std::string>();
            r.infra.bundle = in.at("bundle").get<std::string>();
            r.infra.runtime_path = in.at("runtimePath").get<std::string>();
            r.infra.runtime_root = in.at("runtimeRoot").get<std::string>();
            r.infra.pid = in.at("pid").get<std::int32_t>();
            r.infra.monitor_pid = in.at("monitorPid").get<std::int32_t>();
            r.infra.started_at = in.at("startedAt").get<std::int64_t>();
        }
        const auto& c = j.at("config");
        auto& pc = r.config;
        const auto& m = c.at("metadata");
        pc.metadata.name = m.at("name").get<std::string>();
        pc.metadata.uid = m.at("uid").get<std::string>();
        pc.metadata.ns = m.at("namespace").get<std::string>();
        pc.metadata.attempt = m.at("attempt").get<std::uint32_t>();
        pc.hostname = c.at("hostname").get<std::string>();
        pc.log_directory = c.at("logDirectory").get<std::string>();
        const auto& dns = c.at("dns");
        pc.dns.servers = dns.at("servers").get<std::vector<std::string>>();
        pc.dns.searches = dns.at("searches").get<std::vector<std::string>>();
        pc.dns.options = dns.at("options").get<std::vector<std::string>>();
        for (const auto& p : c.at("portMappings"))
            pc.port_mappings.push_back({p.at("protocol").get<std::string>(),
                                        p.at("containerPort").get<std::int32_t>(),
                                        p.at("hostPort").get<std::int32_t>(),
                                        p.at("hostIP").get<std::string>()});
        pc.labels = c.at("labels").get<std::map<std::string, std::string>>();
        pc.annotations = c.at("annotations").get<std::map<std::string, std::string>>();
        pc.cgroup_parent = c.at("cgroupParent").get<std::string>();
        pc.sysctls = c.at("sysctls").get<std::map<std::string, std::string>>();
        const auto& ns = c.at("namespaces");
        pc.network = mode_from(ns.at("network").get<std::string>());
        pc.pid = mode_from(ns.at("pid").get<std::string>());
        pc.ipc = mode_from(ns.at("ipc").get<std::string>());
        pc.privileged = c.at("privileged").get<bool>();
        pc.runtime_handler = c.at("runtimeHandler").get<std::string>();
        return r;
    } catch (const json::exception& e) {
        throw Error(Code::DataLoss, std::string("malformed pod record: ") + e.what());
    }
}

bool matches(const PodFilter& f, const PodRecord& r) {
    if (!f.id.empty() && !starts_with(r.id, f.id)) return false;
    if (f.state && *f.state != r.state) return false;
    for (const auto& [k, v] : f.label_selector) {
        const auto it = r.config.labels.find(k);
        if (it == r.config.labels.end() || it->second != v) return false;
    }
    return true;
}

std::string reservation_key(const PodMetadata& m) {
    return m.name + "_" + m.ns + "_" + m.uid + "_" + std::to_string(m.attempt);
}

std::string render_resolv_conf(const DnsConfig& dns) {
    std::string out;
    if (!dns.searches.empty()) {
        out += "search";
        for (const auto& s : dns.searches) out += " " + s;
        out += "\n";
    }
    for (const auto& s : dns.servers) out += "nameserver " + s + "\n";
    if (!dns.options.empty()) {
        out += "options";
        for (const auto& o : dns.options) out += " " + o;
        out += "\n";
    }
    return out;
}

std::string render_hosts(const std::string& hostname, const std::vector<std::string>& ips) {
    std::string out =
        "# Kubernetes-managed hosts file (written by crisd).\n"
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\n"
        "fe00::0\tip6-mcastprefix\n"
        "fe00::1\tip6-allnodes\n"
        "fe00::2\tip6-allrouters\n";
    if (!hostname.empty())
        for (const auto& ip : ips) out += ip + "\t" + hostname + "\n";
    return out;
}

std::pair<std::string, SysctlScope> classify_sysctl(const std::string& name) {
    if (name.empty() || name.front() == '.' || name.front() == '/' || name.back() == '.' ||
        name.back() == '/' || name.find("..") != std::string::npos)
        throw Error(Code::InvalidArgument, "invalid sysctl name \"" + name + "\"");
    // "net/ipv4/conf/eth0.100/forwarding" uses slashes as separators and keeps
    // dots inside a component; normalise to the dotted form with '/' for those.
    std::string dotted = name;
    if (name.find('/') != std::string::npos) {
        for (auto& c : dotted) {
            if (c == '.')
                c = '/';
            else if (c == '/')
                c = '.';
        }
    }
    if (starts_with(dotted, "net.")) return {dotted, SysctlScope::Network};
    if (dotted == "kernel.sem" || starts_with(dotted, "kernel.shm") ||
        starts_with(dotted, "kernel.msg") || starts_with(dotted, "fs.mqueue."))
        return {dotted, SysctlScope::Ipc};
    throw Error(Code::InvalidArgument,
                "sysctl \"" + name +
                    "\" is not namespaced: only net.*, kernel.shm*, kernel.msg*, kernel.sem and "
                    "fs.mqueue.* can be set for a pod");
}

std::string sysctl_path(const std::string& dotted) {
    std::string p = dotted;
    for (auto& c : p) {
        if (c == '.')
            c = '/';
        else if (c == '/')
            c = '.';
    }
    return "/proc/sys/" + p;
}

void check_sysctls(const PodConfig& config) {
    for (const auto& [name, value] : config.sysctls) {
        const auto [dotted, scope] = classify_sysctl(name);
        if (value.find('\n') != std::string::npos)
            throw Error(Code::InvalidArgument, "sysctl \"" + name + "\": the value has a newline");
        if (scope == SysctlScope::Network && config.host_network())
            throw Error(Code::InvalidArgument,
                        "sysctl \"" + name + "\" cannot be set for a pod on the host network");
        if (scope == SysctlScope::Ipc && config.host_ipc())
            throw Error(Code::InvalidArgument,
                        "sysctl \"" + name + "\" cannot be set for a pod that uses the host IPC namespace");
    }
}

NameRegistry::Claim NameRegistry::reserve(const std::string& key, const std::string& new_id, const Caller& caller) {
    std::unique_lock lock(mu_);
    for (;;) {
        const auto it = entries_.find(key);
        if (it == entries_.end()) {
            auto flight = std::make_shared<Flight>();
            flight->id = new_id;
            entries_[key] = Entry{new_id, flight, false};
            return {true, new_id};
        }
        if (auto flight = it->second.flight) {
            // A retry while the first request still creates it: wait for its
            // result, as long as our own caller waits (cancellation is
            // polled: a gRPC call has no callback for it here).
            ++flight->waiters;
            while (!flight->done) {
                if (caller.gone()) {
                    --flight->waiters;
                    caller.check("waiting for the " + kind_ + " \"" + key + "\" that an earlier request is creating"
                                 " (it goes on; a later retry gets it)");
                }
                const auto next = std::chrono::system_clock::now() + std::chrono::milliseconds(100);
                cv_.wait_until(lock, std::min(next, caller.deadline));
            }
            if (flight->abandoned) continue;  // free again: reserve it ourselves
            if (flight->error) std::rethrow_exception(flight->error);
            return {false, flight->id};
        }
        if (it->second.unclaimed) {
            it->second.unclaimed = false;
            return {false, it->second.id};
        }
        throw Error(Code::AlreadyExists,
                    "the " + kind_ + " name \"" + key + "\" is already reserved for " + it->second.id);
    }
}

void NameRegistry::finish(const std::string& key, std::exception_ptr error, bool unclaimed) {
    std::lock_guard lock(mu_);
    const auto it = entries_.find(key);
    if (it == entries_.end() || !it->second.flight) return;
    auto flight = it->second.flight;
    flight->done = true;
    flight->error = error;
    if (error) {
        entries_.erase(it);
    } else {
        it->second.flight.reset();
        // A retry that waited for this creation got it already.
        it->second.unclaimed = unclaimed && flight->waiters == 0;
    }
    cv_.notify_all();
}

void NameRegistry::abandon(const std::string& key) {
    std::lock_guard lock(mu_);
    const auto it = entries_.find(key);
    if (it == entries_.end() || !it->second.flight) return;
    it->second.flight->done = true;
    it->second.flight->abandoned = true;
    entries_.erase(it);
    cv_.notify_all();
}

void NameRegistry::release(const std::string& key) {
    std::lock_guard lock(mu_);
    const auto it = entries_.find(key);
    if (it != entries_.end() && !it->second.flight) entries_.erase(it);
}

void NameRegistry::restore(const std::string& key, const std::string& id) {
    std::lock_guard lock(mu_);
    entries_[key] = Entry{id, nullptr, false};
}

}  // namespace crisd::runtime
