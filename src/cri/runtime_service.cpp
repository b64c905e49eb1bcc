// CRI RuntimeService handlers.
#include <nlohmann/json.hpp>

#include "cri_api.hpp"
#include "crisd_build.hpp"
#include "cri/call.hpp"
#include "cri/cri.hpp"
#include "network/network.hpp"
#include "runtime/handlers.hpp"

namespace crisd::cri {
namespace {

namespace v1 = ::runtime::v1;
using grpc::ServerContext;


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
            auto* status = resp->mutable_status();
            add_condition(status, b_.handlers.readiness());
            add_condition(status, b_.network.readiness());
            for (const auto& name : b_.handlers.names()) {
                auto* h = resp->add_runtime_handlers();
                h->set_name(name);
            }
            if (req->verbose()) {
                nlohmann::json handlers = nlohmann::json::object();
                for (const auto& name : b_.handlers.names()) {
                    const auto& h = b_.handlers.get(name);
                    handlers[name] = {{"path", h.path}, {"root", h.root}, {"problem", h.problem}};
                }
                (*resp->mutable_info())["config"] =
                    nlohmann::json{{"defaultRuntime", b_.handlers.default_name()},
                                   {"runtimes", handlers}}
                        .dump();
            }
        });
    }

    CRISD_UNIMPLEMENTED(RunPodSandbox)
    CRISD_UNIMPLEMENTED(StopPodSandbox)
    CRISD_UNIMPLEMENTED(RemovePodSandbox)
    CRISD_UNIMPLEMENTED(PodSandboxStatus)
    CRISD_UNIMPLEMENTED(ListPodSandbox)
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

    grpc::Status GetContainerEvents(ServerContext*, const v1::GetEventsRequest*,
                              grpc::ServerWriter<v1::ContainerEventResponse>*) override {
        return call("GetContainerEvents", [] { unimplemented("GetContainerEvents"); });
    }

    CRISD_UNIMPLEMENTED_STREAM(StreamPodSandboxes)
    CRISD_UNIMPLEMENTED_STREAM(StreamContainers)
    CRISD_UNIMPLEMENTED_STREAM(StreamContainerStats)
    CRISD_UNIMPLEMENTED_STREAM(StreamPodSandboxStats)
    CRISD_UNIMPLEMENTED_STREAM(StreamPodSandboxMetrics)

private:
    const Backends& b_;
};

}  // namespace

std::unique_ptr<grpc::Service> make_runtime_service(const Backends& backends) {
    return std::make_unique<RuntimeService>(backends);
}

}  // namespace crisd::cri
