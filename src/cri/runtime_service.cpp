// CRI RuntimeService handlers.
#include <chrono>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cri_api.hpp"
#include "crisd_build.hpp"
#include "cri/call.hpp"
#include "cri/cri.hpp"
#include "network/network.hpp"
#include "runtime/handlers.hpp"
#include "runtime/pods.hpp"
#include "runtime/status.hpp"

namespace crisd::cri {
namespace {

namespace v1 = ::runtime::v1;
using grpc::ServerContext;


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

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
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
            const auto st = runtime::runtime_status(b_.handlers, b_.network);
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
            resp->set_pod_sandbox_id(pods.run(config, [ctx] { return ctx->IsCancelled(); }));
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
            const auto rec = pods_or_unimplemented("PodSandboxStatus").status(req->pod_sandbox_id());
            fill_status(resp->mutable_status(), rec);
            resp->set_timestamp(now_ns());
            if (req->verbose()) (*resp->mutable_info())["info"] = runtime::to_json(rec).dump();
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

    CRISD_UNIMPLEMENTED(CreateContainer)
    CRISD_UNIMPLEMENTED(StartContainer)
    CRISD_UNIMPLEMENTED(StopContainer)
    CRISD_UNIMPLEMENTED(RemoveContainer)
    CRISD_UNIMPLEMENTED(ListContainers)
    CRISD_UNIMPLEMENTED(ContainerStatus)
    CRISD_UNIMPLEMENTED(UpdateContainerResources)
    CRISD_UNIMPLEMENTED(ReopenContainerLog)
    CRISD_UNIMPLEMENTED(ExecSync)
    CRISD_UNIMPLEMENTED(Exec)
    CRISD_UNIMPLEMENTED(Attach)
    CRISD_UNIMPLEMENTED(PortForward)
    CRISD_UNIMPLEMENTED(ContainerStats)
    CRISD_UNIMPLEMENTED(ListContainerStats)
    CRISD_UNIMPLEMENTED(PodSandboxStats)
    CRISD_UNIMPLEMENTED(ListPodSandboxStats)
    CRISD_UNIMPLEMENTED(UpdateRuntimeConfig)
    CRISD_UNIMPLEMENTED(CheckpointContainer)
    CRISD_UNIMPLEMENTED(ListMetricDescriptors)
    CRISD_UNIMPLEMENTED(ListPodSandboxMetrics)
    CRISD_UNIMPLEMENTED(RuntimeConfig)
    CRISD_UNIMPLEMENTED(UpdatePodSandboxResources)

    // Pod events for the kubelet's evented PLEG (the container half adds its
    // own): the sandbox id as container_id and the pod's status after the event.
    grpc::Status GetContainerEvents(ServerContext* ctx, const v1::GetEventsRequest*,
                              grpc::ServerWriter<v1::ContainerEventResponse>* writer) override {
        if (!b_.pods) return call("GetContainerEvents", [] { unimplemented("GetContainerEvents"); });
        spdlog::debug("GetContainerEvents: a client subscribed");
        const auto events = b_.pods->subscribe();
        while (!ctx->IsCancelled()) {
            const auto e = events->next(std::chrono::milliseconds(500));
            if (!e) continue;
            v1::ContainerEventResponse out;
            out.set_container_id(e->pod.id);
            out.set_container_event_type(static_cast<v1::ContainerEventType>(e->type));
            out.set_created_at(e->at);
            fill_status(out.mutable_pod_sandbox_status(), e->pod);
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

    const Backends& b_;
};

}  // namespace

std::unique_ptr<grpc::Service> make_runtime_service(const Backends& backends) {
    return std::make_unique<RuntimeService>(backends);
}

}  // namespace crisd::cri
