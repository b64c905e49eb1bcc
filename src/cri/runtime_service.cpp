// CRI RuntimeService handlers.
#include <chrono>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cri_api.hpp"
#include "crisd_build.hpp"
#include "common/caller.hpp"
#include "common/ids.hpp"
#include "cri/call.hpp"
#include "cri/cri.hpp"
#include "network/network.hpp"
#include "monitor/monitor.hpp"
#include "runtime/containers.hpp"
#include "runtime/handlers.hpp"
#include "runtime/pods.hpp"
#include "runtime/status.hpp"
#include "stream/stream.hpp"

namespace crisd::cri {
namespace {

namespace v1 = ::runtime::v1;
using grpc::ServerContext;


// The client of a call as the services see it: cancellation and deadline.
Caller caller_of(ServerContext* ctx) { return {[ctx] { return ctx->IsCancelled(); }, ctx->deadline()}; }

// ---- proto <-> runtime types (translation only) ----

runtime::NamespaceMode mode_of(v1::NamespaceMode m) {
    switch (m) {
    case v1::POD: return runtime::NamespaceMode::Pod;
    case v1::CONTAINER: return runtime::NamespaceMode::Container;
    case v1::NODE: return runtime::NamespaceMode::Node;
    case v1::TARGET: return runtime::NamespaceMode::Target;
    default: throw Error(Code::InvalidArgument, "unknown namespace mode " + std::to_string(m));
    }
}

v1::NamespaceMode proto_mode(runtime::NamespaceMode m) { return static_cast<v1::NamespaceMode>(m); }

std::string protocol_name(v1::Protocol p) {
    switch (p) {
    case v1::TCP: return "tcp";
    case v1::UDP: return "udp";
    case v1::SCTP: return "sctp";
    default: throw Error(Code::InvalidArgument, "unknown port mapping protocol " + std::to_string(p));
    }
}

runtime::PodConfig pod_config(const v1::PodSandboxConfig& in, const std::string& handler) {
    runtime::PodConfig c;
    c.metadata = {in.metadata().name(), in.metadata().uid(), in.metadata().namespace_(),
                  in.metadata().attempt()};
    c.hostname = in.hostname();
    c.log_directory = in.log_directory();
    c.dns.servers.assign(in.dns_config().servers().begin(), in.dns_config().servers().end());
    c.dns.searches.assign(in.dns_config().searches().begin(), in.dns_config().searches().end());
    c.dns.options.assign(in.dns_config().options().begin(), in.dns_config().options().end());
    for (const auto& p : in.port_mappings()) {
        if (p.container_port() <= 0 || p.container_port() > 65535 || p.host_port() < 0 ||
            p.host_port() > 65535)
            throw Error(Code::InvalidArgument, "port mapping " + std::to_string(p.host_port()) + ":" +
                                                   std::to_string(p.container_port()) + " is out of range");
        c.port_mappings.push_back(
            {protocol_name(p.protocol()), p.container_port(), p.host_port(), p.host_ip()});
    }
    c.labels.insert(in.labels().begin(), in.labels().end());
    c.annotations.insert(in.annotations().begin(), in.annotations().end());
    c.runtime_handler = handler;
    if (in.has_linux()) {
        const auto& l = in.linux();
        c.cgroup_parent = l.cgroup_parent();
        c.sysctls.insert(l.sysctls().begin(), l.sysctls().end());
        if (l.has_security_context()) {
            const auto& sc = l.security_context();
            c.privileged = sc.privileged();
            if (sc.has_namespace_options()) {
                const auto& ns = sc.namespace_options();
                c.network = mode_of(ns.network());
                c.pid = mode_of(ns.pid());
                c.ipc = mode_of(ns.ipc());
            }
        }
    }
    return c;
}

void fill_metadata(v1::PodSandboxMetadata* out, const runtime::PodMetadata& m) {
    out->set_name(m.name);
    out->set_uid(m.uid);
    out->set_namespace_(m.ns);
    out->set_attempt(m.attempt);
}

v1::PodSandboxState proto_state(runtime::PodState s) {
    return s == runtime::PodState::Ready ? v1::SANDBOX_READY : v1::SANDBOX_NOTREADY;
}

void fill_status(v1::PodSandboxStatus* out, const runtime::PodRecord& r) {
    out->set_id(r.id);
    fill_metadata(out->mutable_metadata(), r.config.metadata);
    out->set_state(proto_state(r.state));
    out->set_created_at(r.created_at);
    if (!r.ips.empty()) {
        auto* net = out->mutable_network();
        net->set_ip(r.ips.front());
        for (size_t i = 1; i < r.ips.size(); ++i) net->add_additional_ips()->set_ip(r.ips[i]);
    }
    auto* ns = out->mutable_linux()->mutable_namespaces()->mutable_options();
    ns->set_network(proto_mode(r.config.network));
    ns->set_pid(proto_mode(r.config.pid));
    ns->set_ipc(proto_mode(r.config.ipc));
    out->mutable_labels()->insert(r.config.labels.begin(), r.config.labels.end());
    out->mutable_annotations()->insert(r.config.annotations.begin(), r.config.annotations.end());
    out->set_runtime_handler(r.runtime_handler);
}


// ---- containers ----

// memory_swap_limit_in_bytes may be -1 (unlimited swap), the others not negative.
runtime::ContainerResources resources_of(const v1::LinuxContainerResources& r) {
    if (r.cpu_period() < 0 || r.cpu_quota() < 0 || r.cpu_shares() < 0 || r.memory_limit_in_bytes() < 0 ||
        r.memory_swap_limit_in_bytes() < -1)
        throw Error(Code::InvalidArgument, "negative resource value");
    runtime::ContainerResources c;
    c.cpu_period = r.cpu_period();
    c.cpu_quota = r.cpu_quota();
    c.cpu_shares = r.cpu_shares();
    c.memory_limit = r.memory_limit_in_bytes();
    c.oom_score_adj = r.oom_score_adj();
    c.cpuset_cpus = r.cpuset_cpus();
    c.cpuset_mems = r.cpuset_mems();
    c.memory_swap_limit = r.memory_swap_limit_in_bytes();
    for (const auto& h : r.hugepage_limits()) {
        if (h.page_size().empty()) throw Error(Code::InvalidArgument, "a hugepage limit without a page size");
        c.hugepage_limits[h.page_size()] = h.limit();
    }
    c.unified.insert(r.unified().begin(), r.unified().end());
    return c;
}

// The CRI's SecurityProfile, else the deprecated seccomp_profile_path.
runtime::SeccompRequest seccomp_of(const v1::LinuxContainerSecurityContext& sc) {
    if (!sc.has_seccomp()) {
        // Older kubelets send only the deprecated string.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
        return runtime::seccomp_from_path(sc.seccomp_profile_path());
#pragma GCC diagnostic pop
    }
    switch (sc.seccomp().profile_type()) {
    case v1::SecurityProfile::RuntimeDefault: return {runtime::SeccompKind::RuntimeDefault, ""};
    case v1::SecurityProfile::Unconfined: return {};
    case v1::SecurityProfile::Localhost: return runtime::seccomp_localhost(sc.seccomp().localhost_ref());
    default:
        throw Error(Code::InvalidArgument,
                    "unknown seccomp profile type " + std::to_string(sc.seccomp().profile_type()));
    }
}

runtime::ContainerConfig container_config(const v1::ContainerConfig& in) {
    runtime::ContainerConfig c;
    c.metadata = {in.metadata().name(), in.metadata().attempt()};
    c.image = in.image().image();
    c.command.assign(in.command().begin(), in.command().end());
    c.args.assign(in.args().begin(), in.args().end());
    c.working_dir = in.working_dir();
    for (const auto& kv : in.envs()) c.envs.emplace_back(kv.key(), kv.value());
    for (const auto& m : in.mounts()) {
        if (m.host_path().empty())
            throw Error(Code::InvalidArgument, "mount " + m.container_path() + " has no host path");
        c.mounts.push_back({m.container_path(), m.host_path(), m.readonly(),
                            static_cast<runtime::Propagation>(m.propagation())});
    }
    for (const auto& d : in.devices())
        c.devices.push_back({d.container_path(), d.host_path(), d.permissions()});
    c.labels.insert(in.labels().begin(), in.labels().end());
    c.annotations.insert(in.annotations().begin(), in.annotations().end());
    c.log_path = in.log_path();
    c.stdin = in.stdin();
    c.stdin_once = in.stdin_once();
    c.tty = in.tty();
    if (in.stop_signal() != v1::RUNTIME_DEFAULT) c.stop_signal = v1::Signal_Name(in.stop_signal());
    if (in.has_linux()) {
        const auto& l = in.linux();
        if (l.has_resources()) c.resources = resources_of(l.resources());
        if (l.has_security_context()) {
            const auto& sc = l.security_context();
            c.privileged = sc.privileged();
            c.readonly_rootfs = sc.readonly_rootfs();
            c.no_new_privs = sc.no_new_privs();
            if (sc.has_run_as_user()) c.run_as_user = sc.run_as_user().value();
            c.run_as_username = sc.run_as_username();
            if (sc.has_run_as_group()) c.run_as_group = sc.run_as_group().value();
            c.supplemental_groups.assign(sc.supplemental_groups().begin(), sc.supplemental_groups().end());
            if (sc.has_capabilities()) {
                c.add_capabilities.assign(sc.capabilities().add_capabilities().begin(),
                                          sc.capabilities().add_capabilities().end());
                c.drop_capabilities.assign(sc.capabilities().drop_capabilities().begin(),
                                           sc.capabilities().drop_capabilities().end());
            }
            c.masked_paths.assign(sc.masked_paths().begin(), sc.masked_paths().end());
            c.readonly_paths.assign(sc.readonly_paths().begin(), sc.readonly_paths().end());
            if (sc.has_namespace_options()) {
                c.pid = mode_of(sc.namespace_options().pid());
                c.pid_target = sc.namespace_options().target_id();
            }
            c.seccomp = seccomp_of(sc);
        }
    }
    return c;
}

v1::ContainerState proto_state(runtime::ContainerState s) { return static_cast<v1::ContainerState>(s); }

void fill_container(v1::Container* out, const runtime::ContainerRecord& r) {
    out->set_id(r.id);
    out->set_pod_sandbox_id(r.pod_id);
    out->mutable_metadata()->set_name(r.config.metadata.name);
    out->mutable_metadata()->set_attempt(r.config.metadata.attempt);
    out->mutable_image()->set_image(r.config.image);
    out->set_image_ref(r.image_ref);
    out->set_image_id(r.image_id);
    out->set_state(proto_state(r.state));
    out->set_created_at(r.created_at);
    out->mutable_labels()->insert(r.config.labels.begin(), r.config.labels.end());
    out->mutable_annotations()->insert(r.config.annotations.begin(), r.config.annotations.end());
}

void fill_container_status(v1::ContainerStatus* out, const runtime::ContainerRecord& r) {
    out->set_id(r.id);
    out->mutable_metadata()->set_name(r.config.metadata.name);
    out->mutable_metadata()->set_attempt(r.config.metadata.attempt);
    out->set_state(proto_state(r.state));
    out->set_created_at(r.created_at);
    out->set_started_at(r.started_at);
    out->set_finished_at(r.finished_at);
    out->set_exit_code(r.exit_code);
    out->mutable_image()->set_image(r.config.image);
    out->set_image_ref(r.image_ref);
    out->set_image_id(r.image_id);
    out->set_reason(r.reason);
    out->set_message(r.message);
    out->mutable_labels()->insert(r.config.labels.begin(), r.config.labels.end());
    out->mutable_annotations()->insert(r.config.annotations.begin(), r.config.annotations.end());
    for (const auto& m : r.config.mounts) {
        auto* pm = out->add_mounts();
        pm->set_container_path(m.container_path);
        pm->set_host_path(m.host_path);
        pm->set_readonly(m.readonly);
        pm->set_propagation(static_cast<v1::MountPropagation>(m.propagation));
    }
    out->set_log_path(r.log_path);
    auto* lr = out->mutable_resources()->mutable_linux();
    lr->set_cpu_period(r.config.resources.cpu_period);
    lr->set_cpu_quota(r.config.resources.cpu_quota);
    lr->set_cpu_shares(r.config.resources.cpu_shares);
    lr->set_memory_limit_in_bytes(r.config.resources.memory_limit);
    lr->set_oom_score_adj(r.config.resources.oom_score_adj);
    lr->set_cpuset_cpus(r.config.resources.cpuset_cpus);
    lr->set_cpuset_mems(r.config.resources.cpuset_mems);
    lr->set_memory_swap_limit_in_bytes(r.config.resources.memory_swap_limit);
    for (const auto& [size, limit] : r.config.resources.hugepage_limits) {
        auto* h = lr->add_hugepage_limits();
        h->set_page_size(size);
        h->set_limit(limit);
    }
    lr->mutable_unified()->insert(r.config.resources.unified.begin(), r.config.resources.unified.end());
}

void add_condition(v1::RuntimeStatus* status, const Condition& c) {
    auto* out = status->add_conditions();
    out->set_type(c.type);
    out->set_status(c.status);
    out->set_reason(c.reason);
    out->set_message(c.message);
}

#define CRISD_UNIMPLEMENTED(Rpc)                                                       \
    grpc::Status Rpc(ServerContext*, const v1::Rpc##Request*, v1::Rpc##Response*) override { \
        return call(#Rpc, [] { unimplemented(#Rpc); });                                \
    }

#define CRISD_UNIMPLEMENTED_STREAM(Rpc)                                                  \
    grpc::Status Rpc(ServerContext*, const v1::Rpc##Request*,                                  \
               grpc::ServerWriter<v1::Rpc##Response>*) override {                        \
        return call(#Rpc, [] { unimplemented(#Rpc); });                                  \
    }

class RuntimeService final : public v1::RuntimeService::Service {
public:
    explicit RuntimeService(const Backends& b) : b_(b) {}

    grpc::Status Version(ServerContext*, const v1::VersionRequest*,
                   v1::VersionResponse* resp) override {
        return call("Version", [&] {
            resp->set_version("0.1.0");  // the CRI API's own kubelet-side version string
            resp->set_runtime_name("crisd");
            resp->set_runtime_version(CRISD_VERSION);
            resp->set_runtime_api_version("v1");
        });
    }

    grpc::Status Status(ServerContext*, const v1::StatusRequest* req,
                  v1::StatusResponse* resp) override {
        return call("Status", [&] {
            const auto st = runtime::runtime_status(b_.handlers, b_.network, b_.runtime_config);
            auto* status = resp->mutable_status();
            for (const auto& c : st.conditions) add_condition(status, c);
            for (const auto& name : st.runtime_handlers) resp->add_runtime_handlers()->set_name(name);
            if (req->verbose()) resp->mutable_info()->insert(st.info.begin(), st.info.end());
        });
    }

    grpc::Status RunPodSandbox(ServerContext* ctx, const v1::RunPodSandboxRequest* req,
                               v1::RunPodSandboxResponse* resp) override {
        return call("RunPodSandbox", [&] {
            auto& pods = pods_or_unimplemented("RunPodSandbox");
            if (!req->has_config() || !req->config().has_metadata())
                throw Error(Code::InvalidArgument, "RunPodSandbox: config.metadata is required");
            const auto config = pod_config(req->config(), req->runtime_handler());
            resp->set_pod_sandbox_id(pods.run(config, caller_of(ctx)));
        });
    }

    grpc::Status StopPodSandbox(ServerContext*, const v1::StopPodSandboxRequest* req,
                                v1::StopPodSandboxResponse*) override {
        return call("StopPodSandbox",
                    [&] { pods_or_unimplemented("StopPodSandbox").stop(req->pod_sandbox_id()); });
    }

    grpc::Status RemovePodSandbox(ServerContext*, const v1::RemovePodSandboxRequest* req,
                                  v1::RemovePodSandboxResponse*) override {
        return call("RemovePodSandbox",
                    [&] { pods_or_unimplemented("RemovePodSandbox").remove(req->pod_sandbox_id()); });
    }

    grpc::Status PodSandboxStatus(ServerContext*, const v1::PodSandboxStatusRequest* req,
                                  v1::PodSandboxStatusResponse* resp) override {
        return call("PodSandboxStatus", [&] {
            pods_or_unimplemented("PodSandboxStatus");
            const auto st = containers_or_unimplemented("PodSandboxStatus").pod_status(req->pod_sandbox_id());
            fill_status(resp->mutable_status(), st.pod);
            // With a timestamp the kubelet's evented PLEG takes the pod's
            // containers from containers_statuses alone.
            for (const auto& r : st.containers) fill_container_status(resp->add_containers_statuses(), r);
            resp->set_timestamp(st.timestamp);
            if (req->verbose()) (*resp->mutable_info())["info"] = runtime::to_json(st.pod).dump();
        });
    }

    grpc::Status ListPodSandbox(ServerContext*, const v1::ListPodSandboxRequest* req,
                                v1::ListPodSandboxResponse* resp) override {
        return call("ListPodSandbox", [&] {
            runtime::PodFilter filter;
            if (req->has_filter()) {
                const auto& f = req->filter();
                filter.id = f.id();
                if (f.has_state())
                    filter.state = f.state().state() == v1::SANDBOX_READY ? runtime::PodState::Ready
                                                                           : runtime::PodState::NotReady;
                filter.label_selector.insert(f.label_selector().begin(), f.label_selector().end());
            }
            for (const auto& r : pods_or_unimplemented("ListPodSandbox").list(filter)) {
                auto* item = resp->add_items();
                item->set_id(r.id);
                fill_metadata(item->mutable_metadata(), r.config.metadata);
                item->set_state(proto_state(r.state));
                item->set_created_at(r.created_at);
                item->mutable_labels()->insert(r.config.labels.begin(), r.config.labels.end());
                item->mutable_annotations()->insert(r.config.annotations.begin(),
                                                    r.config.annotations.end());
                item->set_runtime_handler(r.runtime_handler);
            }
        });
    }

    grpc::Status CreateContainer(ServerContext* ctx, const v1::CreateContainerRequest* req,
                                 v1::CreateContainerResponse* resp) override {
        return call("CreateContainer", [&] {
            auto& containers = containers_or_unimplemented("CreateContainer");
            if (!req->has_config() || !req->config().has_metadata())
                throw Error(Code::InvalidArgument, "CreateContainer: config.metadata is required");
            if (req->pod_sandbox_id().empty())
                throw Error(Code::InvalidArgument, "CreateContainer: pod_sandbox_id is required");
            const auto config = container_config(req->config());
            resp->set_container_id(
                containers.create(req->pod_sandbox_id(), config, caller_of(ctx)));
        });
    }

    grpc::Status StartContainer(ServerContext*, const v1::StartContainerRequest* req,
                                v1::StartContainerResponse*) override {
        return call("StartContainer",
                    [&] { containers_or_unimplemented("StartContainer").start(req->container_id()); });
    }

    grpc::Status StopContainer(ServerContext*, const v1::StopContainerRequest* req,
                               v1::StopContainerResponse*) override {
        return call("StopContainer", [&] {
            containers_or_unimplemented("StopContainer")
                .stop(req->container_id(), std::chrono::seconds(std::max<std::int64_t>(0, req->timeout())));
        });
    }

    grpc::Status RemoveContainer(ServerContext*, const v1::RemoveContainerRequest* req,
                                 v1::RemoveContainerResponse*) override {
        return call("RemoveContainer",
                    [&] { containers_or_unimplemented("RemoveContainer").remove(req->container_id()); });
    }

    grpc::Status ListContainers(ServerContext*, const v1::ListContainersRequest* req,
                                v1::ListContainersResponse* resp) override {
        return call("ListContainers", [&] {
            runtime::ContainerFilter filter;
            if (req->has_filter()) {
                const auto& f = req->filter();
                filter.id = f.id();
                filter.pod_id = f.pod_sandbox_id();
                if (f.has_state()) filter.state = static_cast<runtime::ContainerState>(f.state().state());
                filter.label_selector.insert(f.label_selector().begin(), f.label_selector().end());
            }
            for (const auto& r : containers_or_unimplemented("ListContainers").list(filter))
                fill_container(resp->add_containers(), r);
        });
    }

    grpc::Status ContainerStatus(ServerContext*, const v1::ContainerStatusRequest* req,
                                 v1::ContainerStatusResponse* resp) override {
        return call("ContainerStatus", [&] {
            const auto r = containers_or_unimplemented("ContainerStatus").status(req->container_id());
            fill_container_status(resp->mutable_status(), r);
            if (req->verbose()) {
                auto j = runtime::to_json(r);
                (*resp->mutable_info())["info"] = j.dump();
            }
        });
    }

    grpc::Status ExecSync(ServerContext*, const v1::ExecSyncRequest* req, v1::ExecSyncResponse* resp) override {
        return call("ExecSync", [&] {
            const std::vector<std::string> cmd(req->cmd().begin(), req->cmd().end());
            const auto r = containers_or_unimplemented("ExecSync")
                               .exec_sync(req->container_id(), cmd,
                                          std::chrono::seconds(std::max<std::int64_t>(0, req->timeout())));
            if (r.timed_out)
                throw Error(Code::DeadlineExceeded, "ExecSync: command timed out after " +
                                                        std::to_string(req->timeout()) + " s");
            resp->set_stdout(r.out);
            resp->set_stderr(r.err);
            resp->set_exit_code(r.exit_code);
        });
    }

    grpc::Status ReopenContainerLog(ServerContext*, const v1::ReopenContainerLogRequest* req,
                                    v1::ReopenContainerLogResponse*) override {
        return call("ReopenContainerLog",
                    [&] { containers_or_unimplemented("ReopenContainerLog").reopen_log(req->container_id()); });
    }

    grpc::Status UpdateContainerResources(ServerContext*, const v1::UpdateContainerResourcesRequest* req,
                                          v1::UpdateContainerResourcesResponse*) override {
        return call("UpdateContainerResources", [&] {
            auto& containers = containers_or_unimplemented("UpdateContainerResources");
            if (!req->has_linux())
                throw Error(Code::InvalidArgument, "UpdateContainerResources: linux resources are required");
            containers.update_resources(req->container_id(), resources_of(req->linux()));
        });
    }
    // Streaming: validated by the streaming server, which returns a URL with
    // a single-use token; the client then connects there.
    grpc::Status Exec(ServerContext*, const v1::ExecRequest* req, v1::ExecResponse* resp) override {
        return call("Exec", [&] {
            resp->set_url(stream_or_unimplemented("Exec").exec(
                {req->container_id(), {req->cmd().begin(), req->cmd().end()}, req->tty(), req->stdin(),
                 req->stdout(), req->stderr()}));
        });
    }

    grpc::Status Attach(ServerContext*, const v1::AttachRequest* req, v1::AttachResponse* resp) override {
        return call("Attach", [&] {
            resp->set_url(stream_or_unimplemented("Attach").attach(
                {req->container_id(), req->tty(), req->stdin(), req->stdout(), req->stderr()}));
        });
    }

    grpc::Status PortForward(ServerContext*, const v1::PortForwardRequest* req,
                             v1::PortForwardResponse* resp) override {
        return call("PortForward", [&] {
            resp->set_url(stream_or_unimplemented("PortForward").port_forward(
                {req->pod_sandbox_id(), {req->port().begin(), req->port().end()}}));
        });
    }
    grpc::Status ContainerStats(ServerContext*, const v1::ContainerStatsRequest* req,
                                v1::ContainerStatsResponse* resp) override {
        return call("ContainerStats", [&] {
            auto& containers = containers_or_unimplemented("ContainerStats");
            fill_stats(resp->mutable_stats(), containers.status(req->container_id()), containers);
        });
    }

    grpc::Status ListContainerStats(ServerContext*, const v1::ListContainerStatsRequest* req,
                                    v1::ListContainerStatsResponse* resp) override {
        return call("ListContainerStats", [&] {
            auto& containers = containers_or_unimplemented("ListContainerStats");
            runtime::ContainerFilter filter;
            filter.state = runtime::ContainerState::Running;
            if (req->has_filter()) {
                filter.id = req->filter().id();
                filter.pod_id = req->filter().pod_sandbox_id();
                filter.label_selector.insert(req->filter().label_selector().begin(),
                                             req->filter().label_selector().end());
            }
            for (const auto& r : containers.list(filter)) {
                try {
                    fill_stats(resp->add_stats(), r, containers);
                } catch (const Error& e) {
                    if (e.code() != Code::NotFound) throw;  // removed meanwhile
                }
            }
        });
    }
    grpc::Status PodSandboxStats(ServerContext*, const v1::PodSandboxStatsRequest* req,
                                 v1::PodSandboxStatsResponse* resp) override {
        return call("PodSandboxStats", [&] {
            auto& containers = containers_or_unimplemented("PodSandboxStats");
            fill_pod_stats(resp->mutable_stats(), containers.pod_stats(req->pod_sandbox_id()));
        });
    }

    grpc::Status ListPodSandboxStats(ServerContext*, const v1::ListPodSandboxStatsRequest* req,
                                     v1::ListPodSandboxStatsResponse* resp) override {
        return call("ListPodSandboxStats", [&] {
            auto& containers = containers_or_unimplemented("ListPodSandboxStats");
            runtime::PodFilter filter;
            if (req->has_filter()) {
                filter.id = req->filter().id();
                filter.label_selector.insert(req->filter().label_selector().begin(),
                                             req->filter().label_selector().end());
            }
            for (const auto& s : containers.list_pod_stats(filter)) fill_pod_stats(resp->add_stats(), s);
        });
    }

    grpc::Status UpdateRuntimeConfig(ServerContext*, const v1::UpdateRuntimeConfigRequest* req,
                                     v1::UpdateRuntimeConfigResponse*) override {
        return call("UpdateRuntimeConfig", [&] {
            if (!b_.runtime_config) unimplemented("UpdateRuntimeConfig");
            b_.runtime_config->set_pod_cidr(req->runtime_config().network_config().pod_cidr());
        });
    }
    CRISD_UNIMPLEMENTED(CheckpointContainer)
    CRISD_UNIMPLEMENTED(ListMetricDescriptors)
    CRISD_UNIMPLEMENTED(ListPodSandboxMetrics)
    // The kubelet (KubeletCgroupDriverFromCRI) takes its cgroup driver from here.
    grpc::Status RuntimeConfig(ServerContext*, const v1::RuntimeConfigRequest*,
                               v1::RuntimeConfigResponse* resp) override {
        return call("RuntimeConfig", [&] {
            resp->mutable_linux()->set_cgroup_driver(static_cast<v1::CgroupDriver>(runtime::cgroup_driver()));
        });
    }
    CRISD_UNIMPLEMENTED(UpdatePodSandboxResources)

    // Pod and container events for the kubelet's evented PLEG, merged in
    // order by the container service.
    grpc::Status GetContainerEvents(ServerContext* ctx, const v1::GetEventsRequest*,
                                    grpc::ServerWriter<v1::ContainerEventResponse>* writer) override {
        if (!b_.pods || !b_.containers)
            return call("GetContainerEvents", [] { unimplemented("GetContainerEvents"); });
        spdlog::debug("GetContainerEvents: a client subscribed");
        const auto events = b_.containers->subscribe_all();
        while (!ctx->IsCancelled()) {
            const auto e = events->next(std::chrono::milliseconds(100));
            if (!e) continue;
            v1::ContainerEventResponse out;
            out.set_container_id(e->id);
            out.set_container_event_type(static_cast<v1::ContainerEventType>(e->type));
            out.set_created_at(e->at);
            if (e->pod) fill_status(out.mutable_pod_sandbox_status(), *e->pod);
            for (const auto& r : e->containers) fill_container_status(out.add_containers_statuses(), r);
            if (!writer->Write(out)) break;
        }
        spdlog::debug("GetContainerEvents: a client went away");
        return grpc::Status::OK;
    }

    CRISD_UNIMPLEMENTED_STREAM(StreamPodSandboxes)
    CRISD_UNIMPLEMENTED_STREAM(StreamContainers)
    CRISD_UNIMPLEMENTED_STREAM(StreamContainerStats)
    CRISD_UNIMPLEMENTED_STREAM(StreamPodSandboxStats)
    CRISD_UNIMPLEMENTED_STREAM(StreamPodSandboxMetrics)

private:
    runtime::PodManager& pods_or_unimplemented(const char* rpc) const {
        if (!b_.pods) unimplemented(rpc);
        return *b_.pods;
    }

    static void fill_usage(v1::CpuUsage* cpu, v1::MemoryUsage* memory, const runtime::ContainerManager::Stats& s) {
        cpu->set_timestamp(s.timestamp);
        if (s.cpu_ns) cpu->mutable_usage_core_nano_seconds()->set_value(*s.cpu_ns);
        memory->set_timestamp(s.timestamp);
        if (s.working_set) memory->mutable_working_set_bytes()->set_value(*s.working_set);
        if (s.memory_usage) memory->mutable_usage_bytes()->set_value(*s.memory_usage);
        if (s.rss) memory->mutable_rss_bytes()->set_value(*s.rss);
    }

    static void fill_stats(v1::ContainerStats* out, const runtime::ContainerRecord& r,
                           const runtime::ContainerManager::Stats& s) {
        auto* a = out->mutable_attributes();
        a->set_id(r.id);
        a->mutable_metadata()->set_name(r.config.metadata.name);
        a->mutable_metadata()->set_attempt(r.config.metadata.attempt);
        a->mutable_labels()->insert(r.config.labels.begin(), r.config.labels.end());
        a->mutable_annotations()->insert(r.config.annotations.begin(), r.config.annotations.end());
        fill_usage(out->mutable_cpu(), out->mutable_memory(), s);
        if (s.writable_layer) {
            auto* w = out->mutable_writable_layer();
            w->set_timestamp(s.writable_layer->timestamp);
            w->mutable_fs_id()->set_mountpoint(s.writable_layer->mountpoint);
            w->mutable_used_bytes()->set_value(s.writable_layer->used_bytes);
            w->mutable_inodes_used()->set_value(s.writable_layer->inodes_used);
        }
    }
    static void fill_stats(v1::ContainerStats* out, const runtime::ContainerRecord& r,
                           const runtime::ContainerManager& containers) {
        fill_stats(out, r, containers.stats(r.id));
    }

    static void fill_pod_stats(v1::PodSandboxStats* out, const runtime::ContainerManager::PodStats& s) {
        auto* a = out->mutable_attributes();
        a->set_id(s.pod.id);
        fill_metadata(a->mutable_metadata(), s.pod.config.metadata);
        a->mutable_labels()->insert(s.pod.config.labels.begin(), s.pod.config.labels.end());
        a->mutable_annotations()->insert(s.pod.config.annotations.begin(), s.pod.config.annotations.end());
        auto* l = out->mutable_linux();
        fill_usage(l->mutable_cpu(), l->mutable_memory(), s.usage);
        l->mutable_process()->set_timestamp(s.usage.timestamp);
        if (s.usage.processes) l->mutable_process()->mutable_process_count()->set_value(*s.usage.processes);
        if (!s.interfaces.empty()) {
            auto* net = l->mutable_network();
            net->set_timestamp(s.usage.timestamp);
            for (const auto& i : s.interfaces) {
                auto* n = net->add_interfaces();
                n->set_name(i.name);
                n->mutable_rx_bytes()->set_value(i.rx_bytes);
                n->mutable_rx_errors()->set_value(i.rx_errors);
                n->mutable_tx_bytes()->set_value(i.tx_bytes);
                n->mutable_tx_errors()->set_value(i.tx_errors);
                if (i.name == s.default_interface) *net->mutable_default_interface() = *n;
            }
        }
        for (const auto& [r, cs] : s.containers) fill_stats(l->add_containers(), r, cs);
    }

    stream::StreamServer& stream_or_unimplemented(const char* rpc) const {
        if (!b_.stream) unimplemented(rpc);
        return *b_.stream;
    }

    runtime::ContainerManager& containers_or_unimplemented(const char* rpc) const {
        if (!b_.containers) unimplemented(rpc);
        return *b_.containers;
    }

    const Backends& b_;
};

}  // namespace

std::unique_ptr<grpc::Service> make_runtime_service(const Backends& backends) {
    return std::make_unique<RuntimeService>(backends);
}

}  // namespace crisd::cri
