// The CRI gRPC services. Handlers here translate and validate; the logic lives
// in the services they call (runtime, image, network).
#pragma once

#include <memory>

namespace grpc {
class Service;
}

namespace crisd::runtime {
class Handlers;
class PodManager;
class ContainerManager;
class RuntimeConfigState;
}
namespace crisd::network {
class Network;
}
namespace crisd::stream {
class StreamServer;
}
namespace crisd::image {
class Images;
class Rootfs;
}

namespace crisd::cri {

// What the handlers call into. Each member is owned by the daemon.
struct Backends {
    const runtime::Handlers& handlers;
    network::Network& network;
    image::Images* images = nullptr;  // null: the ImageService answers UNAVAILABLE
    image::Rootfs* rootfs = nullptr;  // container root filesystems (ImageFsInfo)
    runtime::PodManager* pods = nullptr;  // null: the pod RPCs answer UNIMPLEMENTED
    runtime::ContainerManager* containers = nullptr;  // null: the container RPCs answer UNIMPLEMENTED
    runtime::RuntimeConfigState* runtime_config = nullptr;  // null: UpdateRuntimeConfig answers UNIMPLEMENTED
    stream::StreamServer* stream = nullptr;  // null: Exec, Attach and PortForward answer UNIMPLEMENTED
};

std::unique_ptr<grpc::Service> make_runtime_service(const Backends& backends);
std::unique_ptr<grpc::Service> make_image_service(const Backends& backends);

// Unary CRI calls being served at this moment.
int calls_in_flight();

}  // namespace crisd::cri
